"""The scheduler link: the daemon's only door to its schedulers (``scheduler.proto``).

- ``api.py``: the calls the daemon makes (``SchedulerApi``) and the errors they raise;
- ``failover.py``: which scheduler gets a call and what a failure or an answer changes
  (sans-IO, no clock of its own);
- ``channels.py``: one gRPC channel per scheduler, each call's outcome fed to the failover
  state, gRPC statuses mapped to our errors;
- ``client.py``: ``SchedulerClient``, the calls themselves (host, tasks, peers, digests);
- ``seed_jobs.py``: a seed's job streams from every scheduler.
"""
