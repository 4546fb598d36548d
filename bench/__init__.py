"""Benchmarks and the soak run: large dispatches against real processes (`make bench`, `make soak`).

Speed targets live here, never in timed tests.
"""
