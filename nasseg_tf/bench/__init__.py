"""Benchmarks (run through ``tools/benchmark.py``; they write JSON, they are not tests)."""
