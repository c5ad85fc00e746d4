"""Benchmarks (not tests): ``python -m benchmarks.load_bench``, ``python -m benchmarks.union_bench``."""
