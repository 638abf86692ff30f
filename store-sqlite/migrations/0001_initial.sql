-- Plait node store, schema version 1.
--
-- One table per kind of `Record`, each keyed by the record's key so that a later record replaces
-- an earlier one with a single upsert and every read or delete of a group's slots is a range scan.
--
-- Encodings (see src/codec.rs):
--   * ids are raw bytes: group_id 16 B, node ids 32 B;
--   * every u64 (slot, round, incarnation) is 8 bytes big-endian, because SQLite's INTEGER is
--     signed and byte order of an 8-byte big-endian BLOB equals numeric order over all of u64;
--   * a ballot is round (8 B big-endian) followed by proposer (32 B): byte order = ballot order,
--     so "keep the highest ballot" is a plain `>` in SQL;
--   * genesis and entries are postcard, the kernel's wire encoding;
--   * every record row ends with `checksum`: 8 bytes of BLAKE3 over the table name and the row's
--     other columns. SQLite checks its b-tree structure but not the bytes inside rows; a torn or
--     truncated page that leaves the structure intact would otherwise load wrong values silently.

-- Which node this database belongs to. Exactly one row, written when the database is created.
CREATE TABLE node_identity (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    node_id  BLOB NOT NULL CHECK (length(node_id) = 32)
) STRICT;

-- Record::Group. Every other table hangs off this one.
CREATE TABLE groups (
    group_id BLOB PRIMARY KEY CHECK (length(group_id) = 16),
    genesis  BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;

-- Record::Incarnation (last one wins).
CREATE TABLE incarnations (
    group_id    BLOB PRIMARY KEY REFERENCES groups (group_id),
    incarnation BLOB NOT NULL CHECK (length(incarnation) = 8),
    checksum    BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;

-- Record::Recovered (a row means recovered).
CREATE TABLE recovered (
    group_id BLOB PRIMARY KEY REFERENCES groups (group_id),
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;

-- Record::Promised and the ballot of Record::Accepted (highest one wins).
CREATE TABLE promised (
    group_id BLOB PRIMARY KEY REFERENCES groups (group_id),
    ballot   BLOB NOT NULL CHECK (length(ballot) = 40),
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;

-- Record::Accepted, per slot; a Record::Chosen for the slot deletes the row.
CREATE TABLE accepted (
    group_id   BLOB NOT NULL REFERENCES groups (group_id),
    slot       BLOB NOT NULL CHECK (length(slot) = 8),
    ballot     BLOB NOT NULL CHECK (length(ballot) = 40),
    value_hash BLOB NOT NULL CHECK (length(value_hash) = 32),
    entry      BLOB NOT NULL,
    checksum   BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, slot)
) STRICT, WITHOUT ROWID;

-- Record::PeerIncarnation (last one wins per peer).
CREATE TABLE peer_incarnations (
    group_id    BLOB NOT NULL REFERENCES groups (group_id),
    acceptor    BLOB NOT NULL CHECK (length(acceptor) = 32),
    incarnation BLOB NOT NULL CHECK (length(incarnation) = 8),
    checksum    BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, acceptor)
) STRICT, WITHOUT ROWID;

-- Record::Chosen, the commit log. A rowid table: entries can be large, and rowid tables store
-- large rows more compactly than WITHOUT ROWID ones; the unique key serves range reads.
CREATE TABLE chosen (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    slot     BLOB NOT NULL CHECK (length(slot) = 8),
    entry    BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, slot)
) STRICT;

-- Record::RoundFloor (highest one wins).
CREATE TABLE round_floors (
    group_id BLOB PRIMARY KEY REFERENCES groups (group_id),
    round    BLOB NOT NULL CHECK (length(round) = 8),
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;
