"""``settle_heap``: what a long-running service does once it has started.

CPython's cyclic garbage collector walks every container object of the oldest generation
on each full collection. A daemon or scheduler holds a few hundred thousand such objects
from its imports (aiohttp, gRPC, pydantic, the settings) that live as long as the process,
and its steady work (pieces, requests, timers) keeps triggering collections: perf on swarm
daemons put 4 % of their CPU in ``gc_collect_main`` and its visitors (issue 15,
``docs/benchmarks.md``). Collected once and then frozen, those objects are left out of
every later collection; what the service allocates afterwards is collected as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("damselfly.heap")


def settle_heap() -> int:
    """Collect what start-up left behind, then move every surviving object to the permanent
    generation the collector never walks. Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap settled: %d objects frozen", frozen)
    return frozen
