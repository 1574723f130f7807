"""The P2P engine: filling a task from the mesh and keeping the schedulers told.

``peer_filler.PeerFiller`` (the daemon's ``PieceFiller``) registers each task and becomes its
origin reader or runs a ``peer_download.PeerDownload`` (parents' pieces, chosen by the sans-IO
``piece_dispatcher.PieceDispatcher``); ``reporter.PeerReporter`` batches progress to the
scheduler; ``seed.SeedWorker`` takes seed jobs; ``announcer.Announcer`` keeps every scheduler
told of the host and its tasks; ``runner.StoreRunner`` runs a local API request on the store.
It talks to schedulers through ``transport/scheduler`` and never imports ``servers``.
"""
