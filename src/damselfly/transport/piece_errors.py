"""What can go wrong fetching a piece from a parent: one ``PeerError`` branch.

Every failure names the parent, the task and the piece, so the download engine can tell what
to do from the type alone:

::

    PeerError (core.errors)
    └── PieceTransferError              parent, task_id, piece_number
        ├── PieceNotHeldError           404: ask another parent (not storage's PieceNotHeldError)
        ├── ParentBusyError             429: every upload slot busy; ``retry_after`` seconds
        ├── ParentUnreachableError      connect failed, reset before the answer, watch cut off
        ├── ParentStalledError          no byte for ``timeout_no_bytes`` seconds (TimeoutError)
        ├── PieceLengthError            body shorter or longer than the piece
        ├── ParentStatusError           any other status; carries ``status``
        └── ParentProtocolError         malformed bitmap or watch line (also a ProtocolError)
"""

from __future__ import annotations

from damselfly.core.errors import PeerError, ProtocolError


class PieceTransferError(PeerError):
    def __init__(
        self, parent: str, reason: str, *, task_id: str, piece_number: int | None = None
    ) -> None:
        what = f"task {task_id}" + ("" if piece_number is None else f" piece {piece_number}")
        super().__init__(f"parent {parent}: {what}: {reason}")
        self.parent = parent
        self.reason = reason
        self.task_id = task_id
        self.piece_number = piece_number


class PieceNotHeldError(PieceTransferError, LookupError):
    pass


class ParentBusyError(PieceTransferError):
    def __init__(
        self, parent: str, *, task_id: str, piece_number: int | None, retry_after: float
    ) -> None:
        reason = f"busy (HTTP 429), retry after {retry_after:g}s"
        super().__init__(parent, reason, task_id=task_id, piece_number=piece_number)
        self.retry_after = retry_after


class ParentUnreachableError(PieceTransferError, ConnectionError):
    pass


class ParentStalledError(PieceTransferError, TimeoutError):
    pass


class PieceLengthError(PieceTransferError):
    pass


class ParentStatusError(PieceTransferError):
    def __init__(self, parent: str, status: int, *, task_id: str, piece_number: int | None) -> None:
        super().__init__(parent, f"HTTP {status}", task_id=task_id, piece_number=piece_number)
        self.status = status


class ParentProtocolError(PieceTransferError, ProtocolError):
    pass
