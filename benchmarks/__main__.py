"""`python -m benchmarks`: runs the benchmark suite (see `benchmarks.run`)."""

if __name__ == "__main__":  # feature preparation's spawned workers import this module too
    from benchmarks.run import main

    raise SystemExit(main())
