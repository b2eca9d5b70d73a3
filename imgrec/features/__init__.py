"""Feature extractors: CNN embeddings and colour histograms."""
