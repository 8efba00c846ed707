"""`python -m benchmarks`: runs the benchmark suite (see `benchmarks.run`)."""

from benchmarks.run import main

if __name__ == "__main__":
    raise SystemExit(main())
