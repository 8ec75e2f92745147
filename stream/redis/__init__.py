"""Redis behind the ``StateStore`` and ``ModelStore`` ports: the state store, its save script and
the model store. Imports ``operators``, ``stream.ports`` and ``stream.errors`` only."""
