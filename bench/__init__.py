"""Benchmarks that print JSON (speed, memory, quality). Not tests: run `python -m bench -h`."""
