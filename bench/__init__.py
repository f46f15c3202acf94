"""Reproducible benchmarks; `make bench` (python -m bench.run) runs them."""
