"""Storage in format 2: compressed batches stored as they came, whole blocks read back, old and
new segments side by side, and damage that must not cost more than it hits."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import pytest

from logserver.errors import StorageUnavailableError
from logserver.storage import (
    BatchTooLargeError,
    InvalidRequestError,
    MessageTooLargeError,
    StoragePolicy,
    StoredBlock,
)
from logserver.storage._blockcodec import BLOCK_HEADER_BYTES, encode_block
from logserver.storage._blocks import SEGMENT_HEADER_BYTES
from logserver.storage._columns import DecodeBudget
from logserver.storage._format import encode_records
from logwire.compression import NONE, ZSTD, CompressionPolicy, compress_columns, join_columns
from logwire.packed import pack_lengths
from tests.storage.conftest import OpenStorage, messages, read_all, segment_files

LINES = [
    f"2026-12-06 02:11:{i % 60:02d} status half-configured pkg{i}:amd64".encode()
    for i in range(3000)
]


def _compressed(msgs: list[bytes]) -> tuple[int, int, bytes]:
    columns = join_columns(pack_lengths(msgs), msgs)
    codec, payload = compress_columns(columns, CompressionPolicy())
    return codec, len(columns), payload


def _blocks(
    storage, category: str, position: int = 0, max_bytes: int = 1 << 30
) -> list[StoredBlock]:  # type: ignore[no-untyped-def]
    out: list[StoredBlock] = []
    while True:
        batch = storage.read_blocks(category, position, max_bytes)
        out.extend(batch.blocks)
        if batch.end_of_log:
            return out
        position = batch.next_position


def test_a_one_category_compressed_batch_is_stored_as_it_came(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """The client's payload is the block's payload, byte for byte; the records read back;
    the same batch again is a duplicate."""
    storage = open_storage()
    codec, raw, payload = _compressed(LINES)
    assert codec == ZSTD
    outcome = storage.append_compressed([("app", len(LINES))], codec, raw, payload, "p", 0)
    assert (outcome.stored, outcome.duplicate) == (len(LINES), False)
    assert storage.append_compressed([("app", len(LINES))], codec, raw, payload, "p", 0).duplicate
    (block,) = _blocks(storage, "app")
    assert (block.payload, block.codec, block.raw_bytes) == (payload, codec, raw)
    assert block.messages() == LINES
    assert block.indexes() == list(range(len(LINES)))
    assert messages(read_all(storage, "app")) == LINES
    size = segment_files(data_dir, "app")[0].stat().st_size
    assert size < sum(map(len, LINES)) * 0.2
    assert storage.stats().message_bytes_stored == sum(map(len, LINES))


def test_a_compressed_batch_of_several_categories_is_regrouped(open_storage: OpenStorage) -> None:
    """Category runs are split per category with their batch indexes, as for AppendPacked."""
    storage = open_storage()
    msgs = LINES[:10]
    runs = [("a", 3), ("b", 2), ("a", 4), ("b", 1)]
    codec, raw, payload = _compressed(msgs)
    assert storage.append_compressed(runs, codec, raw, payload, "p", 0).stored == 10
    a = read_all(storage, "a")
    b = read_all(storage, "b")
    assert [(r.index, r.message) for r in a] == [(i, msgs[i]) for i in (0, 1, 2, 5, 6, 7, 8)]
    assert [(r.index, r.message) for r in b] == [(i, msgs[i]) for i in (3, 4, 9)]
    (block,) = _blocks(storage, "a")
    assert block.index_runs == ((0, 3), (5, 4))


def test_compressed_batches_that_would_not_read_back_are_refused(
    open_storage: OpenStorage,
) -> None:
    """Nothing is written for a payload that lies about its size, does not decode, holds
    columns that disagree with the runs, exceeds the cap, or holds an oversized message."""
    storage = open_storage(StoragePolicy(max_batch_bytes=1 << 20, max_message_bytes=1000))
    codec, raw, payload = _compressed(LINES[:100])
    bad = [
        ([("c", 100)], codec, raw + 1, payload),
        ([("c", 100)], codec, raw, payload[:-3]),
        ([("c", 99)], codec, raw, payload),
        ([("c", 0)], codec, raw, payload),
        ([("c", 100)], 7, raw, payload),
    ]
    for runs, c, r, p in bad:
        with pytest.raises(InvalidRequestError):
            storage.append_compressed(runs, c, r, p, "p", 0)
    big = [b"\x00" * (2 << 20)]
    with pytest.raises(BatchTooLargeError, match="over 1048576"):
        storage.append_compressed([("c", 1)], *_compressed(big), "p", 0)
    with pytest.raises(MessageTooLargeError):
        storage.append_compressed([("c", 1)], *_compressed([b"x" * 1001]), "p", 0)
    assert storage.categories() == []
    assert storage.append_compressed([("c", 100)], codec, raw, payload, "p", 0).stored == 100


def test_blocks_are_read_whole_from_any_record_position(open_storage: OpenStorage) -> None:
    """read_blocks returns the block holding a position (its reader skips the records before
    it), then whole blocks up to max_bytes (always one); following next_position visits each
    block once; old-style reads of the same positions agree."""
    storage = open_storage()
    for sequence in range(6):
        storage.append(
            [("c", m) for m in LINES[sequence * 100 : (sequence + 1) * 100]], "p", sequence
        )
    blocks = _blocks(storage, "c", max_bytes=1)
    assert len(blocks) == 6
    assert [m for b in blocks for m in b.messages()] == LINES[:600]
    target = blocks[3].position + 42
    batch = storage.read_blocks("c", target, max_bytes=1)
    assert [b.position for b in batch.blocks] == [blocks[3].position]
    assert batch.next_position == blocks[4].position
    record = storage.read("c", target, limit=1).records[0]
    assert (record.message, record.position, record.index) == (LINES[342], target, 42)


def test_a_data_directory_of_both_formats(open_storage: OpenStorage, data_dir: Path) -> None:
    """Format-1 segments stay as they are and are served as before; new batches go to a new
    format-2 segment; dedup is rebuilt from both; blocks read from format 1 list each
    record's position, and reads from any of those positions work."""
    old = open_storage(StoragePolicy(segment_format=1))
    old.append([("c", m) for m in LINES[:50]], "p", 0)
    old.append([("c", m) for m in LINES[50:60]], "q", 0)
    old_records = read_all(old, "c")
    old.close()
    new = open_storage()
    assert new.append([("c", b"again")], "p", 0).duplicate
    new.append([("c", m) for m in LINES[60:100]], "p", 1)
    files = segment_files(data_dir, "c")
    assert [f.read_bytes()[:4] for f in files] == [b"\x9eLS\xb7", b"\x89LSE"]
    records = read_all(new, "c")
    assert messages(records) == LINES[:100]
    assert records[:60] == old_records
    blocks = _blocks(new, "c")
    assert [b.records for b in blocks] == [50, 10, 40]
    assert blocks[0].positions == tuple(r.position for r in old_records[:50])
    assert blocks[0].codec == NONE and blocks[2].positions is None
    assert [m for b in blocks for m in b.messages()] == LINES[:100]
    assert messages(new.read("c", old_records[30].position, limit=2).records) == LINES[30:32]
    new.close()
    again = open_storage()
    assert again.append([("c", b"again")], "p", 1).duplicate
    assert again.append([("c", b"again")], "q", 0).duplicate


def test_damage_in_a_segment_header_loses_nothing(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """The resync marker is found from the blocks when the header is damaged, in a closed
    segment and in the last one (which must not be cut back to nothing)."""
    storage = open_storage(StoragePolicy(segment_bytes=4096))
    rng = random.Random(5)
    batches = [[rng.randbytes(300) for _ in range(4)] for _ in range(8)]
    for sequence, batch in enumerate(batches):
        storage.append([("c", m) for m in batch], "p", sequence)
    storage.close()
    files = segment_files(data_dir, "c")
    assert len(files) > 2
    for f in (files[0], files[-1]):
        data = bytearray(f.read_bytes())
        data[3] ^= 0xFF
        data[20] ^= 0xFF  # the marker itself
        f.write_bytes(bytes(data))
    again = open_storage(StoragePolicy(segment_bytes=4096))
    assert messages(read_all(again, "c")) == [m for b in batches for m in b]
    assert files[-1].stat().st_size > SEGMENT_HEADER_BYTES


def _forger(storage, rng: random.Random) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Store a real first batch, then a client's message made of forged version-1 records
    of producer 'victim' (public magic, valid checks: 60% of it), stored uncompressed as
    the client sent it, then more real batches; return the real messages."""
    real = [rng.randbytes(200) for _ in range(4)]
    storage.append([("c", real[0])], "p", 0)
    forged = b"".join(
        encode_records(b"victim", 7 + k, 1, 1, [0], [b"forged " * 40]) for k in range(10)
    )
    message = b"x" * (len(forged) // 2) + forged
    codec, raw, payload = NONE, len(message) + 4, join_columns(pack_lengths([message]), [message])
    storage.append_compressed([("c", 1)], codec, raw, payload, "attacker", 0)
    for sequence, m in enumerate(real[1:], start=1):
        storage.append([("c", m)], "p", sequence)
    return [real[0], message, *real[1:]]


def _damage_start(path: Path) -> None:
    """Zero a segment's header and first block, up to the attacker's block (a lost page)."""
    data = bytearray(path.read_bytes())
    nbytes = data.index(b"attacker") - BLOCK_HEADER_BYTES
    data[:nbytes] = bytes(nbytes)
    path.write_bytes(bytes(data))


def test_forged_version_1_records_cannot_make_a_damaged_segment_version_1(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """A version-2 segment whose header and first block are both damaged is probed with the
    markers the server wrote (here the category's other segments'), never a marker or a
    magic found in the data: its real blocks after the damage are served, the message
    holding forged version-1 records is served as the message it is, and no record of
    'victim' ever is."""
    storage = open_storage(StoragePolicy(segment_bytes=8192))
    stored = _forger(storage, random.Random(3))
    for sequence in range(40):  # more segments after it: siblings with the same marker
        storage.append([("c", LINES[sequence])], "q", sequence)
    storage.close()
    first = segment_files(data_dir, "c")[0]
    assert len(segment_files(data_dir, "c")) >= 2
    _damage_start(first)
    again = open_storage(StoragePolicy(segment_bytes=8192))
    records = read_all(again, "c")
    assert {r.producer for r in records} == {"p", "attacker", "q"}
    assert messages(records) == stored[1:] + LINES[:40]


def test_forged_records_in_a_lone_segment_with_a_damaged_start_are_not_served(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """With no other segment to take the marker from, a segment whose header and first block
    are damaged cannot be read at all; the forged version-1 records in it are a minority
    of what follows the first of them, so it is not taken for version 1 either: nothing of
    it is served (and, as the last segment, it is cut back: no record there can be read)."""
    storage = open_storage()
    rng = random.Random(4)
    _forger(storage, rng)
    for sequence in range(10, 40):
        storage.append([("c", rng.randbytes(300))], "p", sequence)
    storage.close()
    (segment,) = segment_files(data_dir, "c")
    _damage_start(segment)
    again = open_storage()
    assert not [r for r in read_all(again, "c") if r.producer == "victim"]


def test_a_copy_of_a_real_block_inside_a_message_is_never_served(
    open_storage: OpenStorage, data_dir: Path, tmp_path: Path
) -> None:
    """What a client can learn of a stored block (every field ReadBlocks returns: the marker
    and the check never leave the server) lets it rebuild the block byte for byte but for
    its marker. A message holding such copies, made with every marker the client could
    know (zeros, one of its own server's, even another category's of this server), is
    read as the one message it is; after the header of its block is damaged, the reader
    resynchronises past the copies to the next real block: the victim's record is
    served once, the copies never."""
    storage = open_storage(StoragePolicy(segment_bytes=1 << 20))
    storage.append([("c", b"the victim's record")], "victim", 1)
    storage.append([("d", b"another category")], "p", 1)
    (real,) = _blocks(storage, "c")
    marker = segment_files(data_dir, "c")[0].read_bytes()[12:28]
    assert not any(marker in bytes(v) for v in (real.payload, real.producer.encode()))
    own = open_storage(path=tmp_path / "attackers-own-server")
    own.append([("c", b"x")], "a", 1)
    own_marker = segment_files(tmp_path / "attackers-own-server", "c")[0].read_bytes()[12:28]
    d_marker = segment_files(data_dir, "d")[0].read_bytes()[12:28]
    copies = b"".join(
        encode_block(
            m,
            producer=real.producer.encode(),
            sequence=real.sequence,
            batch_count=real.batch_count,
            received_ns=real.received_ns,
            index_runs=real.index_runs,
            codec=real.codec,
            raw_bytes=real.raw_bytes,
            payload=real.payload,
            end=True,
        )
        for m in (bytes(16), own_marker, d_marker)
    )
    message = b"copies:" + copies * 3
    payload = join_columns(pack_lengths([message]), [message])
    storage.append_compressed([("c", 1)], NONE, len(payload), payload, "attacker", 0)
    storage.append([("c", b"after")], "p", 2)
    assert messages(read_all(storage, "c")) == [b"the victim's record", message, b"after"]
    storage.close()
    (segment,) = segment_files(data_dir, "c")
    data = bytearray(segment.read_bytes())
    attackers = data.index(b"attacker") - BLOCK_HEADER_BYTES
    data[attackers + 20] ^= 0xFF  # its check: the block is damage, resync starts inside it
    segment.write_bytes(bytes(data))
    again = open_storage(StoragePolicy(segment_bytes=1 << 20))
    assert messages(read_all(again, "c")) == [b"the victim's record", b"after"]


def test_a_segment_of_a_newer_format_stops_the_open_untouched(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    storage = open_storage()
    storage.append([("c", b"x")])
    storage.close()
    (segment,) = segment_files(data_dir, "c")
    data = bytearray(segment.read_bytes())
    header = bytes(data[:8]) + struct.pack("<H", 3) + bytes(data[10:28])
    data[:32] = header + struct.pack("<I", zlib.crc32(header))
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageUnavailableError, match="segment format 3"):
        open_storage()
    assert segment.read_bytes() == bytes(data)


def test_a_compressed_block_torn_anywhere_is_cut_and_the_batch_can_be_resent(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """A crash in the middle of a compressed write, at every byte: recovery keeps every
    complete batch before it, removes the torn one, and a resend stores it once."""
    storage = open_storage()
    storage.append([("c", m) for m in LINES[:200]], "p", 0)
    storage.close()
    (segment,) = segment_files(data_dir, "c")
    kept = segment.read_bytes()
    again = open_storage()
    again.append([("c", m) for m in LINES[200:400]], "p", 1)
    again.close()
    full = segment.read_bytes()
    step = max(1, (len(full) - len(kept)) // 40)
    for cut in range(len(kept), len(full), step):
        segment.write_bytes(full[:cut])
        storage = open_storage()
        assert segment.stat().st_size == len(kept)
        assert messages(read_all(storage, "c")) == LINES[:200]
        assert not storage.append([("c", m) for m in LINES[200:400]], "p", 1).duplicate
        assert storage.append([("c", m) for m in LINES[200:400]], "p", 1).duplicate
        assert messages(read_all(storage, "c")) == LINES[:400]
        storage.close()


def test_the_format_1_writer_still_writes_what_old_servers_read(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """segment_format=1 writes records, no header; compressed batches are decoded for it."""
    storage = open_storage(StoragePolicy(segment_format=1))
    codec, raw, payload = _compressed(LINES[:20])
    storage.append_compressed([("c", 20)], codec, raw, payload, "p", 0)
    (segment,) = segment_files(data_dir, "c")
    assert segment.read_bytes()[:4] == b"\x9eLS\xb7"
    assert messages(read_all(storage, "c")) == LINES[:20]


def test_decoding_is_bounded_server_wide() -> None:
    """Compressed batches reserve their decoded size before they are decompressed; past the
    budget a batch waits, then is refused as busy (StorageUnavailableError), never allocated."""
    budget = DecodeBudget(1000, wait_s=0.05)
    with budget.reserve(800):
        with budget.reserve(200):
            pass
        with pytest.raises(StorageUnavailableError, match="busy"), budget.reserve(201):
            pass
    # Larger than the limit: it takes the whole budget, not more.
    with budget.reserve(5000), pytest.raises(StorageUnavailableError), budget.reserve(1):
        pass
    with budget.reserve(1000):
        pass


def test_segment_files_are_not_world_readable(open_storage: OpenStorage, data_dir: Path) -> None:
    """A segment holds the logs and the category's secret marker: owner and group only."""
    storage = open_storage()
    storage.append([("c", b"x")])
    (segment,) = segment_files(data_dir, "c")
    assert segment.stat().st_mode & 0o007 == 0
