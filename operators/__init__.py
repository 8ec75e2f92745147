"""segstream's functional core: plain values in, plain values out.

Nothing in this package does I/O or reads a clock; ``tests/operators/test_purity.py`` checks
that it never imports ``stream``, ``redis``, a Kafka client or ``prometheus_client``.
"""
