"""autopeft's benchmark harness (not part of the autopeft package): ``python -m bench.run``.

See bench/NOTES.md for what each measure means and README.md (Benchmark) for the latest results.
"""
