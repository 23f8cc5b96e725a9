"""The frame guard: what it refuses, that it agrees with thriftpy2, and what it costs."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
from thriftpy2.thrift import TProcessor
from thriftpy2.transport.memory import TCyMemoryBuffer

from logserver.transport._guard import OBJECT_COST, FrameRejectedError, Message, check_frame
from tests.transport.helpers import (
    AppendBatch,
    LogEntry,
    LogService,
    RecordingHandler,
    encode_call,
    log_thrift,
    message_header,
)

pytestmark = pytest.mark.timeout(60)

T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64 = 2, 3, 4, 6, 8, 10
T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = 11, 12, 13, 14, 15
SENTINEL = b"\xff" * 16
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def thriftpy2_consumed(frame: bytes) -> int:
    """How many bytes thriftpy2's server-side decode reads from this frame.

    Bytes after the frame are a sentinel: reading past the end shows as
    consuming more than the frame.
    """
    buf = TCyMemoryBuffer(frame + SENTINEL)
    proto = TCyBinaryProtocol(buf, strict_read=False, decode_response=False)
    TProcessor(LogService, RecordingHandler()).process_in(proto)
    return len(frame) + len(SENTINEL) - len(buf.getvalue())


def assert_safe_verdict(frame: bytes) -> Message | None:
    """The guard refuses with its own error, or thriftpy2 reads exactly what it accepted, fast."""
    try:
        message = check_frame(frame)
    except FrameRejectedError:
        return None
    started = time.monotonic()
    consumed = thriftpy2_consumed(frame)
    assert time.monotonic() - started < 0.5, "thriftpy2 spun on an accepted frame"
    assert consumed == message.end
    return message


# ---------------------------------------------------------------- the rules


def test_accepts_what_thriftpy2_clients_send_strict_and_not() -> None:
    """A Log call is accepted in both header forms, and the header is reported."""
    args = LogService.Log_args(messages=[LogEntry(category="a", message="b")])
    for strict in (True, False):
        frame = encode_call("Log", args, strict=strict, seqid=42)
        assert check_frame(frame) == Message(b"Log", 1, 42, strict, len(frame))


def test_refuses_the_list_void_bomb_with_the_header() -> None:
    """list<void> of 2^31-1 elements: refused, and the header is there for the reply."""
    frame = message_header(b"Ping", seqid=3) + struct.pack(">bhbi", T_LIST, 1, 1, 2**31 - 1)
    with pytest.raises(FrameRejectedError) as raised:
        check_frame(frame + b"\x00")
    assert raised.value.message is not None
    assert (raised.value.message.name, raised.value.message.seqid) == (b"Ping", 3)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (struct.pack(">bhbi", T_LIST, 1, 0, 5) + b"\x00", "invalid element type 0"),
        (struct.pack(">bhbi", T_SET, 1, 99, 1) + b"\x00" * 8, "invalid element type 99"),
        (struct.pack(">bhbi", T_LIST, 1, T_I32, -1) + b"\x00", "negative element count"),
        (struct.pack(">bhbi", T_LIST, 1, T_I64, 3) + b"\x00" * 17, "cannot fit"),
        (struct.pack(">bhbbi", T_MAP, 1, T_I32, 1, 1) + b"\x00" * 9, "invalid map key/value"),
        (struct.pack(">bhbbi", T_MAP, 1, T_I32, T_I32, 2) + b"\x00" * 9, "cannot fit"),
        (struct.pack(">bhi", T_STRING, 1, 2**31 - 1) + b"abc\x00", "exceeds"),
        (struct.pack(">bhi", T_STRING, 1, -5) + b"\x00", "exceeds"),
        (struct.pack(">bh", 1, 1) + b"\x00", "invalid field type 1"),
        (struct.pack(">bh", 16, 1) + b"\x00", "invalid field type 16"),
        (struct.pack(">bhi", T_I32, 1, 7), "truncated"),
        (b"", "truncated"),
    ],
)
def test_refusals(body: bytes, reason: str) -> None:
    """Each rule refuses with a reason that names it."""
    with pytest.raises(FrameRejectedError) as raised:
        check_frame(message_header(b"Ping") + body)
    assert reason in raised.value.reason


def test_depth_is_bounded_as_thriftpy2_counts_it() -> None:
    """Args struct + nested lists: 32 levels pass, 33 are refused."""

    def nested(levels: int) -> bytes:
        # The args struct is one level; each list one more.
        lists = levels - 1
        inner = b"".join(struct.pack(">bi", T_LIST, 1) for _ in range(lists - 1))
        return (
            message_header(b"Ping")
            + struct.pack(">bh", T_LIST, 1)
            + inner
            + struct.pack(">bi", T_I32, 0)
            + b"\x00"
        )

    assert_safe_verdict(nested(32))
    assert check_frame(nested(32)).end == len(nested(32))
    with pytest.raises(FrameRejectedError, match="too deep"):
        check_frame(nested(33))


def test_not_a_message_has_no_header() -> None:
    """Bytes that are not a message header are refused with message=None (close, no reply)."""
    for junk in (b"", b"\x80\x02\x00\x01" + b"\x00" * 12, b"\x7f\xff\xff\xff" + b"x" * 20):
        with pytest.raises(FrameRejectedError) as raised:
            check_frame(junk)
        assert raised.value.message is None


def test_reply_messages_are_refused() -> None:
    """A REPLY sent to the server is not a call: refused, with the header for the answer."""
    with pytest.raises(FrameRejectedError, match="not a call") as raised:
        check_frame(message_header(b"Ping", mtype=2) + b"\x00")
    assert raised.value.message is not None and raised.value.message.type == 2


def test_empty_struct_flood_is_refused_but_real_batches_pass() -> None:
    """Empty structs (1 byte, ~150 bytes of Python each) are refused in bulk; real entries pass."""
    count = 100_000
    flood = message_header(b"Log") + struct.pack(">bhbi", T_LIST, 1, T_STRUCT, count)
    flood += b"\x00" * count + b"\x00"
    with pytest.raises(FrameRejectedError, match=f"per {OBJECT_COST} bytes"):
        check_frame(flood)
    # The smallest real entries (empty strings: 15 bytes each) always pass.
    smallest = [LogEntry(category="", message="") for _ in range(count)]
    frame = encode_call("Log", LogService.Log_args(messages=smallest))
    assert check_frame(frame).end == len(frame)
    # A handful of empty structs in a small frame is fine.
    assert_safe_verdict(encode_call("Log", LogService.Log_args(messages=[LogEntry()] * 50)))


def test_fast_path_does_not_change_verdicts() -> None:
    """Entries of other shapes (reordered, missing, extra fields) are walked generically."""
    odd = [
        LogEntry(category="a"),
        LogEntry(message="b"),
        LogEntry(),
        LogEntry(category="c" * 300, message=""),
    ]
    frame = encode_call("Log", LogService.Log_args(messages=odd))
    assert assert_safe_verdict(frame) is not None
    # Field order reversed by hand: message first, then category.
    entry = struct.pack(">bhi", T_STRING, 2, 1) + b"m" + struct.pack(">bhi", T_STRING, 1, 1) + b"c"
    entry += b"\x00"
    frame = message_header(b"Log") + struct.pack(">bhbi", T_LIST, 1, T_STRUCT, 2)
    frame += entry * 2 + b"\x00"
    assert assert_safe_verdict(frame) is not None
    # A lying inner length is refused even when the shape looks right.
    bad = struct.pack(">bhi", T_STRING, 1, 1000) + b"c" + struct.pack(">bhi", T_STRING, 2, 1)
    frame = (
        message_header(b"Log") + struct.pack(">bhbi", T_LIST, 1, T_STRUCT, 1) + bad + b"m\x00\x00"
    )
    with pytest.raises(FrameRejectedError):
        check_frame(frame)


# ---------------------------------------------------------------- the cost


def test_guard_accepts_the_1000_entry_batches_bench_measures() -> None:
    """The frames bench's guard_cost case times (1,000 x 100 bytes, Log and Append) are accepted,
    and the guard's verdict is exactly what thriftpy2 reads. (Its cost against thriftpy2's
    decode of the same frame is measured there, as a same-run ratio.)"""
    entries = [LogEntry(category="app.web", message="m" * 100) for _ in range(1000)]
    frames = {
        "Log": encode_call("Log", LogService.Log_args(messages=entries)),
        "Append": encode_call(
            "Append",
            LogService.Append_args(
                batch=AppendBatch(producer="producer-1", sequence=9, entries=entries)
            ),
        ),
    }
    for name, frame in frames.items():
        message = assert_safe_verdict(frame)
        assert message is not None, f"{name}: refused"
        assert (message.name, message.end) == (name.encode(), len(frame))


# ---------------------------------------------------------------- properties

text_or_bytes = st.one_of(st.text(max_size=30), st.binary(max_size=30))
entries_st = st.lists(
    st.builds(
        LogEntry,
        category=st.one_of(st.none(), text_or_bytes),
        message=st.one_of(st.none(), text_or_bytes),
    ),
    max_size=20,
)
i64 = st.integers(-(2**63), 2**63 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
valid_calls = st.one_of(
    st.builds(lambda m: ("Log", LogService.Log_args(messages=m)), st.one_of(st.none(), entries_st)),
    st.builds(
        lambda p, s, e: (
            "Append",
            LogService.Append_args(batch=AppendBatch(producer=p, sequence=s, entries=e)),
        ),
        text_or_bytes,
        i64,
        entries_st,
    ),
    st.builds(
        lambda c, p, n: ("Read", LogService.Read_args(category=c, position=p, limit=n)),
        text_or_bytes,
        i64,
        i32,
    ),
    st.sampled_from(
        [
            ("Categories", LogService.Categories_args()),
            ("Status", LogService.Status_args()),
            ("Ping", LogService.Ping_args()),
        ]
    ),
)


@PROPERTY
@given(call=valid_calls, strict=st.booleans(), seqid=i32)
def test_property_accepts_every_valid_call(call: tuple[str, Any], strict: bool, seqid: int) -> None:
    """Whatever thriftpy2's client encodes for a valid call is accepted, whole."""
    name, args = call
    frame = encode_call(name, args, strict=strict, seqid=seqid)
    message = check_frame(frame)
    assert (message.name, message.seqid, message.strict) == (name.encode(), seqid, strict)
    assert message.end == len(frame) == thriftpy2_consumed(frame)


# A generic Thrift value: (wire type, encoded bytes), any nesting.
SCALARS: dict[int, st.SearchStrategy[bytes]] = {
    T_BOOL: st.sampled_from([b"\x00", b"\x01"]),
    T_BYTE: st.binary(min_size=1, max_size=1),
    T_I16: st.binary(min_size=2, max_size=2),
    T_I32: st.binary(min_size=4, max_size=4),
    T_I64: st.binary(min_size=8, max_size=8),
    T_DOUBLE: st.binary(min_size=8, max_size=8),
    T_STRING: st.binary(max_size=20).map(lambda b: struct.pack(">i", len(b)) + b),
}


def type_trees(depth: int) -> st.SearchStrategy[Any]:
    """A type: a scalar id, ("struct",), or a container of element types."""
    scalars = st.sampled_from(sorted(SCALARS))
    if depth <= 0:
        return scalars
    inner = type_trees(depth - 1)
    return st.one_of(
        scalars,
        st.just((T_STRUCT,)),
        st.tuples(st.sampled_from([T_LIST, T_SET]), inner),
        st.tuples(st.just(T_MAP), inner, inner),
    )


def wire_type(t: Any) -> int:
    return t if isinstance(t, int) else t[0]


@st.composite
def values_of(draw: st.DrawFn, t: Any, depth: int) -> bytes:
    if isinstance(t, int):
        return draw(SCALARS[t])
    if t[0] == T_STRUCT:
        return draw(structs(depth - 1))
    if t[0] in (T_LIST, T_SET):
        items = draw(st.lists(values_of(t[1], depth - 1), max_size=4))
        return struct.pack(">bi", wire_type(t[1]), len(items)) + b"".join(items)
    pairs = draw(
        st.lists(st.tuples(values_of(t[1], depth - 1), values_of(t[2], depth - 1)), max_size=3)
    )
    header = struct.pack(">bbi", wire_type(t[1]), wire_type(t[2]), len(pairs))
    return header + b"".join(k + v for k, v in pairs)


@st.composite
def structs(draw: st.DrawFn, depth: int) -> bytes:
    fields = []
    for _ in range(draw(st.integers(0, 4 if depth > 0 else 2))):
        t = draw(type_trees(max(0, min(depth, 2))))
        fid = draw(st.integers(-5, 5))
        fields.append(struct.pack(">bh", wire_type(t), fid) + draw(values_of(t, depth)))
    return b"".join(fields) + b"\x00"


generic_frames = st.builds(
    lambda name, body: message_header(name) + body,
    st.sampled_from([b"Ping", b"Log", b"Append", b"Read", b"NoSuchMethod"]),
    structs(3),
)


@settings(PROPERTY, max_examples=100)
@given(frame=generic_frames)
def test_property_generic_values_accepted_and_agreed(frame: bytes) -> None:
    """Any well-formed nesting of Thrift values is accepted, and thriftpy2 reads it exactly."""
    message = assert_safe_verdict(frame)
    assert message is not None and message.end == len(frame)


# Wild frames: the same shapes, but any type id (real or not), and counts that may lie.
# Uniform over ids (hypothesis would favour a few): every real type twice, then 0..20 and 255.
any_type = st.sampled_from([*SCALARS, T_STRUCT, T_LIST, T_SET, T_MAP, *range(21), 255])
counts = st.one_of(st.none(), st.integers(-3, 40), st.sampled_from([2**31 - 1, 2**24, -(2**31)]))


@st.composite
def wild_values(draw: st.DrawFn, t: int, depth: int) -> bytes:
    if t in SCALARS:
        return draw(st.one_of(SCALARS[t], st.binary(max_size=9)))
    if t == T_STRUCT and depth > 0:
        return draw(wild_structs(depth - 1))
    if t in (T_LIST, T_SET) and depth > 0:
        etype = draw(any_type)
        items = draw(st.lists(wild_values(etype, depth - 1), max_size=4))
        count = draw(counts)
        count = len(items) if count is None else count
        return struct.pack(">Bi", etype, count) + b"".join(items)
    if t == T_MAP and depth > 0:
        ktype, vtype = draw(any_type), draw(any_type)
        pairs = draw(
            st.lists(
                st.tuples(wild_values(ktype, depth - 1), wild_values(vtype, depth - 1)),
                max_size=3,
            )
        )
        count = draw(counts)
        count = len(pairs) if count is None else count
        return struct.pack(">BBi", ktype, vtype, count) + b"".join(k + v for k, v in pairs)
    # Not a real type (or too deep): bytes of the sizes a decoder might wrongly assume.
    return draw(st.one_of(st.binary(max_size=9), st.sampled_from([b"", b"\x00" * 8])))


@st.composite
def wild_structs(draw: st.DrawFn, depth: int) -> bytes:
    fields = []
    for _ in range(draw(st.integers(0, 3))):
        t = draw(any_type.filter(lambda t: t != 0))
        fields.append(struct.pack(">Bh", t, draw(st.integers(-2, 3))) + draw(wild_values(t, depth)))
    return b"".join(fields) + draw(st.sampled_from([b"\x00", b"", b"\x00\x00"]))


wild_frames = st.builds(
    lambda name, body: message_header(name) + body,
    st.sampled_from([b"Ping", b"Log", b"Append", b"NoSuchMethod"]),
    wild_structs(4),
)


@PROPERTY
@given(frame=wild_frames)
def test_property_wild_frames(frame: bytes) -> None:
    """Structured frames with bogus types and lying counts: refused or read exactly."""
    assert_safe_verdict(frame)


@PROPERTY
@given(junk=st.binary(max_size=300))
def test_property_random_bytes(junk: bytes) -> None:
    """Random bytes: only the guard's own error, or a frame thriftpy2 reads safely."""
    assert_safe_verdict(junk)


@PROPERTY
@given(
    name=st.sampled_from([b"Ping", b"Log", b"Append"]),
    body=st.binary(max_size=200),
)
def test_property_random_bodies_behind_a_good_header(name: bytes, body: bytes) -> None:
    """Random args behind a valid header reach the deep walk: still safe."""
    assert_safe_verdict(message_header(name) + body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid or generic frame with a few bytes changed, cut, or inserted."""
    frame = bytearray(
        draw(st.one_of(generic_frames, wild_frames, valid_calls.map(lambda c: encode_call(*c))))
    )
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "cut", "insert", "big"]))
        pos = draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "set" and frame:
            frame[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del frame[pos:]
        elif op == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=5))
        elif op == "big" and len(frame) >= pos + 4:
            frame[pos : pos + 4] = draw(st.sampled_from([b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff"]))
    return bytes(frame)


@PROPERTY
@given(frame=mutated())
def test_property_mutated_frames(frame: bytes) -> None:
    """Corrupted real frames (flipped bytes, huge counts, truncation): refused or read safely."""
    assert_safe_verdict(frame)


def test_handler_sees_bytes_for_strings() -> None:
    """decode_response=False: what the guard passed reaches the handler as bytes."""
    frame = encode_call("Log", LogService.Log_args(messages=[LogEntry(category="c", message="é")]))
    check_frame(frame)
    proto = TCyBinaryProtocol(TCyMemoryBuffer(frame), strict_read=False, decode_response=False)
    handler = RecordingHandler()
    _, _, _, call = TProcessor(LogService, handler).process_in(proto)
    assert call is not None
    assert call() == log_thrift.ResultCode.OK
    assert handler.logged == [(b"c", "é".encode())]
