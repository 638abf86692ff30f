-- Plait node store, schema version 5: compaction. An acceptor's snapshot chunks
-- (Record::SnapshotChunk, Record::SnapshotDropped) and how far its deleted message positions reach
-- (Record::Unstored); either kind's latest compaction (Record::Compacted); a device's latest
-- imported snapshot (Record::ImportedSnapshot).
-- Encodings as in version 1: every u64 is 8 bytes big-endian, every u32 4 bytes big-endian,
-- snapshot hashes 32 raw bytes, structured values postcard.

-- Record::Unstored: every deleted position is below `position` (highest one wins). Unstored also
-- deletes its positions from `stored`. Positions still in `stored` are not written here: the
-- load takes the highest of this and every stored position + 1, so a Stored record (the common
-- write) costs no extra row, and databases of version 4 need no backfill.
CREATE TABLE unstored_below (
    group_id BLOB PRIMARY KEY REFERENCES groups (group_id),
    position BLOB NOT NULL CHECK (length(position) = 8),
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;

-- Record::SnapshotChunk's chunk count, per snapshot (last one wins, whichever chunk carried it).
-- Record::SnapshotDropped deletes the row and the snapshot's chunks.
CREATE TABLE snapshots (
    group_id    BLOB NOT NULL REFERENCES groups (group_id),
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    chunk_count BLOB NOT NULL CHECK (length(chunk_count) = 4),
    checksum    BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, hash)
) STRICT, WITHOUT ROWID;

-- Record::SnapshotChunk, per chunk (last one wins). A rowid table, like `stored`: chunks are large.
CREATE TABLE snapshot_chunks (
    group_id    BLOB NOT NULL REFERENCES groups (group_id),
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    chunk_index BLOB NOT NULL CHECK (length(chunk_index) = 4),
    bytes       BLOB NOT NULL,
    checksum    BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, hash, chunk_index)
) STRICT;

-- Record::Compacted (last one wins): the postcard `Compaction` and the postcard
-- `Option<ContentKey>` (a device's key; `None` at an acceptor).
CREATE TABLE compacted (
    group_id    BLOB PRIMARY KEY REFERENCES groups (group_id),
    compaction  BLOB NOT NULL,
    content_key BLOB NOT NULL,
    checksum    BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT;

-- Record::ImportedSnapshot (last one wins): the postcard `Covered` and the document snapshot.
-- A rowid table: the snapshot is large.
CREATE TABLE imported_snapshots (
    group_id BLOB PRIMARY KEY REFERENCES groups (group_id),
    covered  BLOB NOT NULL,
    snapshot BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT;
