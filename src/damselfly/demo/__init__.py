"""``damselfly demo`` and what it runs: a loopback Hugging Face hub and a cluster of processes.

Runtime code (the shipped CLI imports it); ``damselfly.testing`` builds on it, never the
other way round.
"""
