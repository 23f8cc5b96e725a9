"""One request frame in, one reply frame out: the guard, thriftpy2's processor, the handler.

Kept apart from the socket code in :mod:`logserver.transport` so that it can be
driven with plain bytes. Everything a client can do wrong or a handler can
raise becomes a reply the client can read (a declared exception or a
``TApplicationException``); only bytes that are not a Thrift message at all
end the connection.
"""

from __future__ import annotations

import enum
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import structlog

# The Cython protocol explicitly: thriftpy2.protocol falls back to the pure-Python one.
from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
from thriftpy2.thrift import TApplicationException, TMessageType, TProcessor
from thriftpy2.transport.memory import TCyMemoryBuffer

from logserver.transport._fast import MIN_DEPTH, FastCall, decode_fast
from logserver.transport._guard import CALL, ONEWAY, FrameRejectedError, Message, check_frame
from logwire.idl import log_thrift

__all__ = [
    "Call",
    "FrameOutcome",
    "FrameProcessor",
    "RecordHandler",
    "Reply",
    "Throttle",
    "encode_exception",
]

log = structlog.get_logger(__name__)

_LENGTH = struct.Struct(">i")
# thriftpy2's own depth check is a second line behind the guard's; keep it looser.
_DECODER_DEPTH_SLACK = 8


class FrameOutcome(enum.Enum):
    """What became of one frame, for the server's counters."""

    OK = "ok"
    #: The guard or the decoder refused it; a PROTOCOL_ERROR reply was sent.
    PROTOCOL_ERROR = "protocol_error"
    #: Not a Thrift message at all: no reply is possible, close the connection.
    GARBAGE = "garbage"
    #: The handler raised an exception the IDL does not declare.
    INTERNAL_ERROR = "internal_error"


@runtime_checkable
class RecordHandler(Protocol):
    """A LogService handler that also takes Log and Append as plain records.

    ``log_records(records)`` must behave exactly as ``Log(messages)`` and
    ``append_records(producer, sequence, records)`` as ``Append(batch)``
    (same results, same exceptions) for records ``[(category, message), ...]``
    of bytes and a bytes producer. The server calls them for frames in the
    common shape (see :mod:`logserver.transport._fast`), the IDL methods for the rest.
    """

    def log_records(self, records: list[tuple[bytes, bytes]]) -> Any: ...

    def append_records(
        self,
        producer: bytes | str | None,
        sequence: int | None,
        records: list[tuple[bytes, bytes]],
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Call:
    """A decoded request, ready to run: the handler is called by ``run()``."""

    message: Message
    #: The method name as thriftpy2 names it.
    api: Any
    seqid: int
    #: The method's result struct, to be filled in.
    result: Any
    run: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """The framed reply (length prefix included), or None when none may be sent."""

    data: bytes | None
    outcome: FrameOutcome
    method: str = ""
    #: End the connection after this frame (nothing the peer could read was sent).
    close: bool = False


class Throttle:
    """At most one log line per kind per ``interval_s`` seconds; counts what it held back.

    A flood of port scanners or a misconfigured client must not flood the log.
    """

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """Return how many lines of this kind were held back if one may be logged now, else None."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._held.pop(kind, 0)

    def __repr__(self) -> str:
        return f"<Throttle interval={self._interval_s}s held={dict(self._held)}>"


def encode_exception(name: bytes | str, seqid: int, kind: int, message: str) -> bytes:
    """A framed, strict-binary ``TApplicationException`` reply."""
    buf = TCyMemoryBuffer()
    proto = TCyBinaryProtocol(buf, strict_read=False, strict_write=True)
    proto.write_message_begin(name, TMessageType.EXCEPTION, seqid)
    TApplicationException(kind, message).write(proto)
    proto.write_message_end()
    payload = buf.getvalue()
    return _LENGTH.pack(len(payload)) + payload


class FrameProcessor:
    """Validates, decodes and answers request frames for one service and handler.

    Thread-safe: it holds no per-request state, so every connection thread
    shares one.
    """

    def __init__(
        self,
        service: ModuleType,
        handler: object,
        max_depth: int,
        throttle: Throttle,
        *,
        fast: bool = True,
    ) -> None:
        self._service = service
        self._handler = handler
        self._processor = TProcessor(service, handler)
        self._max_depth = max_depth
        self._throttle = throttle
        # Log and Append skip thriftpy2's per-record objects when the service is the
        # one whose shapes thrift_fast decodes, the handler takes records directly
        # (see RecordHandler) and the limits let those shapes through the guard.
        self._fast = (
            fast
            and service is log_thrift.LogService
            and max_depth >= MIN_DEPTH
            and isinstance(handler, RecordHandler)
        )

    def __repr__(self) -> str:
        return (
            f"<FrameProcessor service={getattr(self._service, '__name__', self._service)} "
            f"handler={type(self._handler).__name__} max_depth={self._max_depth} "
            f"fast={self._fast}>"
        )

    def process(self, frame: bytes | bytearray, peer: str) -> Reply:
        """Answer one frame (without its length prefix)."""
        decoded = self.decode(frame, peer)
        return decoded if isinstance(decoded, Reply) else self.answer(decoded, peer)

    def decode(self, frame: bytes | bytearray, peer: str) -> Reply | Call:
        """Decode one frame into a call to run with :meth:`answer`, or the reply if there is
        nothing to run (a refused frame, an unknown method).

        Nothing returned refers to ``frame``: a caller that lets go of it frees the
        frame's memory before the handler runs, so a batch does not hold its frame
        and its records and its encoded form all at once.
        """
        if self._fast:
            # bytes: the records are slices of it, and storage wants bytes.
            fast = decode_fast(frame if type(frame) is bytes else bytes(frame))
            if fast is not None:
                return self._fast_call(fast)
        try:
            message = check_frame(frame, self._max_depth)
        except FrameRejectedError as e:
            return self._rejected(e, peer)

        iprot = TCyBinaryProtocol(
            TCyMemoryBuffer(frame),
            strict_read=False,
            strict_write=True,
            decode_response=False,
            max_depth=self._max_depth + _DECODER_DEPTH_SLACK,
        )
        try:
            api, seqid, result, call = self._processor.process_in(iprot)
        except Exception as e:
            # The guard accepted the structure; the decoder may still refuse the
            # values (a map key that cannot be hashed, ...).
            self._warn("undecodable", "request could not be decoded", peer, error=repr(e))
            return _error_reply(
                message,
                TApplicationException.PROTOCOL_ERROR,
                f"request could not be decoded: {e!r}",
                FrameOutcome.PROTOCOL_ERROR,
            )

        if isinstance(result, TApplicationException):
            # Unknown method: thriftpy2 already skipped the (guarded) args.
            log.debug("unknown method", method=message.method, peer=peer)
            if not result.message:
                result.message = f"unknown method {message.method!r}"
            return Reply(
                self._encode(api, seqid, result, exception=True), FrameOutcome.OK, message.method
            )
        assert call is not None
        return Call(message, api, seqid, result, call)

    def _fast_call(self, fast: FastCall) -> Call:
        """The handler's record-level method for a Log or Append decoded by decode_fast."""
        handler: Any = self._handler
        records = fast.records
        if fast.api == "Log":
            result = log_thrift.LogService.Log_result()

            def call() -> Any:
                return handler.log_records(records)

        else:
            result = log_thrift.LogService.Append_result()
            producer, sequence = fast.producer, fast.sequence

            def call() -> Any:
                return handler.append_records(producer, sequence, records)

        message = fast.message
        return Call(message, fast.api, message.seqid, result, call)

    def answer(self, request: Call, peer: str) -> Reply:
        """Run a decoded call's handler method and encode its answer."""
        return self._answer(
            request.message, request.api, request.seqid, request.result, request.run, peer
        )

    def _answer(
        self,
        message: Message,
        api: Any,
        seqid: int,
        result: Any,
        call: Callable[[], Any],
        peer: str,
    ) -> Reply:
        """Run the handler and encode its answer as thriftpy2's processor would."""
        outcome = FrameOutcome.OK
        exception: TApplicationException | None = None
        try:
            result.success = call()
        except TApplicationException as e:
            exception = e
        except Exception as e:
            if not self._processor.handle_exception(e, result):
                # thriftpy2 would drop the connection without a word; the client
                # could not tell a bug from a crash. Say what happened instead.
                log.error(
                    "handler raised an undeclared exception",
                    method=message.method,
                    peer=peer,
                    exc_info=True,
                )
                exception = TApplicationException(
                    TApplicationException.INTERNAL_ERROR,
                    f"{message.method}: {type(e).__name__}: {e}",
                )
                outcome = FrameOutcome.INTERNAL_ERROR

        if message.type != CALL or (exception is None and result.oneway):
            # A oneway sender reads no reply; one sent anyway would be taken as
            # the answer to its next call.
            return Reply(None, outcome, message.method)
        if exception is not None:
            return Reply(
                self._encode(api, seqid, exception, exception=True), outcome, message.method
            )
        try:
            return Reply(self._encode(api, seqid, result), outcome, message.method)
        except Exception as e:
            # The handler returned something the IDL cannot encode.
            log.error(
                "handler result could not be encoded",
                method=message.method,
                peer=peer,
                exc_info=True,
            )
            return _error_reply(
                message,
                TApplicationException.INTERNAL_ERROR,
                f"{message.method}: result could not be encoded: {e!r}",
                FrameOutcome.INTERNAL_ERROR,
            )

    def frame_too_large(self, name: bytes, seqid: int, length: int, cap: int) -> bytes:
        """The reply to a call whose frame was over ``cap`` (and was read into nothing).

        A method that declares ``BatchTooLarge`` (``Append``, ``AppendPacked``)
        gets it, so that a client splits the batch: to logclient a
        ``TApplicationException`` looks like a broken server, and it would carry
        the same batch from server to server. Any other call gets a
        ``PROTOCOL_ERROR`` naming the limit.
        """
        text = f"frame of {length} bytes exceeds the server's limit of {cap} bytes"
        method = name.decode("ascii", "replace")
        result_cls = None
        if method in getattr(self._service, "thrift_services", ()):
            result_cls = getattr(self._service, f"{method}_result", None)
        field = _declared(result_cls, log_thrift.BatchTooLarge)
        if result_cls is None or field is None:
            return encode_exception(name, seqid, TApplicationException.PROTOCOL_ERROR, text)
        error = log_thrift.BatchTooLarge(reason=text, limit=cap, actual=length)
        return self._encode(method, seqid, result_cls(**{field: error}))

    def busy(self, name: bytes, seqid: int, reason: str) -> bytes:
        """The reply to a call that was read into nothing because the server had no room.

        ``Log`` gets ``TRY_LATER`` (Scribe's clients retry it later); a method that
        declares ``StorageUnavailable`` gets it, which logclient takes as "this
        server cannot store right now": it resends the batch elsewhere (or later),
        never drops it. Anything else gets a ``TApplicationException`` naming the
        reason.
        """
        method = name.decode("ascii", "replace")
        result_cls: Any = None
        if method in getattr(self._service, "thrift_services", ()):
            result_cls = getattr(self._service, f"{method}_result", None)
        success = getattr(result_cls, "thrift_spec", {}).get(0)
        if success is not None and len(success) >= 3 and success[2] is log_thrift.ResultCode:
            return self._encode(method, seqid, result_cls(success=log_thrift.ResultCode.TRY_LATER))
        field = _declared(result_cls, log_thrift.StorageUnavailable)
        if result_cls is None or field is None:
            return encode_exception(name, seqid, TApplicationException.INTERNAL_ERROR, reason)
        error = log_thrift.StorageUnavailable(reason=reason)
        return self._encode(method, seqid, result_cls(**{field: error}))

    def _rejected(self, error: FrameRejectedError, peer: str) -> Reply:
        header = error.message
        if header is None:
            self._warn("not_thrift", "frame is not a Thrift message", peer, reason=error.reason)
            return Reply(None, FrameOutcome.GARBAGE)
        self._warn(
            "malformed",
            "malformed request refused",
            peer,
            method=header.method,
            reason=error.reason,
        )
        kind = (
            TApplicationException.PROTOCOL_ERROR
            if header.type in (CALL, ONEWAY)
            else TApplicationException.INVALID_MESSAGE_TYPE
        )
        return _error_reply(
            header, kind, f"malformed request: {error.reason}", FrameOutcome.PROTOCOL_ERROR
        )

    @staticmethod
    def _encode(api: Any, seqid: int, payload: Any, *, exception: bool = False) -> bytes:
        """A framed strict-binary reply: Apache and thriftpy2 clients read it either way."""
        buf = TCyMemoryBuffer()
        proto = TCyBinaryProtocol(buf, strict_read=False, strict_write=True)
        mtype = TMessageType.EXCEPTION if exception else TMessageType.REPLY
        proto.write_message_begin(api, mtype, seqid)
        payload.write(proto)
        proto.write_message_end()
        data = buf.getvalue()
        return _LENGTH.pack(len(data)) + data

    def _warn(self, kind: str, event: str, peer: str, **fields: object) -> None:
        held = self._throttle.allow(kind)
        if held is None:
            log.debug(event, peer=peer, **fields)
        else:
            log.warning(event, peer=peer, held_back=held, **fields)


def _declared(result_cls: Any, exception: type) -> str | None:
    """The name of the result field that carries ``exception``, if the method declares it."""
    for spec in getattr(result_cls, "thrift_spec", {}).values():
        if len(spec) >= 3 and spec[2] is exception:
            return str(spec[1])
    return None


def _error_reply(message: Message, kind: int, text: str, outcome: FrameOutcome) -> Reply:
    """A TApplicationException reply, or none (and close) for a oneway message."""
    if message.type == ONEWAY:
        return Reply(None, outcome, message.method, close=True)
    return Reply(encode_exception(message.name, message.seqid, kind, text), outcome, message.method)
