"""Benchmarks against the original tutorial's approach (`make bench`); not part of the tests."""
