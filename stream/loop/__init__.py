"""The processing loop: the processor and its partitions, batches, outputs, retries, rebuilds and
dead letters. Imports ``operators``, the top-level modules and ``stream.models``; never an
adapter."""
