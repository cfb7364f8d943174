"""Benchmarks of sigshare against peer libraries on identical data, run with ``python -m bench``."""
