/**
 * The wire API of logserver.
 *
 * Two parts share one service:
 *  - Scribe's API, exactly (ResultCode, LogEntry, Log), so existing Scribe
 *    clients work unchanged, strict or non-strict binary, framed transport.
 *  - Our own API: an idempotent batch append, a read API and a status call.
 *    Every failure is an exception declared here, never a dropped connection.
 *
 * Thrift messages carry the method name, not the service name, so the
 * service may be called LogService and still answer Scribe's "Log".
 */

namespace py logservice
namespace java org.logservice.thrift
namespace cpp logservice

/* ---------------------------------------------------------------- Scribe */

enum ResultCode {
  OK = 0,
  TRY_LATER = 1
}

struct LogEntry {
  1: string category,
  2: string message
}

/* ------------------------------------------------------------ exceptions */

/**
 * The category is empty, too long, or not a safe path component; or it is new
 * and the server holds as many categories as it takes (--max-categories).
 */
exception InvalidCategory {
  1: string category,
  2: string reason
}

/**
 * A message or the batch exceeds the server's limits (bytes, records, or distinct
 * categories in one batch); nothing was stored. A client may split the batch.
 */
exception BatchTooLarge {
  1: string reason,
  2: i64 limit,
  3: i64 actual
}

/** The server is shutting down: send this batch to another server. */
exception ServerDraining {
  1: string reason
}

/**
 * The server cannot store right now (disk full, read-only, I/O error, or too
 * many request bytes in flight): send this batch to another server, or later.
 */
exception StorageUnavailable {
  1: string reason
}

/** A malformed argument: bad producer, negative sequence or position. */
exception InvalidRequest {
  1: string reason
}

/**
 * A read position that is no record's: beyond the end of the category's data, or
 * inside a record (the server's data directory changed since the position was
 * handed out). Start again without a position (-1), from a time.
 */
exception InvalidPosition {
  1: string reason,
  2: i64 position
}

/* ------------------------------------------------------------- our API */

/**
 * A batch that is stored at most once per server: a retry with the same
 * batch id (producer, sequence) is acknowledged without being written again,
 * also after a server restart. (Field names are not on the wire in the binary
 * protocol: this field was called producer_id before, with the same id 1.)
 */
struct AppendBatch {
  /**
   * Stable for one producer (a client instance); 1 to 128 printable ASCII characters.
   * "@" is reserved: "<producer>@<sequence>" names the halves of a batch the client
   * split, whose sequence is then their offset in that batch (logwire/batchid.py), so
   * readers map their records back to the batch they came from. Any other use of "@",
   * or any other byte, is refused with InvalidRequest. With mutual TLS the server
   * stores the batch under "<client certificate identity>/<producer>".
   */
  1: string producer,
  /** Increases by one per batch of this producer, starting at 0. */
  2: i64 sequence,
  3: list<LogEntry> entries
}

/** `count` consecutive records of one category (a PackedBatch's categories, run-length coded). */
struct CategoryRun {
  1: string category,
  2: i32 count
}

/**
 * The records of an AppendBatch in columns: the same batch, the same identity
 * and the same dedup, laid out so that neither end does work per record in an
 * interpreted language (a list<LogEntry> must be walked entry by entry, since
 * each message's length is in front of it). Record i has the category of the
 * run it falls in, and message bytes [sum(lengths[:i]), sum(lengths[:i+1]))
 * of `messages`. A batch whose columns disagree (lengths not a multiple of 4,
 * lengths not adding up to the size of `messages`, run counts not adding up
 * to the number of records, a count below 1) is refused with InvalidRequest.
 */
struct PackedBatch {
  1: string producer,
  2: i64 sequence,
  /** In record order; the counts add up to the number of records. */
  3: list<CategoryRun> runs,
  /** One unsigned 32-bit big-endian message length per record. */
  4: binary lengths,
  /** The messages, concatenated in record order. */
  5: binary messages
}

/** How a batch's columns are encoded (logwire/compression.py). */
enum Codec {
  /** The columns as they are. */
  NONE = 0,
  /** One Zstandard frame that declares its content size in its header. */
  ZSTD = 1
}

/**
 * A PackedBatch whose two columns travel compressed, one after the other:
 * `columns` decodes (with `codec`) to exactly `raw_bytes` bytes, the `lengths`
 * column of a PackedBatch followed by its `messages` column. Same identity,
 * same dedup, same checks as PackedBatch; besides, a batch whose columns do not
 * decode to that (a corrupt frame, one that does not declare its content size
 * or declares another, bytes after the frame) is refused with InvalidRequest,
 * and one whose raw_bytes exceed what the server would take uncompressed (its
 * frame limit) with BatchTooLarge, before anything is decompressed. A server
 * stores the columns of a one-category batch as they came.
 */
struct CompressedBatch {
  1: string producer,
  2: i64 sequence,
  /** In record order; the counts add up to the number of records. */
  3: list<CategoryRun> runs,
  4: Codec codec,
  5: i64 raw_bytes,
  6: binary columns
}

struct AppendResult {
  1: ResultCode code,
  /** True when the batch had been stored before and nothing new was written. */
  2: bool duplicate,
  3: i32 stored
}

struct StoredRecord {
  1: string category,
  2: binary message,
  /** Empty for records that came through Scribe's Log. */
  3: string producer,
  4: i64 sequence,
  /** The record's index within its batch. */
  5: i32 index,
  /** The server's receive time, nanoseconds since the Unix epoch. */
  6: i64 received_ns,
  /** Byte position of the record in its category's log. */
  7: i64 position
}

struct ReadResult {
  1: list<StoredRecord> records,
  /** Pass this back to read what follows. */
  2: i64 next_position,
  /** True when next_position is the current end of the category. */
  3: bool end_of_log
}

/**
 * One stored block: the records of one batch in one category, their metadata
 * once, the records in columns exactly as stored (see CompressedBatch).
 * Record i of the block has batch index from `index_runs`, position
 * `position + i` (or positions[i] when `positions` is set), and the i-th
 * message of the decoded columns.
 */
struct StoredBlock {
  /** Position of the block's first record. */
  1: i64 position,
  /** Empty for records that came through Scribe's Log. */
  2: string producer,
  3: i64 sequence,
  /** The server's receive time of the batch, nanoseconds since the Unix epoch. */
  4: i64 received_ns,
  /** Records in this block. */
  5: i32 count,
  /** Records in the whole batch (all categories). */
  6: i32 batch_count,
  /** (first batch index, count) pairs of big-endian u32: the batch index of each record, in order. */
  7: binary index_runs,
  8: Codec codec,
  9: i64 raw_bytes,
  /** Decodes with `codec` to `raw_bytes` bytes: `count` big-endian u32 lengths, then the messages. */
  10: binary columns,
  /** Empty, or a big-endian i64 per record: each record's position (blocks served from old-format segments). */
  11: binary positions
}

struct BlockReadResult {
  1: list<StoredBlock> blocks,
  /** Pass this back to read what follows. */
  2: i64 next_position,
  /** True when next_position is the current end of the category. */
  3: bool end_of_log
}

/**
 * What QueryBlocks reads of a category: ReadBlocks with the filters applied on the
 * server (only what passes crosses the network), a start found from a time or a
 * count through the server's time index, and a wait for records yet to come.
 */
struct BlockQuery {
  1: string category,
  /**
   * A position from an earlier answer (its next_position); -1: start where the
   * filters say (the first block received at or after since_ns, or the last `last`
   * records), which the server finds through its per-segment time index.
   */
  2: i64 position,
  /** Stored bytes of blocks to return at most (one block always comes when one is there). */
  3: i32 max_bytes,
  /** Only blocks received at or after this, ns since the Unix epoch; 0: no lower bound. */
  4: i64 since_ns,
  /** Only blocks received before this; 0: no upper bound. */
  5: i64 until_ns,
  /**
   * Only records whose message matches this RE2 pattern (linear time whatever the
   * pattern; RE2 syntax: no backreferences or look-around); empty: every record. A
   * block whose records do not all match comes uncompressed, with only the
   * matching records and their positions.
   */
  6: string grep,
  /**
   * With position -1: start at the last `last` records (those before them are not
   * read); 0: no. Ignored with until_ns or grep, which the server cannot count
   * backwards from: the range is read, and the reader keeps the last N itself.
   */
  7: i64 last,
  /**
   * When there is nothing to return yet (the end of the log), wait up to this long for
   * new records before answering (a long poll; the server caps it). 0: answer at once.
   */
  8: i32 wait_ms
}

struct BlockQueryResult {
  1: list<StoredBlock> blocks,
  /** Pass this back (as position) to read what follows. */
  2: i64 next_position,
  /** True when next_position is the current end of the category. */
  3: bool end_of_log,
  /**
   * Where this answer started: the position asked for (or found, for -1); a larger
   * one when retention deleted the records in between (the reader says so).
   */
  4: i64 start_position,
  /** The server's clock when it answered, ns since the Unix epoch. */
  5: i64 server_ns
}

/** One category on one server, from its time index (CategoryStats). */
struct CategoryInfo {
  1: string category,
  /** Records stored (each stored copy of a batch counts). */
  2: i64 records,
  /** Bytes of its segments on disk. */
  3: i64 bytes,
  /** Receive time of its oldest and newest block, ns since the Unix epoch (0: none). */
  4: i64 first_ns,
  5: i64 last_ns
}

/* ----------------------------------------------- copies (logserver repair) */

/**
 * One producer's batches that a server holds records of in one category, as
 * spans: `spans` is big-endian i64 quintuples (first sequence, last sequence,
 * records, first position, last position), ascending and disjoint; every
 * sequence from first to last is held (logwire/holdings.py).
 */
struct ProducerHoldings {
  1: string producer,
  2: binary spans
}

struct HoldingsPage {
  /** In producer order, from the first after the `after` asked for. */
  1: list<ProducerHoldings> producers,
  /** True when no producer follows the last one here; else ask again with it as `after`. */
  2: bool complete,
  /** Records of the category without a batch id (Scribe's Log): counted, never copied. */
  3: i64 unidentified_records
}

/** Sequences of one producer, as big-endian i64 pairs (first, last), inclusive. */
struct WantedBatches {
  1: string producer,
  2: binary ranges
}

struct RestoreResult {
  /** Batch parts stored by this call. */
  1: i32 stored,
  /** Batch parts the server held already (nothing written for them). */
  2: i32 duplicates,
  3: i64 records
}

struct ServerStatus {
  /**
   * The server's persistent id: made on the first start in its data directory and
   * kept there, so a restart keeps it and a wiped directory is a new server.
   * (Servers before it answered their process id here.)
   */
  1: string server_id,
  2: string version,
  /** SERVING or DRAINING. */
  3: string state,
  4: i64 started_ns,
  5: i64 records_stored,
  6: i64 batches_stored,
  7: i64 duplicates,
  8: list<string> categories,
  /** A random id per start of the server process (the member's processId). */
  9: string process_id,
  /** The failure domain the server was given (--zone), or "". */
  10: string zone
}

service LogService {
  /** Scribe's call. TRY_LATER while draining, when storage is unavailable or the server is busy. */
  ResultCode Log(1: list<LogEntry> messages),

  AppendResult Append(1: AppendBatch batch)
    throws (1: InvalidCategory invalid_category,
            2: BatchTooLarge too_large,
            3: ServerDraining draining,
            4: StorageUnavailable unavailable,
            5: InvalidRequest invalid_request),

  /**
   * Append with the batch in columns (see PackedBatch): what logclient sends.
   * A server that predates it answers TApplicationException UNKNOWN_METHOD,
   * and logclient then uses Append with that server.
   */
  AppendResult AppendPacked(1: PackedBatch batch)
    throws (1: InvalidCategory invalid_category,
            2: BatchTooLarge too_large,
            3: ServerDraining draining,
            4: StorageUnavailable unavailable,
            5: InvalidRequest invalid_request),
  /**
   * AppendPacked with the columns compressed (see CompressedBatch): what
   * logclient sends when compression is on. A server that predates it answers
   * TApplicationException UNKNOWN_METHOD, and logclient then uses
   * AppendPacked with that server.
   */
  AppendResult AppendCompressed(1: CompressedBatch batch)
    throws (1: InvalidCategory invalid_category,
            2: BatchTooLarge too_large,
            3: ServerDraining draining,
            4: StorageUnavailable unavailable,
            5: InvalidRequest invalid_request),

  /** Up to `limit` records of `category` from byte `position` on. */
  ReadResult Read(1: string category, 2: i64 position, 3: i32 limit)
    throws (1: InvalidCategory invalid_category,
            2: InvalidRequest invalid_request,
            3: StorageUnavailable unavailable),

  /**
   * Whole stored blocks of `category`, as stored (compressed), from the block
   * holding the record at `position` on: a reader decompresses them and skips
   * the records of the first block that lie before `position`. Blocks are
   * added until their columns reach `max_bytes` (the first always comes). A
   * server that predates it answers UNKNOWN_METHOD: use Read.
   */
  BlockReadResult ReadBlocks(1: string category, 2: i64 position, 3: i32 max_bytes)
    throws (1: InvalidCategory invalid_category,
            2: InvalidRequest invalid_request,
            3: StorageUnavailable unavailable),

  /**
   * ReadBlocks with server-side filters, a start from a time or a count, and a
   * long poll (see BlockQuery). A server that predates it answers UNKNOWN_METHOD:
   * use ReadBlocks and filter on the reader.
   */
  BlockQueryResult QueryBlocks(1: BlockQuery query)
    throws (1: InvalidCategory invalid_category,
            2: InvalidRequest invalid_request,
            3: StorageUnavailable unavailable,
            4: InvalidPosition invalid_position),

  list<string> Categories(),

  /** Every category with its record count, bytes and first and last receive time. */
  list<CategoryInfo> CategoryStats(),

  /**
   * What the server holds of `category`, per producer (see ProducerHoldings),
   * at most `limit` producers after `after` ("" for the first page). Answered
   * from an index of block headers: no record is read to answer it.
   */
  HoldingsPage Holdings(1: string category, 2: string after, 3: i32 limit)
    throws (1: InvalidCategory invalid_category,
            2: InvalidRequest invalid_request,
            3: StorageUnavailable unavailable),

  /**
   * The stored blocks of the `wanted` batches of `category` between byte
   * `position` and `stop_position` (exclusive), payloads as stored; other
   * blocks are skipped by their headers. A batch's blocks always come
   * together. Pass next_position back until end_of_log.
   */
  BlockReadResult ReadBatches(1: string category, 2: list<WantedBatches> wanted,
                              3: i64 position, 4: i64 stop_position, 5: i32 max_bytes)
    throws (1: InvalidCategory invalid_category,
            2: InvalidRequest invalid_request,
            3: StorageUnavailable unavailable),

  /**
   * Store copies of batch parts another server holds (what ReadBatches
   * shipped), with their original producer, sequence, indexes, batch size and
   * receive time; parts the server holds already are left alone, so a copy
   * made twice is stored once. A batch's blocks come together, in order.
   * Blocks without a producer are refused (InvalidRequest): they have no batch
   * id. With mutual TLS only the client identities the server lists
   * (--repair-identity) may call it.
   */
  RestoreResult Restore(1: string category, 2: list<StoredBlock> blocks)
    throws (1: InvalidCategory invalid_category,
            2: BatchTooLarge too_large,
            3: ServerDraining draining,
            4: StorageUnavailable unavailable,
            5: InvalidRequest invalid_request),

  ServerStatus Status(),

  /** Answers "pong"; a cheap liveness check. */
  string Ping()
}
