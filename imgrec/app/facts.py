"""What the Dataset page and the sidebar say about an opened index: the index's own facts."""

from __future__ import annotations

from imgrec.index.facts import IndexFacts
from imgrec.index.index import Index

__all__ = ["IndexFacts", "index_facts"]


def index_facts(idx: Index) -> IndexFacts:
    """Counts, formats, dimensions and disk size of an index (the facts ``imgrec info``
    prints: one implementation, see :func:`imgrec.index.facts.facts`)."""
    return idx.facts()
