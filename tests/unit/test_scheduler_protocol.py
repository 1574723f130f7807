"""The scheduler wire values: bitmaps, validation of untrusted fields, protobuf round trips."""

from __future__ import annotations

import base64
import hashlib

import pytest

from damselfly.core.errors import ProtocolError
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.bitmap import PieceBitmap, bitmap_length
from damselfly.protocol.messages import (
    MAX_PIECE_COUNT,
    BadParent,
    BadParentReason,
    Decision,
    HostInfo,
    HostType,
    PeerReport,
    PieceDigest,
    Registration,
    TaskHolding,
    TaskMeta,
    split_peer_id,
)
from damselfly.protocol.rendezvous import rendezvous_order
from damselfly.protocol.scheduler_codec import (
    decision_from_pb,
    holding_from_pb,
    holding_to_pb,
    host_info_from_pb,
    host_info_to_pb,
    parent_from_pb,
    register_from_pb,
    registration_to_pb,
    report_from_pb,
    report_to_pb,
    task_meta_to_pb,
)

KIB64 = 64 * 1024
TASK = hashlib.sha256(b"t").hexdigest()
DIGEST = "blake3:" + "ab" * 32


def meta(**changes: object) -> TaskMeta:
    fields: dict[str, object] = {
        "task_id": TASK,
        "url": "https://example.com/model.bin",
        "content_length": 10 * KIB64,
        "piece_length": KIB64,
    }
    fields.update(changes)
    return TaskMeta(**fields)  # type: ignore[arg-type]


# Bitmaps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("piece_count", "numbers", "wire"),
    [
        (0, [], b""),
        (1, [0], b"\x80"),
        (8, [0, 7], b"\x81"),
        (10, [0, 9], b"\x80\x40"),
        (10, list(range(10)), b"\xff\xc0"),
    ],
)
def test_bitmap_wire_form_is_msb_first(piece_count: int, numbers: list[int], wire: bytes) -> None:
    bitmap = PieceBitmap.of(piece_count, numbers)
    assert bitmap.to_bytes() == wire
    assert PieceBitmap.from_bytes(wire, piece_count) == bitmap
    assert list(bitmap.numbers()) == numbers
    assert bitmap.count == len(numbers)
    assert len(wire) == bitmap_length(piece_count)


def test_full_bitmap_is_complete_and_empty_bytes_mean_nothing() -> None:
    assert PieceBitmap.full(10).to_bytes() == b"\xff\xc0"
    assert PieceBitmap.full(10).is_complete
    assert PieceBitmap.from_bytes(b"", 10).count == 0


@pytest.mark.parametrize(
    ("wire", "piece_count", "message"),
    [
        (b"\xff\xff\xff", 10, "3 bytes for 10 pieces"),
        (b"\x80", 10, "1 bytes for 10 pieces"),
        (b"\xff\xe0", 10, "beyond piece 9"),
    ],
)
def test_bitmap_that_does_not_fit_is_refused(wire: bytes, piece_count: int, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        PieceBitmap.from_bytes(wire, piece_count)


def test_bitmap_union_and_missing() -> None:
    a, b = PieceBitmap.of(10, [1, 2]), PieceBitmap.of(10, [2])
    assert a.has_any_missing_from(b)
    assert not b.has_any_missing_from(a)
    assert list(a.union(PieceBitmap.of(10, [9])).numbers()) == [1, 2, 9]
    with pytest.raises(ProtocolError, match="piece 10 out of range"):
        a.with_pieces([10])


# Validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task_id": "abc"}, "64 lower-case hex"),
        ({"task_id": TASK.upper()}, "64 lower-case hex"),
        ({"url": "https://user:pw@example.com/x"}, "carries credentials"),
        ({"url": "https://b.s3.amazonaws.com/x?X-Amz-Signature=00"}, "carries credentials"),
        ({"url": "nope"}, "url: invalid URL"),
        ({"params": {"hf_token": "x"}}, "looks like a credential"),
        ({"params": {"Authorization": "x"}}, "looks like a credential"),
        ({"content_length": 2**60}, "content_length"),
        ({"piece_length": 1}, "piece_length 1"),
        ({"content_length": (MAX_PIECE_COUNT + 1) * KIB64}, "use longer pieces"),
        ({"digest": "sha256:zz"}, "digest"),
    ],
)
def test_task_meta_refuses_bad_or_secret_fields(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        meta(**changes)


def test_task_meta_accepts_public_params() -> None:
    task = meta(params={"hf_revision": "abc123", "hf_endpoint": "https://hub"})
    assert task.piece_count == 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host_id": ""}, "host_id"),
        ({"host_id": "a/b"}, "host_id"),
        ({"ip": "example.com"}, "not an IP address"),
        ({"upload_port": 0}, "upload_port 0"),
        ({"upload_slots": 0}, "upload_slots 0"),
        ({"upload_capacity": 2**63}, "upload_capacity"),
    ],
)
def test_host_info_refuses_absurd_fields(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"host_id": "h1", "ip": "127.0.0.1", "upload_port": 4000}
    fields.update(changes)
    with pytest.raises(ProtocolError, match=message):
        HostInfo(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("digest", "ok"),
    [(DIGEST, True), ("sha256:" + "ab" * 32, False), ("blake3:" + "AB" * 32, False)],
)
def test_piece_digest_must_be_blake3(digest: str, ok: bool) -> None:
    if ok:
        assert PieceDigest(3, digest).digest == digest
    else:
        with pytest.raises(ProtocolError, match="expected blake3"):
            PieceDigest(3, digest)


def test_holding_and_report_checks() -> None:
    with pytest.raises(ProtocolError, match="only accepted from an origin reader"):
        TaskHolding(meta(), PieceBitmap.empty(10), digests=(PieceDigest(0, DIGEST),))
    with pytest.raises(ProtocolError, match="piece 10 out of range"):
        TaskHolding(meta(), PieceBitmap.empty(10), True, (PieceDigest(10, DIGEST),))
    with pytest.raises(ProtocolError, match="finished and failed"):
        PeerReport("h1", TASK, finished=True, failed=True)
    with pytest.raises(ProtocolError, match="expected <host_id>/<task_id>"):
        split_peer_id("h1")
    assert split_peer_id(f"h1/{TASK}") == ("h1", TASK)


# Codec -----------------------------------------------------------------------------------


def test_host_info_round_trip() -> None:
    info = HostInfo("h1", "::1", 4000, HostType.SEED, "n", "idc1", "a|b", 10**9, 8, 2, 5)
    assert host_info_from_pb(host_info_to_pb(info)) == info
    assert host_info_from_pb(
        pb.HostInfo(host_id="h", ip="::1", upload_port=1, upload_slots=4)
    ).type is (HostType.NORMAL)
    with pytest.raises(ProtocolError, match="host type 7"):
        host_info_from_pb(pb.HostInfo(host_id="h", ip="::1", upload_port=1, type=7))  # type: ignore[arg-type]


def test_holding_round_trip_through_bytes() -> None:
    holding = TaskHolding(meta(), PieceBitmap.of(10, [0, 3]), True, (PieceDigest(3, DIGEST),))
    wire = holding_to_pb(holding).SerializeToString()
    assert holding_from_pb(pb.TaskHolding.FromString(wire)) == holding


def test_register_without_task_and_bad_bitmap_are_refused() -> None:
    with pytest.raises(ProtocolError, match="task is missing"):
        register_from_pb(pb.RegisterPeerRequest(host_id="h1"))
    request = pb.RegisterPeerRequest(host_id="h1", task=task_meta_to_pb(meta()), pieces=b"\0" * 5)
    with pytest.raises(ProtocolError, match="5 bytes for 10 pieces"):
        register_from_pb(request)


def test_report_round_trip() -> None:
    report = PeerReport(
        "h1",
        TASK,
        pieces=(1, 2),
        digests=(PieceDigest(1, DIGEST),),
        bad_parents=(BadParent(f"h2/{TASK}", BadParentReason.DIGEST, "mismatch"),),
        want_parents=True,
    )
    assert report_from_pb(report_to_pb(report)) == report


def test_registration_to_pb_and_parent_back() -> None:
    registration = Registration(f"h1/{TASK}", Decision.WAIT_FOR_SEED, (), (), 10)
    message = registration_to_pb(registration)
    assert message.decision == pb.WAIT_FOR_SEED
    assert decision_from_pb(message.decision) is Decision.WAIT_FOR_SEED
    assert decision_from_pb(pb.DECISION_UNSPECIFIED) is None
    parent = pb.Parent(peer_id=f"h2/{TASK}", host_id="h2", ip="127.0.0.1", pieces=b"\x80\x00")
    assert parent_from_pb(parent, 10).pieces.has(0)


def test_rendezvous_order_is_a_stable_permutation() -> None:
    nodes = ["a", "b", "c"]
    order = rendezvous_order("task", nodes)
    assert sorted(order) == nodes
    assert rendezvous_order("task", reversed(nodes)) == order
    assert rendezvous_order("task", [n for n in nodes if n != order[0]]) == order[1:]


def test_bitmap_matches_the_piece_server_encoding() -> None:
    """The gRPC bitmap and the piece server's /bitmap are the same bytes (docs/p2p.md)."""
    pieces_http = pytest.importorskip("damselfly.protocol.pieces_http")
    numbers = [0, 3, 9, 10]
    encoded = pieces_http.encode_bitmap(numbers, 11)
    assert base64.b64decode(encoded) == PieceBitmap.of(11, numbers).to_bytes()
