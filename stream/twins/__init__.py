"""In-memory twins of the ports (broker, state store, model store) for unit tests and the embedded
demo, never production. Imports ``operators``, ``stream.ports`` and ``stream.errors`` only."""
