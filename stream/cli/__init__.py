"""The ``segstream`` command: the parser (``main``) and one module per command group. The top of
the house: it may import every wing, and nothing imports it."""
