"""Conversion between ``protocol/messages.py`` values and the generated protobuf messages.

``*_from_pb`` validates (through the values' constructors) and raises ``ProtocolError``;
``*_to_pb`` never fails. Used by the scheduler's gRPC service and by the daemon's client.
"""

from __future__ import annotations

from collections.abc import Iterable

from damselfly.core.errors import ProtocolError
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    MAX_PIECE_COUNT,
    BadParent,
    BadParentReason,
    Decision,
    DigestPage,
    HostInfo,
    HostType,
    ParentInfo,
    PeerReport,
    PieceDigest,
    Registration,
    ReportAnswer,
    TaskHolding,
    TaskMeta,
)

_HOST_TYPES = {HostType.NORMAL: pb.HOST_TYPE_NORMAL, HostType.SEED: pb.HOST_TYPE_SEED}
_HOST_TYPES_BACK: dict[int, HostType] = {value: key for key, value in _HOST_TYPES.items()}
_HOST_TYPES_BACK[pb.HOST_TYPE_UNSPECIFIED] = HostType.NORMAL
_DECISIONS = {
    Decision.FROM_PARENTS: pb.FROM_PARENTS,
    Decision.WAIT_FOR_SEED: pb.WAIT_FOR_SEED,
    Decision.BACK_TO_SOURCE: pb.BACK_TO_SOURCE,
}
_DECISIONS_BACK: dict[int, Decision] = {value: key for key, value in _DECISIONS.items()}
_REASONS = {
    BadParentReason.OTHER: pb.BAD_PARENT_REASON_UNSPECIFIED,
    BadParentReason.DIGEST: pb.BAD_PARENT_DIGEST,
    BadParentReason.TIMEOUT: pb.BAD_PARENT_TIMEOUT,
    BadParentReason.UNREACHABLE: pb.BAD_PARENT_UNREACHABLE,
    BadParentReason.REFUSED: pb.BAD_PARENT_REFUSED,
}
_REASONS_BACK: dict[int, BadParentReason] = {value: key for key, value in _REASONS.items()}


def _host_type(value: int) -> HostType:
    host_type = _HOST_TYPES_BACK.get(value)
    if host_type is None:
        raise ProtocolError(f"host type {value}: unknown")
    return host_type


# Hosts ---------------------------------------------------------------------------------------


def host_info_from_pb(message: pb.HostInfo) -> HostInfo:
    return HostInfo(
        host_id=message.host_id,
        ip=message.ip,
        upload_port=message.upload_port,
        type=_host_type(message.type),
        hostname=message.hostname,
        idc=message.idc,
        location=message.location,
        upload_capacity=message.upload_capacity,
        upload_slots=message.upload_slots,
        upload_slots_in_use=message.upload_slots_in_use,
        upload_rate=message.upload_rate,
    )


def host_info_to_pb(info: HostInfo) -> pb.HostInfo:
    return pb.HostInfo(
        host_id=info.host_id,
        hostname=info.hostname,
        ip=info.ip,
        upload_port=info.upload_port,
        type=_HOST_TYPES[info.type],
        idc=info.idc,
        location=info.location,
        upload_capacity=info.upload_capacity,
        upload_slots=info.upload_slots,
        upload_slots_in_use=info.upload_slots_in_use,
        upload_rate=info.upload_rate,
    )


# Tasks ---------------------------------------------------------------------------------------


def task_meta_from_pb(message: pb.TaskMeta) -> TaskMeta:
    return TaskMeta(
        task_id=message.task_id,
        url=message.url,
        content_length=message.content_length,
        piece_length=message.piece_length,
        params=dict(message.params),
        digest=message.digest,
        needs_credentials=message.needs_credentials,
    )


def task_meta_to_pb(meta: TaskMeta) -> pb.TaskMeta:
    return pb.TaskMeta(
        task_id=meta.task_id,
        url=meta.url,
        params=dict(meta.params),
        content_length=meta.content_length,
        piece_length=meta.piece_length,
        digest=meta.digest,
        needs_credentials=meta.needs_credentials,
    )


def digests_from_pb(messages: Iterable[pb.PieceDigest]) -> tuple[PieceDigest, ...]:
    return tuple(PieceDigest(m.number, m.digest) for m in messages)


def digests_to_pb(digests: Iterable[PieceDigest]) -> list[pb.PieceDigest]:
    return [pb.PieceDigest(number=d.number, digest=d.digest) for d in digests]


def holding_from_pb(message: pb.TaskHolding) -> TaskHolding:
    if not message.HasField("task"):
        raise ProtocolError("holding: task is missing")
    task = task_meta_from_pb(message.task)
    return TaskHolding(
        task=task,
        pieces=PieceBitmap.from_bytes(message.pieces, task.piece_count),
        origin_reader=message.origin_reader,
        digests=digests_from_pb(message.digests),
    )


def holding_to_pb(holding: TaskHolding) -> pb.TaskHolding:
    return pb.TaskHolding(
        task=task_meta_to_pb(holding.task),
        pieces=holding.pieces.to_bytes(),
        origin_reader=holding.origin_reader,
        digests=digests_to_pb(holding.digests),
    )


# Peers ---------------------------------------------------------------------------------------


def register_from_pb(message: pb.RegisterPeerRequest) -> tuple[str, TaskMeta, PieceBitmap]:
    if not message.HasField("task"):
        raise ProtocolError("register: task is missing")
    task = task_meta_from_pb(message.task)
    return message.host_id, task, PieceBitmap.from_bytes(message.pieces, task.piece_count)


def report_from_pb(message: pb.ReportPeerRequest) -> PeerReport:
    bad = tuple(
        BadParent(b.peer_id, _REASONS_BACK.get(b.reason, BadParentReason.OTHER), b.detail)
        for b in message.bad_parents
    )
    return PeerReport(
        host_id=message.host_id,
        task_id=message.task_id,
        pieces=tuple(message.pieces),
        digests=digests_from_pb(message.digests),
        bad_parents=bad,
        finished=message.finished,
        failed=message.failed,
        failure_reason=message.failure_reason,
        want_parents=message.want_parents,
        content_rejected=message.content_rejected,
    )


def report_to_pb(report: PeerReport) -> pb.ReportPeerRequest:
    return pb.ReportPeerRequest(
        host_id=report.host_id,
        task_id=report.task_id,
        pieces=list(report.pieces),
        digests=digests_to_pb(report.digests),
        bad_parents=[
            pb.BadParent(peer_id=b.peer_id, reason=_REASONS[b.reason], detail=b.detail)
            for b in report.bad_parents
        ],
        finished=report.finished,
        failed=report.failed,
        failure_reason=report.failure_reason,
        want_parents=report.want_parents,
        content_rejected=report.content_rejected,
    )


def parent_to_pb(parent: ParentInfo) -> pb.Parent:
    return pb.Parent(
        peer_id=parent.peer_id,
        host_id=parent.host_id,
        ip=parent.ip,
        upload_port=parent.upload_port,
        type=_HOST_TYPES[parent.type],
        pieces=parent.pieces.to_bytes(),
        free_upload_slots=parent.free_upload_slots,
        free_upload_rate=parent.free_upload_rate,
        origin_reader=parent.origin_reader,
    )


def parent_from_pb(message: pb.Parent, piece_count: int) -> ParentInfo:
    return ParentInfo(
        peer_id=message.peer_id,
        host_id=message.host_id,
        ip=message.ip,
        upload_port=message.upload_port,
        type=_host_type(message.type),
        pieces=PieceBitmap.from_bytes(message.pieces, piece_count),
        free_upload_slots=message.free_upload_slots,
        free_upload_rate=message.free_upload_rate,
        origin_reader=message.origin_reader,
    )


def decision_from_pb(value: int) -> Decision | None:
    """``None`` for ``DECISION_UNSPECIFIED`` (a report answer without a decision)."""
    if value == pb.DECISION_UNSPECIFIED:
        return None
    decision = _DECISIONS_BACK.get(value)
    if decision is None:
        raise ProtocolError(f"decision {value}: unknown")
    return decision


def registration_to_pb(registration: Registration) -> pb.RegisterPeerResponse:
    return pb.RegisterPeerResponse(
        peer_id=registration.peer_id,
        decision=_DECISIONS[registration.decision],
        parents=[parent_to_pb(p) for p in registration.parents],
        digests=digests_to_pb(registration.digests),
        piece_count=registration.piece_count,
        piece_grant=registration.piece_grant,
    )


def report_answer_to_pb(answer: ReportAnswer) -> pb.ReportPeerResponse:
    decision = pb.DECISION_UNSPECIFIED if answer.decision is None else _DECISIONS[answer.decision]
    return pb.ReportPeerResponse(
        decision=decision, parents=[parent_to_pb(p) for p in answer.parents]
    )


def digest_page_to_pb(page: DigestPage) -> pb.GetPieceDigestsResponse:
    return pb.GetPieceDigestsResponse(
        digests=digests_to_pb(page.digests),
        piece_count=page.piece_count,
        truncated=page.truncated,
    )


# Client side (the daemon) ---------------------------------------------------------------------


def register_to_pb(host_id: str, task: TaskMeta, pieces: PieceBitmap) -> pb.RegisterPeerRequest:
    return pb.RegisterPeerRequest(
        host_id=host_id, task=task_meta_to_pb(task), pieces=pieces.to_bytes()
    )


def announce_tasks_to_pb(host_id: str, holdings: Iterable[TaskHolding]) -> pb.AnnounceTasksRequest:
    return pb.AnnounceTasksRequest(host_id=host_id, tasks=[holding_to_pb(h) for h in holdings])


def _piece_count_from_pb(value: int) -> int:
    if value > MAX_PIECE_COUNT:
        raise ProtocolError(f"piece_count {value}: more than {MAX_PIECE_COUNT}")
    return value


def registration_from_pb(message: pb.RegisterPeerResponse) -> Registration:
    decision = decision_from_pb(message.decision)
    if decision is None:
        raise ProtocolError("registration: decision is missing")
    count = _piece_count_from_pb(message.piece_count)
    return Registration(
        peer_id=message.peer_id,
        decision=decision,
        parents=tuple(parent_from_pb(p, count) for p in message.parents),
        digests=digests_from_pb(message.digests),
        piece_count=count,
        piece_grant=_grant_from_pb(message.piece_grant),
    )


MAX_GRANT_LENGTH = 8192


def _grant_from_pb(grant: str) -> str:
    if len(grant) > MAX_GRANT_LENGTH or not grant.isascii():
        raise ProtocolError("registration: piece_grant is not a grant")
    return grant


def report_answer_from_pb(message: pb.ReportPeerResponse, piece_count: int) -> ReportAnswer:
    """``piece_count`` sizes the parents' bitmaps (the answer does not carry it)."""
    return ReportAnswer(
        decision=decision_from_pb(message.decision),
        parents=tuple(parent_from_pb(p, piece_count) for p in message.parents),
    )


def digest_page_from_pb(message: pb.GetPieceDigestsResponse) -> DigestPage:
    return DigestPage(
        digests=digests_from_pb(message.digests),
        piece_count=_piece_count_from_pb(message.piece_count),
        truncated=message.truncated,
    )


def seed_job_from_pb(message: pb.SeedJob) -> TaskMeta:
    if not message.HasField("task"):
        raise ProtocolError("seed job: task is missing")
    return task_meta_from_pb(message.task)
