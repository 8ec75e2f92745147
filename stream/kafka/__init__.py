"""Kafka behind the ``EventSource`` and ``Sink`` ports: confluent-kafka and kafka-python, and the
topics' creation. Imports ``stream.ports``, ``stream.errors``, ``stream.settings`` and
``stream.connections`` only."""
