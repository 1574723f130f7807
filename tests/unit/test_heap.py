"""``settle_heap`` in a fresh interpreter (freezing the test runner's own heap would keep
every later test's garbage): start-up objects frozen, later cycles still collected."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc, weakref
from damselfly.cli.heap import settle_heap
class Node: pass
kept = Node(); kept.me = kept            # a cycle alive at start-up
frozen = settle_heap()
assert frozen == gc.get_freeze_count() > 1000, frozen
late = Node(); late.me = late            # a cycle made after: still the collector's
gone = weakref.ref(late)
del late
gc.collect()
assert gone() is None
assert gc.get_freeze_count() == frozen    # a collection does not thaw the frozen objects
print("ok")
"""


def test_start_up_objects_are_frozen_and_later_cycles_still_collected():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
