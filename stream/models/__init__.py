"""The model lifecycle: the segment model and its trainer, the tag trainer, the publisher (lease,
publish, follow) and the codec of model files and state. Imports ``operators`` and the top-level
modules only."""
