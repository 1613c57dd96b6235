"""Pieces of the benchmarks in bench/ (not a test, not production); the servers are devtools.harness's."""
