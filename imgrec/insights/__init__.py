"""What a gallery holds beyond one search: labels, clusters, duplicates, neighbour graph,
exports."""
