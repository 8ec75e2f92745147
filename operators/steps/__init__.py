"""The batch's steps as functions over columns: each reads and writes numpy arrays, with no
Python object per event or per user. ``event_columns``: the events as arrays; ``advance``:
dedupe, late events, features and the moments to score, in one compiled pass in order."""
