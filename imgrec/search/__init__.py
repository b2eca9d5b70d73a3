"""Exact search: scan kernels, top-k candidate selection, ranking, refine, results.

engine (the entry point ``Index.search`` calls) -> methods (the method table: matrix,
metric, query transform) and query (what a query may be, its features) -> rank (exact
top-k: kernels' fast scan, topk's candidate selection, float64 rescoring) or refine
(relevance feedback) -> results (Hit, SearchResult, JSON and CSV rows).
"""
