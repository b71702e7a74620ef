"""Feeds that resume from the store: files ingested once, and partitioned logs.

Each keeps its position in the store itself (``Store.append(..., source=,
position=)``), so a restart resumes at position + 1 and nothing is stored twice.
"""
