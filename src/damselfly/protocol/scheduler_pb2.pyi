from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOST_TYPE_UNSPECIFIED: _ClassVar[HostType]
    HOST_TYPE_NORMAL: _ClassVar[HostType]
    HOST_TYPE_SEED: _ClassVar[HostType]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    FROM_PARENTS: _ClassVar[Decision]
    WAIT_FOR_SEED: _ClassVar[Decision]
    BACK_TO_SOURCE: _ClassVar[Decision]

class BadParentReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BAD_PARENT_REASON_UNSPECIFIED: _ClassVar[BadParentReason]
    BAD_PARENT_DIGEST: _ClassVar[BadParentReason]
    BAD_PARENT_TIMEOUT: _ClassVar[BadParentReason]
    BAD_PARENT_UNREACHABLE: _ClassVar[BadParentReason]
    BAD_PARENT_REFUSED: _ClassVar[BadParentReason]
HOST_TYPE_UNSPECIFIED: HostType
HOST_TYPE_NORMAL: HostType
HOST_TYPE_SEED: HostType
DECISION_UNSPECIFIED: Decision
FROM_PARENTS: Decision
WAIT_FOR_SEED: Decision
BACK_TO_SOURCE: Decision
BAD_PARENT_REASON_UNSPECIFIED: BadParentReason
BAD_PARENT_DIGEST: BadParentReason
BAD_PARENT_TIMEOUT: BadParentReason
BAD_PARENT_UNREACHABLE: BadParentReason
BAD_PARENT_REFUSED: BadParentReason

class HostInfo(_message.Message):
    __slots__ = ("host_id", "hostname", "ip", "upload_port", "type", "idc", "location", "upload_capacity", "upload_slots", "upload_slots_in_use", "upload_rate")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_PORT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IDC_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_SLOTS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_SLOTS_IN_USE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_RATE_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    hostname: str
    ip: str
    upload_port: int
    type: HostType
    idc: str
    location: str
    upload_capacity: int
    upload_slots: int
    upload_slots_in_use: int
    upload_rate: int
    def __init__(self, host_id: _Optional[str] = ..., hostname: _Optional[str] = ..., ip: _Optional[str] = ..., upload_port: _Optional[int] = ..., type: _Optional[_Union[HostType, str]] = ..., idc: _Optional[str] = ..., location: _Optional[str] = ..., upload_capacity: _Optional[int] = ..., upload_slots: _Optional[int] = ..., upload_slots_in_use: _Optional[int] = ..., upload_rate: _Optional[int] = ...) -> None: ...

class AnnounceHostResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskMeta(_message.Message):
    __slots__ = ("task_id", "url", "params", "content_length", "piece_length", "digest", "needs_credentials")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PIECE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NEEDS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    url: str
    params: _containers.ScalarMap[str, str]
    content_length: int
    piece_length: int
    digest: str
    needs_credentials: bool
    def __init__(self, task_id: _Optional[str] = ..., url: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., content_length: _Optional[int] = ..., piece_length: _Optional[int] = ..., digest: _Optional[str] = ..., needs_credentials: _Optional[bool] = ...) -> None: ...

class PieceDigest(_message.Message):
    __slots__ = ("number", "digest")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    number: int
    digest: str
    def __init__(self, number: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class TaskHolding(_message.Message):
    __slots__ = ("task", "pieces", "origin_reader", "digests")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_READER_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    task: TaskMeta
    pieces: bytes
    origin_reader: bool
    digests: _containers.RepeatedCompositeFieldContainer[PieceDigest]
    def __init__(self, task: _Optional[_Union[TaskMeta, _Mapping]] = ..., pieces: _Optional[bytes] = ..., origin_reader: _Optional[bool] = ..., digests: _Optional[_Iterable[_Union[PieceDigest, _Mapping]]] = ...) -> None: ...

class AnnounceTasksRequest(_message.Message):
    __slots__ = ("host_id", "tasks")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskHolding]
    def __init__(self, host_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskHolding, _Mapping]]] = ...) -> None: ...

class AnnounceTasksResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterPeerRequest(_message.Message):
    __slots__ = ("host_id", "task", "pieces")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    task: TaskMeta
    pieces: bytes
    def __init__(self, host_id: _Optional[str] = ..., task: _Optional[_Union[TaskMeta, _Mapping]] = ..., pieces: _Optional[bytes] = ...) -> None: ...

class Parent(_message.Message):
    __slots__ = ("peer_id", "host_id", "ip", "upload_port", "type", "pieces", "free_upload_slots", "free_upload_rate", "origin_reader")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_PORT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    FREE_UPLOAD_SLOTS_FIELD_NUMBER: _ClassVar[int]
    FREE_UPLOAD_RATE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_READER_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    host_id: str
    ip: str
    upload_port: int
    type: HostType
    pieces: bytes
    free_upload_slots: int
    free_upload_rate: int
    origin_reader: bool
    def __init__(self, peer_id: _Optional[str] = ..., host_id: _Optional[str] = ..., ip: _Optional[str] = ..., upload_port: _Optional[int] = ..., type: _Optional[_Union[HostType, str]] = ..., pieces: _Optional[bytes] = ..., free_upload_slots: _Optional[int] = ..., free_upload_rate: _Optional[int] = ..., origin_reader: _Optional[bool] = ...) -> None: ...

class RegisterPeerResponse(_message.Message):
    __slots__ = ("peer_id", "decision", "parents", "digests", "piece_count", "piece_grant")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    PIECE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PIECE_GRANT_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    decision: Decision
    parents: _containers.RepeatedCompositeFieldContainer[Parent]
    digests: _containers.RepeatedCompositeFieldContainer[PieceDigest]
    piece_count: int
    piece_grant: str
    def __init__(self, peer_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., parents: _Optional[_Iterable[_Union[Parent, _Mapping]]] = ..., digests: _Optional[_Iterable[_Union[PieceDigest, _Mapping]]] = ..., piece_count: _Optional[int] = ..., piece_grant: _Optional[str] = ...) -> None: ...

class BadParent(_message.Message):
    __slots__ = ("peer_id", "reason", "detail")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    reason: BadParentReason
    detail: str
    def __init__(self, peer_id: _Optional[str] = ..., reason: _Optional[_Union[BadParentReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ReportPeerRequest(_message.Message):
    __slots__ = ("host_id", "task_id", "pieces", "digests", "bad_parents", "finished", "failed", "failure_reason", "want_parents", "content_rejected")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    BAD_PARENTS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    WANT_PARENTS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_REJECTED_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    task_id: str
    pieces: _containers.RepeatedScalarFieldContainer[int]
    digests: _containers.RepeatedCompositeFieldContainer[PieceDigest]
    bad_parents: _containers.RepeatedCompositeFieldContainer[BadParent]
    finished: bool
    failed: bool
    failure_reason: str
    want_parents: bool
    content_rejected: bool
    def __init__(self, host_id: _Optional[str] = ..., task_id: _Optional[str] = ..., pieces: _Optional[_Iterable[int]] = ..., digests: _Optional[_Iterable[_Union[PieceDigest, _Mapping]]] = ..., bad_parents: _Optional[_Iterable[_Union[BadParent, _Mapping]]] = ..., finished: _Optional[bool] = ..., failed: _Optional[bool] = ..., failure_reason: _Optional[str] = ..., want_parents: _Optional[bool] = ..., content_rejected: _Optional[bool] = ...) -> None: ...

class ReportPeerResponse(_message.Message):
    __slots__ = ("decision", "parents")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    parents: _containers.RepeatedCompositeFieldContainer[Parent]
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., parents: _Optional[_Iterable[_Union[Parent, _Mapping]]] = ...) -> None: ...

class GetPieceDigestsRequest(_message.Message):
    __slots__ = ("task_id", "from_piece")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_PIECE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    from_piece: int
    def __init__(self, task_id: _Optional[str] = ..., from_piece: _Optional[int] = ...) -> None: ...

class GetPieceDigestsResponse(_message.Message):
    __slots__ = ("digests", "piece_count", "truncated")
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    PIECE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedCompositeFieldContainer[PieceDigest]
    piece_count: int
    truncated: bool
    def __init__(self, digests: _Optional[_Iterable[_Union[PieceDigest, _Mapping]]] = ..., piece_count: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class LeaveHostRequest(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class LeaveHostResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchSeedJobsRequest(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class SeedJob(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: TaskMeta
    def __init__(self, task: _Optional[_Union[TaskMeta, _Mapping]] = ...) -> None: ...
