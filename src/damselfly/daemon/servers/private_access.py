"""Which held tasks are private, and who may fetch their pieces from this daemon.

A task is private when this daemon downloaded it with credentials (``needs_credentials``:
a token, an ``Authorization`` header, a signed URL; ``engine/peer_filler.py`` marks it). The
mark is a file ``<store>/private/<task id>`` so it survives restarts, and is never removed
while the task is held (a task id seen once with credentials stays private).

``PrivateAccess.refusal(task_id, caller, grant)`` decides a piece or bitmap request:

- public task: served (the role check of ``upload_guard.py`` already ran);
- private task over mTLS: served only with a grant the scheduler signed for this task and for
  the host named by the client certificate (``security/grants.py``);
- private task in plain text: never served (no identity to bind a grant to): peers read
  private files from the origin with their own credentials.

Refusals are 403 with one short reason, no bytes, counted (``upload_access_refused``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from damselfly.protocol import pieces_http as wire
from damselfly.security.errors import AccessDeniedError
from damselfly.security.grants import GrantVerifier
from damselfly.security.roles import Caller

PRIVATE_DIR = "private"


class PrivateTasks:
    def __init__(self, store_root: Path) -> None:
        self._dir = store_root / PRIVATE_DIR
        self._known: set[str] = set()

    def mark(self, task_id: str) -> None:
        task_id = wire.validate_task_id(task_id)
        if task_id in self._known:
            return
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._dir / task_id
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._known.add(task_id)

    def is_private(self, task_id: str) -> bool:
        if task_id in self._known:
            return True
        if (self._dir / task_id).exists():
            self._known.add(task_id)
            return True
        return False


class PrivateAccess:
    def __init__(self, tasks: PrivateTasks, verifier: GrantVerifier | None) -> None:
        self.tasks = tasks
        self._verifier = verifier

    def refusal(self, task_id: str, caller: Caller | None, grant: str | None) -> str | None:
        """None to serve; else why not."""
        if not self.tasks.is_private(task_id):
            return None
        if self._verifier is None or caller is None:
            return "private task: served only over mTLS with a grant"
        try:
            self._verifier.check(grant, task_id, caller.node_id)
        except AccessDeniedError as exc:
            return str(exc)
        return None
