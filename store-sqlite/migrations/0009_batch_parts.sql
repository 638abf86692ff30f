-- Plait node store, schema version 9: the parts of a device's open batch (Record::BatchPart).
-- Each edit after a batch's first writes its own update here instead of the batch so far again;
-- Record::BatchClosed deletes them (the batch's whole update goes to `updates`), as do
-- Record::UpdatesDropped naming the batch and Record::GroupForgotten. A rowid table, like
-- `updates`. Encodings as in version 1.
CREATE TABLE batch_parts (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    sender   BLOB NOT NULL CHECK (length(sender) = 32),
    seq      BLOB NOT NULL CHECK (length(seq) = 8),
    part     BLOB NOT NULL CHECK (length(part) = 4),
    body     BLOB NOT NULL,
    checksum BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, sender, seq, part)
) STRICT;
