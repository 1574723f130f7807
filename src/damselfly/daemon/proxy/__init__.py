"""dfdaemon's HTTP(S) forward proxy and hub mirror endpoints (docs/proxy.md).

``service.ProxyService`` is the entry point; ``mesh.MeshFetcher`` is the one interface to the
rest of the daemon.
"""
