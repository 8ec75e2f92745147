"""``segstream evaluate``: replay a history file, then judge the features, segments and tags.
Imports ``operators``, ``stream.feeds``, ``stream.twins``, ``stream.models``, ``stream.replay``
and the settings; nothing imports it but ``stream.cli``."""
