"""``segstream api``: the query API's app, its front door (token, body limit), catalog and reads.
Imports anything below it (adapters, feeds, wiring); nothing imports it but ``stream.cli``."""
