"""Peer adapters of ``bench.compare``: one script per library, see ``_proto``."""
