"""What goes into the input topic: history readers, the shopper simulator, simulated production and
erasure requests. Imports ``operators``, ``stream.ports``, ``stream.errors``, settings and
connections only."""
