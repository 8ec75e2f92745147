"""``segstream evaluate``: replay a history file, then judge the features, segments and tags."""
