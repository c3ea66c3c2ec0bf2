"""Benchmarks behind the figures in BENCHMARKS.md; run them with `make bench`."""
