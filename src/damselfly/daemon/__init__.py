"""dfdaemon: ``engine/`` (the P2P download engine), ``servers/`` (piece server, local API,
metrics) and ``app.py``, the one place that wires them with the scheduler link
(``transport/scheduler``)."""
