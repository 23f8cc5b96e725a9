"""The fast path for Log and Append: same replies as thriftpy2's, and only for the exact shape.

Every test runs a frame through two :class:`FrameProcessor`\\ s over equal
handlers, one with the fast path and one without (thriftpy2 decodes every
frame), and requires byte-identical replies; where it matters it also checks
which route the frame took (:func:`decode_fast` accepts it or not).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import thriftpy2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport.memory import TCyMemoryBuffer

from logserver.metrics import Metrics
from logserver.service import LogServiceHandler, ServiceLimits
from logserver.storage import Storage, StoragePolicy
from logserver.transport._fast import decode_fast
from logserver.transport._guard import check_frame
from logserver.transport._processor import FrameOutcome, FrameProcessor, Reply, Throttle
from logwire.idl import IDL_PATH
from tests.transport.helpers import (
    AppendBatch,
    LogEntry,
    LogService,
    RecordingHandler,
    encode_call,
    log_thrift,
    message_header,
)

pytestmark = pytest.mark.timeout(120)

T_I32, T_I64, T_STRING, T_STRUCT, T_LIST = 8, 10, 11, 12, 15
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def processors(make_handler: Callable[[], object]) -> tuple[FrameProcessor, FrameProcessor]:
    """(fast, thriftpy2-only) processors, each over its own handler."""
    fast = FrameProcessor(LogService, make_handler(), 32, Throttle())
    slow = FrameProcessor(LogService, make_handler(), 32, Throttle(), fast=False)
    assert "fast=True" in repr(fast) and "fast=False" in repr(slow)
    return fast, slow


def same_reply(
    fast: FrameProcessor, slow: FrameProcessor, frame: bytes, *, as_bytes: bool = False
) -> Reply:
    """Both processors answer ``frame`` alike (given as the server's bytearray, or as bytes)."""
    expected = slow.process(bytearray(frame), "peer")
    got = fast.process(frame if as_bytes else bytearray(frame), "peer")
    assert (got.data, got.outcome, got.close) == (expected.data, expected.outcome, expected.close)
    return expected


def reply_result(reply: Reply, api: str) -> Any:
    """Decode a REPLY's result struct."""
    assert reply.data is not None
    proto = TCyBinaryProtocol(TCyMemoryBuffer(reply.data[4:]), strict_read=True)
    _, mtype, _ = proto.read_message_begin()
    assert mtype == TMessageType.REPLY
    result = getattr(LogService, f"{api}_result")()
    proto.read_struct(result)
    return result


def log_frame(entries: list[tuple[str | bytes, str | bytes]], **kw: Any) -> bytes:
    messages = [LogEntry(category=c, message=m) for c, m in entries]
    return encode_call("Log", LogService.Log_args(messages=messages), **kw)


def append_frame(
    producer: str | bytes, sequence: int, entries: list[tuple[str, str]], **kw: Any
) -> bytes:
    batch = AppendBatch(
        producer=producer,
        sequence=sequence,
        entries=[LogEntry(category=c, message=m) for c, m in entries],
    )
    return encode_call("Append", LogService.Append_args(batch=batch), **kw)


# ------------------------------------------------- the real handler, real storage


@pytest.fixture
def real_processors(tmp_path: Path) -> Iterator[tuple[FrameProcessor, FrameProcessor]]:
    """Fast and thriftpy2-only processors over two LogServiceHandlers with their own storage."""
    opened: list[Storage] = []
    policy = StoragePolicy(fsync="never", max_message_bytes=1000)

    def make() -> LogServiceHandler:
        storage = Storage.open(tmp_path / str(len(opened)), policy)
        opened.append(storage)
        return LogServiceHandler(
            storage,
            server_id="s",
            version="v",
            metrics=Metrics(),
            limits=ServiceLimits(max_batch_records=5),
        )

    yield processors(make)
    for storage in opened:
        storage.close()


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    "frame_of",
    [
        pytest.param(lambda s: log_frame([("app", "one"), ("web", "two")], strict=s), id="log"),
        pytest.param(lambda s: log_frame([], strict=s, seqid=-5), id="log-empty"),
        pytest.param(lambda s: log_frame([("app", "")], strict=s, seqid=2**31 - 1), id="log-1"),
        pytest.param(lambda s: append_frame("p", 0, [("app", "a")] * 5, strict=s), id="append"),
        pytest.param(lambda s: append_frame("p", 7, [], strict=s), id="append-empty"),
        pytest.param(lambda s: log_frame([("bad/name", "x")], strict=s), id="log-bad-category"),
        pytest.param(lambda s: log_frame([("a", "x")] * 6, strict=s), id="log-too-many"),
        pytest.param(lambda s: log_frame([("a", "x" * 1001)], strict=s), id="log-too-long"),
        pytest.param(lambda s: append_frame("p", 1, [("..", "x")], strict=s), id="InvalidCategory"),
        pytest.param(
            lambda s: append_frame("p", 1, [("a", "x")] * 6, strict=s), id="BatchTooLarge"
        ),
        pytest.param(
            lambda s: append_frame("p", 1, [("a", "x" * 1001)], strict=s), id="BatchTooLarge-msg"
        ),
        pytest.param(lambda s: append_frame("", 1, [("a", "x")], strict=s), id="InvalidRequest"),
        pytest.param(
            lambda s: append_frame("p", -1, [("a", "x")], strict=s), id="InvalidRequest-2"
        ),
        pytest.param(
            lambda s: append_frame(b"\x00\xff", 1, [("a", "x")], strict=s), id="InvalidRequest-3"
        ),
    ],
)
def test_log_and_append_replies_are_identical(
    real_processors: tuple[FrameProcessor, FrameProcessor],
    frame_of: Callable[[bool], bytes],
    strict: bool,
) -> None:
    """Valid and refused Log/Append calls, both header forms: the fast path answers as thriftpy2."""
    fast, slow = real_processors
    frame = frame_of(strict)
    assert decode_fast(frame) is not None
    same_reply(fast, slow, frame)
    # A retry is answered alike too (Append: acknowledged as a duplicate).
    same_reply(fast, slow, frame, as_bytes=True)


def test_append_result_and_retry_through_the_fast_path(
    real_processors: tuple[FrameProcessor, FrameProcessor],
) -> None:
    """What the fast path answers is right, not merely equal: stored, then duplicate."""
    fast, slow = real_processors
    frame = append_frame("p", 3, [("app", "a"), ("app", "b")])
    first = reply_result(same_reply(fast, slow, frame), "Append").success
    again = reply_result(same_reply(fast, slow, frame), "Append").success
    assert (first.stored, first.duplicate, again.stored, again.duplicate) == (2, False, 0, True)


def test_draining_replies_are_identical(
    real_processors: tuple[FrameProcessor, FrameProcessor],
) -> None:
    """ServerDraining for Append and TRY_LATER for Log, fast or not."""
    fast, slow = real_processors
    for p in (fast, slow):
        p._handler.drain()  # type: ignore[attr-defined]
    append = reply_result(same_reply(fast, slow, append_frame("p", 1, [("a", "x")])), "Append")
    assert append.draining is not None
    log = reply_result(same_reply(fast, slow, log_frame([("a", "x")])), "Log")
    assert log.success == log_thrift.ResultCode.TRY_LATER


# ------------------------------------------- every declared exception, and bugs


class ScriptedHandler(RecordingHandler):
    """Raises what the producer (Append) or first category (Log) names."""

    RAISES: dict[bytes, Callable[[], Exception]] = {
        b"InvalidCategory": lambda: log_thrift.InvalidCategory(category="c", reason="r"),
        b"BatchTooLarge": lambda: log_thrift.BatchTooLarge(reason="r", limit=1, actual=2),
        b"ServerDraining": lambda: log_thrift.ServerDraining(reason="r"),
        b"StorageUnavailable": lambda: log_thrift.StorageUnavailable(reason="r"),
        b"InvalidRequest": lambda: log_thrift.InvalidRequest(reason="r"),
        b"TApplicationException": lambda: TApplicationException(
            TApplicationException.UNKNOWN, "no"
        ),
        b"bug": lambda: ZeroDivisionError("handler bug"),
    }

    def append_records(self, producer: Any, sequence: Any, records: Any) -> Any:
        if producer in self.RAISES:
            raise self.RAISES[producer]()
        if producer == b"unencodable":
            return "not an AppendResult"
        return super().append_records(producer, sequence, records)

    def log_records(self, records: list[tuple[bytes, bytes]]) -> int:
        if records and records[0][0] in self.RAISES:
            raise self.RAISES[records[0][0]]()
        return super().log_records(records)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("name", [*(k.decode() for k in ScriptedHandler.RAISES), "unencodable"])
def test_every_exception_is_answered_identically(name: str, strict: bool) -> None:
    """Declared exceptions, TApplicationException, undeclared ones and bad results."""
    fast, slow = processors(ScriptedHandler)
    frame = append_frame(name, 1, [("a", "x")], strict=strict, seqid=9)
    assert decode_fast(frame) is not None
    reply = same_reply(fast, slow, frame)
    assert reply.data is not None
    bad = name in ("bug", "unencodable")
    assert (reply.outcome is FrameOutcome.INTERNAL_ERROR) == bad
    frame = log_frame([(name, "x")], strict=strict, seqid=-9)
    assert decode_fast(frame) is not None
    reply = same_reply(fast, slow, frame)
    assert reply.data is not None
    # Log declares no exceptions: anything but TApplicationException is a handler bug.
    expected_ok = name in ("TApplicationException", "unencodable")
    assert (reply.outcome is FrameOutcome.INTERNAL_ERROR) == (not expected_ok)


# ----------------------------------------------- frames that just miss the shape


def entry_fields(*fields: bytes) -> bytes:
    return b"".join(fields) + b"\x00"


def string_field(fid: int, value: bytes) -> bytes:
    return struct.pack(">bhi", T_STRING, fid, len(value)) + value


def log_with_entries(*entries: bytes, header: bytes | None = None, tail: bytes = b"") -> bytes:
    body = struct.pack(">bhbi", T_LIST, 1, T_STRUCT, len(entries)) + b"".join(entries)
    return (header or message_header(b"Log")) + body + tail + b"\x00"


GOOD = entry_fields(string_field(1, b"app"), string_field(2, b"msg"))
I32_FIELD_3 = struct.pack(">bhi", T_I32, 3, 77)
NEAR_MISSES = {
    "extra field in LogEntry": log_with_entries(
        GOOD, entry_fields(string_field(1, b"a"), string_field(2, b"m"), I32_FIELD_3)
    ),
    "fields out of order": log_with_entries(
        GOOD, entry_fields(string_field(2, b"m"), string_field(1, b"a"))
    ),
    "missing message": log_with_entries(GOOD, entry_fields(string_field(1, b"a"))),
    "missing category": log_with_entries(entry_fields(string_field(2, b"m")), GOOD),
    "empty LogEntry": log_with_entries(GOOD, b"\x00"),
    "message as i32": log_with_entries(entry_fields(string_field(1, b"a"), I32_FIELD_3)),
    "extra field in the args": log_with_entries(GOOD, tail=I32_FIELD_3),
    "oneway Log": log_with_entries(GOOD, header=message_header(b"Log", mtype=TMessageType.ONEWAY)),
    "non-strict oneway Log": log_with_entries(
        GOOD, header=struct.pack(">i", 3) + b"Log" + struct.pack(">bi", 4, 1)
    ),
    "Append without producer": encode_call(
        "Append",
        LogService.Append_args(batch=AppendBatch(sequence=1, entries=[LogEntry("a", "m")])),
    ),
    "Append without entries": encode_call(
        "Append", LogService.Append_args(batch=AppendBatch(producer="p", sequence=1))
    ),
    "Append without batch": encode_call("Append", LogService.Append_args()),
    "Append batch fields reordered": message_header(b"Append")
    + struct.pack(">bh", T_STRUCT, 1)
    + struct.pack(">bhq", T_I64, 2, 4)
    + string_field(1, b"p")
    + struct.pack(">bhbi", T_LIST, 3, T_STRUCT, 1)
    + GOOD
    + b"\x00\x00",
    "Log with a list of strings": message_header(b"Log")
    + struct.pack(">bhbi", T_LIST, 1, T_STRING, 1)
    + struct.pack(">i", 1)
    + b"x"
    + b"\x00",
    "count larger than the entries": log_with_entries(GOOD)[:-1].replace(
        struct.pack(">bhbi", T_LIST, 1, T_STRUCT, 1),
        struct.pack(">bhbi", T_LIST, 1, T_STRUCT, 2),
    )
    + b"\x00",
    "negative string length": log_with_entries(
        GOOD, struct.pack(">bhi", T_STRING, 1, -1) + b"\x00" * 20
    ),
    "truncated": log_with_entries(GOOD, GOOD)[:-9],
    "count of 2^31-1": message_header(b"Log")
    + struct.pack(">bhbi", T_LIST, 1, T_STRUCT, 2**31 - 1)
    + GOOD * 3,
}


@pytest.mark.parametrize("frame", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_frames_off_the_shape_take_the_thriftpy2_route(frame: bytes) -> None:
    """decode_fast declines them; the fallback answers them as before."""
    assert decode_fast(frame) is None
    fast, slow = processors(RecordingHandler)
    same_reply(fast, slow, frame)
    assert fast._handler.logged == slow._handler.logged  # type: ignore[attr-defined]


def test_missing_fields_reach_the_handler_as_thriftpy2_decodes_them() -> None:
    """A LogEntry without its message is still stored by the fallback (message None)."""
    fast, _ = processors(RecordingHandler)
    reply = fast.process(NEAR_MISSES["missing message"], "peer")
    assert reply_result(reply, "Log").success == 0
    assert fast._handler.logged == [(b"app", b"msg"), (b"a", None)]  # type: ignore[attr-defined]


def test_a_small_max_depth_turns_the_fast_path_off() -> None:
    """With max_depth below the shapes' nesting the guard must keep refusing them."""
    for depth in (2, 3):
        fast = FrameProcessor(LogService, RecordingHandler(), depth, Throttle())
        slow = FrameProcessor(LogService, RecordingHandler(), depth, Throttle(), fast=False)
        frame = append_frame("p", 1, [("a", "m")])
        assert fast.process(frame, "p").data == slow.process(frame, "p").data
        assert fast.process(frame, "p").outcome is FrameOutcome.PROTOCOL_ERROR


def test_handlers_without_record_methods_keep_thriftpy2() -> None:
    """A handler with only the IDL methods is served by thriftpy2's route."""

    class Plain:
        def Log(self, messages: list[Any]) -> int:
            return len(messages)

    processor = FrameProcessor(LogService, Plain(), 32, Throttle())
    assert "fast=False" in repr(processor)
    assert reply_result(processor.process(log_frame([("a", "b")] * 3), "p"), "Log").success == 3


def test_other_services_keep_thriftpy2() -> None:
    """The fast shapes are log.thrift's: another service (even one like it) is not decoded so."""
    other = thriftpy2.load(str(IDL_PATH), module_name="other_thrift")
    processor = FrameProcessor(other.LogService, RecordingHandler(), 32, Throttle())
    assert "fast=False" in repr(processor)


# ------------------------------------------------------------------ properties


def thriftpy2_decode(frame: bytes) -> tuple[str, Any, int]:
    """(api, args, bytes consumed) as thriftpy2's server side decodes the frame."""
    buf = TCyMemoryBuffer(frame)
    proto = TCyBinaryProtocol(buf, strict_read=False, decode_response=False)
    api, _, _ = proto.read_message_begin()
    args = getattr(LogService, f"{api}_args")()
    args.read(proto)
    return api, args, len(frame) - len(buf.getvalue())


def assert_agrees_with_thriftpy2(frame: bytes) -> None:
    """Whatever decode_fast accepts, the guard accepts and thriftpy2 decodes to the same."""
    fast = decode_fast(frame)
    if fast is None:
        return
    assert check_frame(frame) == fast.message
    api, args, consumed = thriftpy2_decode(frame)
    assert (api, consumed) == (fast.api, fast.message.end)
    if api == "Log":
        expected = [(m.category, m.message) for m in args.messages]
    else:
        assert (args.batch.producer, args.batch.sequence) == (fast.producer, fast.sequence)
        expected = [(m.category, m.message) for m in args.batch.entries]
    assert fast.records == expected
    assert all(type(c) is bytes and type(m) is bytes for c, m in fast.records)


binary = st.binary(max_size=20)
records = st.lists(st.tuples(binary, binary), max_size=8)


@PROPERTY
@given(
    entries=records,
    producer=st.none() | binary,
    sequence=st.integers(-(2**63), 2**63 - 1),
    strict=st.booleans(),
    seqid=st.integers(-(2**31), 2**31 - 1),
    api=st.sampled_from(["Log", "Append"]),
)
def test_valid_calls_decode_as_thriftpy2_decodes_them(
    entries: list[tuple[bytes, bytes]],
    producer: bytes | None,
    sequence: int,
    strict: bool,
    seqid: int,
    api: str,
) -> None:
    """Random valid Log and Append calls: the fast path takes them and agrees with thriftpy2."""
    if api == "Log":
        frame = log_frame(entries, strict=strict, seqid=seqid)  # type: ignore[arg-type]
    else:
        batch = AppendBatch(
            producer=producer,
            sequence=sequence,
            entries=[LogEntry(category=c, message=m) for c, m in entries],
        )
        frame = encode_call(
            "Append", LogService.Append_args(batch=batch), strict=strict, seqid=seqid
        )
    assert (decode_fast(frame) is not None) == (api == "Log" or producer is not None)
    assert_agrees_with_thriftpy2(frame)


@PROPERTY
@given(
    entries=records,
    api=st.sampled_from(["Log", "Append"]),
    strict=st.booleans(),
    edits=st.lists(
        st.tuples(st.integers(0, 2**16), st.integers(0, 255), st.sampled_from("rid")), max_size=4
    ),
    cut=st.integers(0, 2**16),
)
def test_mutated_calls_are_never_misread(
    entries: list[tuple[bytes, bytes]],
    api: str,
    strict: bool,
    edits: list[tuple[int, int, str]],
    cut: int,
) -> None:
    """Bytes replaced, inserted, deleted, the frame cut: the fast path either declines, or
    decodes what thriftpy2 decodes; and the two processors give the same reply."""
    if api == "Log":
        frame = bytearray(log_frame(entries, strict=strict))  # type: ignore[arg-type]
    else:
        frame = bytearray(append_frame(b"p", 5, entries, strict=strict))  # type: ignore[arg-type]
    for at, value, how in edits:
        at %= len(frame) + 1
        if how == "r" and at < len(frame):
            frame[at] = value
        elif how == "i":
            frame[at:at] = bytes([value])
        elif at < len(frame):
            del frame[at]
    data = bytes(frame[: max(1, len(frame) - cut % 8)])
    assert_agrees_with_thriftpy2(data)
    fast, slow = processors(RecordingHandler)
    same_reply(fast, slow, data)


def test_unknown_methods_are_answered_identically() -> None:
    """Methods other than Log and Append never take the fast path."""
    fast, slow = processors(RecordingHandler)
    for frame in (message_header(b"Nope") + b"\x00", encode_call("Ping", LogService.Ping_args())):
        assert decode_fast(frame) is None
        assert same_reply(fast, slow, frame).data is not None
