-- Plait node store, schema version 3: the proposer's signature kept with each accepted value
-- (Record::Accepted's `proof`), so promises can show it. A separate table rather than a new
-- column keeps the checksums of `accepted` rows written by version 2 valid; a row here exists
-- only for a non-empty proof and goes away with its `accepted` row.
CREATE TABLE accept_proofs (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    slot     BLOB NOT NULL CHECK (length(slot) = 8),
    proof    BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, slot)
) STRICT, WITHOUT ROWID;
