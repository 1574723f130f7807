"""Benchmarks: ``bench/single`` (one file over loopback), ``bench/hub`` (a model repo from a
test Hugging Face hub), sharing ``bench/common``; ``bench/swarm`` comes with issue 5."""
