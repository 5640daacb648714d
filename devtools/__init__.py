"""Tooling for development, tests and benchmarks, never imported by the running product:
a private redis-server (`make run`, the test suite, benches) and fast bulk run history."""
