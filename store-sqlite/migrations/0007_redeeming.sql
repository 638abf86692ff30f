-- Plait node store, schema version 7: invite codes a device is redeeming (Record::Redeeming), kept
-- so that a device that restarts before its Welcome goes on with the same key package. Outside
-- any group: the device is in no group of the code's yet.
-- `redeeming` is the postcard `Redeeming` (the code with its secret, the acceptors, the key
-- package's seed, when it started); last one wins, and a `None` deletes the row.
CREATE TABLE redeeming (
    mailbox   BLOB PRIMARY KEY CHECK (length(mailbox) = 10),
    redeeming BLOB NOT NULL,
    checksum  BLOB NOT NULL CHECK (length(checksum) = 8)
) STRICT, WITHOUT ROWID;
