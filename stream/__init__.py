"""segstream's shell: Kafka, Redis, HTTP, metrics, the processing loop, the trainer and wiring."""

__version__ = "0.1.0"
