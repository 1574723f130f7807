"""``dfctl import``: a local copy of a hub repo seeded into the mesh, and the listing it
leaves for nodes that cannot reach the hub."""
