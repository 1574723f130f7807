"""The swarm benchmark: N nodes in network namespaces behind shaped links (issue 5)."""
