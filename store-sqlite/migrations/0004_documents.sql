-- Plait node store, schema version 4: document messages. An acceptor's stored messages
-- (Record::Stored), a device's document updates (Record::Update), how far its own updates are safe
-- (Record::SafeBelow) and how far it has read each acceptor's store (Record::ReadCursor).
-- Encodings as in version 1: every u64 is 8 bytes big-endian, node ids are 32 raw bytes.

-- Record::Stored, per position (last one wins). A rowid table, like `chosen`: ciphertexts can be
-- large, and rowid tables store large rows more compactly than WITHOUT ROWID ones.
CREATE TABLE stored (
    group_id   BLOB NOT NULL REFERENCES groups (group_id),
    position   BLOB NOT NULL CHECK (length(position) = 8),
    sender     BLOB NOT NULL CHECK (length(sender) = 32),
    seq        BLOB NOT NULL CHECK (length(seq) = 8),
    ciphertext BLOB NOT NULL,
    checksum   BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, position)
) STRICT;

-- Record::Update, per update id (last one wins: a device rewrites its open update with every
-- edit). A rowid table for the same reason as `stored`; `body` is the encoded CRDT update.
CREATE TABLE updates (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    sender   BLOB NOT NULL CHECK (length(sender) = 32),
    seq      BLOB NOT NULL CHECK (length(seq) = 8),
    body     BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, sender, seq)
) STRICT;

-- Record::SafeBelow (highest one wins).
CREATE TABLE safe_below (
    group_id BLOB PRIMARY KEY REFERENCES groups (group_id),
    seq      BLOB NOT NULL CHECK (length(seq) = 8),
    checksum BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;

-- Record::ReadCursor, per acceptor (last one wins: a cursor moves back when the acceptor's
-- incarnation changes).
CREATE TABLE read_cursors (
    group_id    BLOB NOT NULL REFERENCES groups (group_id),
    acceptor    BLOB NOT NULL CHECK (length(acceptor) = 32),
    incarnation BLOB NOT NULL CHECK (length(incarnation) = 8),
    position    BLOB NOT NULL CHECK (length(position) = 8),
    checksum    BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, acceptor)
) STRICT, WITHOUT ROWID;
