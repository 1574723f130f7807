"""What the daemon serves: pieces to other peers (``upload_server``, with its open tasks,
limits and watch streams), downloads to local callers (``local_api`` on a unix socket, with
``event_stream`` and ``unix_socket``) and ``/metrics`` (``metrics``). Servers read the
engine's counters but never drive it: ``daemon/app.py`` hands them what they call."""
