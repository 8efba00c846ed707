"""Benchmarks of musicnext-tf: each figure is a ratio of two timings taken in the same process.

Run `python -m benchmarks` (4-6 minutes on 2 cores) or `python -m benchmarks --quick` (under
2 minutes); `--json PATH` writes the results. See `benchmarks/README.md` for the latest figures.
"""
