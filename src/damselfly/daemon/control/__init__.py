"""The daemon's side of the control plane: its manager link, blocklist enforcement, live rate
limits and the seed's preheat worker (``docs/manager.md``)."""
