-- Plait node store, schema version 8: stored messages a device cannot decrypt
-- (Record::Undecryptable), kept so that after a restart it goes on asking for the compaction
-- that covers them (its read cursor has moved past them). Deleted as updates are, by
-- Record::UpdatesDropped (the device's checkpoint after it imported a snapshot that holds them).
CREATE TABLE undecryptable (
    group_id BLOB NOT NULL REFERENCES groups (group_id),
    sender   BLOB NOT NULL CHECK (length(sender) = 32),
    seq      BLOB NOT NULL CHECK (length(seq) = 8),
    epoch    BLOB NOT NULL CHECK (length(epoch) = 8),
    checksum BLOB NOT NULL CHECK (length(checksum) = 8),
    PRIMARY KEY (group_id, sender, seq)
) STRICT, WITHOUT ROWID;
