-- Plait node store, schema version 2: a group's MLS state (openmls storage, journaled by the
-- kernel as Record::MlsState). Keys and values are opaque bytes; a None value deletes the row.
CREATE TABLE mls_state (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    key      BLOB NOT NULL,
    value    BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, key)
) STRICT, WITHOUT ROWID;
