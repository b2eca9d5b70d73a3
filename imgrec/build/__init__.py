"""Building an index: scan the gallery, diff against the previous version, decode and
compute features in workers, stream them into a work store, publish a new version."""
