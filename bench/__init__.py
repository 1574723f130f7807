"""Benchmarks: ``bench/single`` (one node over loopback); ``bench/swarm`` comes with issue 5."""
