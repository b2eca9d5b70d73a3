"""The on-disk index: its format, catalog, readers, writer and checks, and :class:`Index`.

Nothing outside this package opens a file of an index version.
"""
