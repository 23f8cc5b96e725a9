"""A segment's sparse index: where its records start, what times and how many records lie where.

Every ``MARK_SPACING`` bytes or more, at the start of a write (or of a block
or record found by a scan), the index has a **mark**; for the stretch from one
mark to the next it keeps the smallest and largest receive time of its blocks
and how many records came before it in the segment. So:

- a read position is checked, and a block found, by decoding at most one
  stretch (as the plain list of marks did before);
- a read from a time (``--since``) starts at the first stretch that can hold
  it: ``reach[k]`` is the largest time up to stretch ``k``, never decreasing,
  so a binary search finds the first stretch where records at or after a time
  may lie, whatever the clock did (a server's clock that stepped back only
  widens the stretches read);
- stretches that hold nothing of a time range are skipped without reading;
- the last N records are found from the counts, and ``CategoryStats`` needs
  no read at all.

Writers pay per write (a comparison or two and, every 64 KiB, one entry), never
per record. The index lives in memory and in a sidecar file per segment
(``<base>.idx``), written when the segment is closed (rotation, shutdown) and
when a scan built it; a sidecar that is missing, damaged, of another segment
(marker) or of another size is ignored and the index is rebuilt by scanning
the segment, then saved again. It holds nothing that the segment does not:
losing it costs one scan.

Sidecar (little-endian)::

    magic 8 b"\\x89LSIDX\\r\\n", version u16 1, reserved u16, entries u32,
    marker 16 (the segment's; zeros for format 1), covered u64 (the segment's
    size it describes), records u64, then per entry: offset u64, min_ns i64,
    max_ns i64, before u64; then crc32 u32 of everything before it.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from bisect import bisect_left
from pathlib import Path

__all__ = ["INDEX_SUFFIX", "MARK_SPACING", "IndexBuilder", "SegmentIndex", "index_path"]

MARK_SPACING = 64 * 1024
"""A mark at least every this many bytes: checking a position decodes at most this much."""
INDEX_SUFFIX = ".idx"
_MAGIC = b"\x89LSIDX\r\n"
_VERSION = 1
_HEAD = struct.Struct("<8sHHI16sQQ")
_ENTRY = struct.Struct("<QqqQ")
_CRC = struct.Struct("<I")
_NONE_MIN = 2**63 - 1  # an empty stretch: no time at all
_NONE_MAX = -(2**63)


def index_path(segment_path: Path) -> Path:
    """The sidecar of a segment file."""
    return segment_path.with_suffix(INDEX_SUFFIX)


class SegmentIndex:
    """The marks of one segment and what lies between them (see the module docstring).

    Appended to by the one writer of its segment (under the category lock),
    read without a lock: every field is replaced or appended atomically, and
    ``covered`` moves last.
    """

    __slots__ = ("before", "covered", "maxs", "mins", "offsets", "reach", "records", "spacing")

    def __init__(self, start: int, spacing: int = MARK_SPACING) -> None:
        self.spacing = spacing
        self.offsets: list[int] = [start]
        self.mins = array("q", [_NONE_MIN])
        self.maxs = array("q", [_NONE_MAX])
        self.reach = array("q", [_NONE_MAX])
        self.before = array("q", [0])
        self.records = 0
        self.covered = start

    def __repr__(self) -> str:
        return (
            f"<SegmentIndex marks={len(self.offsets)} records={self.records} "
            f"covered={self.covered} times={self.first_ns}..{self.last_ns}>"
        )

    @property
    def first_ns(self) -> int:
        """The earliest receive time in the segment (0: none)."""
        low = min(self.mins)
        return 0 if low == _NONE_MIN else low

    @property
    def last_ns(self) -> int:
        """The latest receive time in the segment (0: none)."""
        high = self.reach[-1]
        return 0 if high == _NONE_MAX else high

    def note(
        self, start: int, end: int, received_ns: int, records: int, latest_ns: int = 0
    ) -> None:
        """A write of ``records`` records received at ``received_ns`` (from then to
        ``latest_ns``, when later: copies of several batches) filled ``[start, end)``."""
        high = max(received_ns, latest_ns)
        if start - self.offsets[-1] >= self.spacing:
            self.mins.append(received_ns)
            self.maxs.append(high)
            self.reach.append(max(self.reach[-1], high))
            self.before.append(self.records)
            self.offsets.append(start)
        else:
            if received_ns < self.mins[-1]:
                self.mins[-1] = received_ns
            if high > self.maxs[-1]:
                self.maxs[-1] = high
                if high > self.reach[-1]:
                    self.reach[-1] = high
        self.records += records
        self.covered = end

    def cut(self, end: int) -> None:
        """Forget marks at or after ``end`` (recovery cut the segment back to it). The counts
        and times of the last stretch may then be too wide, never too narrow: fine for
        skipping, and the sidecar of a cut segment is rebuilt by the scan that cut it."""
        while len(self.offsets) > 1 and self.offsets[-1] >= end:
            for column in (self.mins, self.maxs, self.reach, self.before):
                column.pop()
            self.offsets.pop()
        self.covered = min(self.covered, end)

    def first_stretch(self, since_ns: int) -> int:
        """The first mark from which records received at or after ``since_ns`` may lie."""
        return min(bisect_left(self.reach, since_ns), len(self.offsets) - 1)

    def stretch_of(self, offset: int) -> int:
        """The mark at or before ``offset``."""
        lo, hi = 0, len(self.offsets)
        offsets = self.offsets
        while lo < hi:
            mid = (lo + hi) // 2
            if offsets[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return max(0, lo - 1)

    def misses(self, k: int, since_ns: int | None, until_ns: int | None) -> bool:
        """Whether stretch ``k`` holds nothing received in ``[since_ns, until_ns)``."""
        if self.mins[k] == _NONE_MIN:
            return k < len(self.offsets) - 1  # empty (the last one may be filling)
        if since_ns is not None and self.maxs[k] < since_ns:
            return True
        return until_ns is not None and self.mins[k] >= until_ns

    # ----------------------------------------------------------- sidecar

    def save(self, path: Path, marker: bytes) -> bool:
        """Write the sidecar (atomically: a temporary file renamed); False if the disk
        refused (the index is rebuilt next time: nothing is lost)."""
        n = len(self.offsets)
        head = _HEAD.pack(
            _MAGIC, _VERSION, 0, n, marker.ljust(16, b"\0")[:16], self.covered, self.records
        )
        entries = b"".join(
            _ENTRY.pack(self.offsets[k], self.mins[k], self.maxs[k], self.before[k])
            for k in range(n)
        )
        body = head + entries
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(body + _CRC.pack(zlib.crc32(body)))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        return True

    @classmethod
    def load(cls, path: Path, marker: bytes, size: int) -> SegmentIndex | None:
        """The index in a sidecar, if it is whole and describes this segment at this size."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if len(data) < _HEAD.size + _CRC.size:
            return None
        body, (check,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
        if zlib.crc32(body) != check:
            return None
        magic, version, _, n, stored_marker, covered, records = _HEAD.unpack_from(body)
        if (
            magic != _MAGIC
            or version != _VERSION
            or n < 1
            or len(body) != _HEAD.size + n * _ENTRY.size
            or stored_marker != marker.ljust(16, b"\0")[:16]
            or covered != size
        ):
            return None
        index = cls(0)
        index.offsets = []
        for column in (index.mins, index.maxs, index.reach, index.before):
            del column[:]
        reach = _NONE_MAX
        for offset, low, high, before in _ENTRY.iter_unpack(body[_HEAD.size :]):
            reach = max(reach, high)
            index.offsets.append(offset)
            index.mins.append(low)
            index.maxs.append(high)
            index.reach.append(reach)
            index.before.append(before)
        index.records = records
        index.covered = covered
        return index


class IndexBuilder:
    """Builds a segment's index while a scan walks it: :meth:`add` per block (or per
    version-1 record), :meth:`commit` at the end of each complete write, :meth:`build` at
    the end, with or without what follows the last complete write."""

    __slots__ = ("_index", "_saved")

    def __init__(self, start: int, spacing: int = MARK_SPACING) -> None:
        self._index = SegmentIndex(start, spacing)
        self._saved = self._state()

    def _state(self) -> tuple[int, int, int, int, int, int]:
        i = self._index
        return (len(i.offsets), i.records, i.mins[-1], i.maxs[-1], i.reach[-1], i.covered)

    def add(self, start: int, end: int, received_ns: int, records: int) -> None:
        self._index.note(start, end, received_ns, records)

    def commit(self) -> None:
        self._saved = self._state()

    def build(self, *, with_tail: bool) -> SegmentIndex:
        index = self._index
        if not with_tail:
            n, records, low, high, reach, covered = self._saved
            del index.offsets[n:]
            for column in (index.mins, index.maxs, index.reach, index.before):
                del column[n:]
            index.mins[-1], index.maxs[-1], index.reach[-1] = low, high, reach
            index.records = records
            index.covered = covered
        return index
