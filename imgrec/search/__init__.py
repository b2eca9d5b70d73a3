"""Exact search: scan kernels, top-k candidate selection, ranking, refine, results."""
