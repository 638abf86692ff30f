//! Turns what openmls wrote into its in-memory storage into durable records.
//!
//! openmls writes its state through a storage provider inside its own calls. Plait gives it an
//! in-memory store and, after each operation, compares it with what was last persisted: the
//! differences become one `Persist` batch. The store's map is a `HashMap`; the journal sorts the
//! differences by key, so the records never depend on its iteration order.

use std::collections::BTreeMap;

use openmls_memory_storage::MemoryStorage;

/// One change to openmls's storage: `value` `None` means the key was deleted.
pub type StorageChange = (Vec<u8>, Option<Vec<u8>>);

/// What is durable of one openmls store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Journal {
    /// A journal of a store restored from `durable` (both start equal).
    pub fn restored(durable: BTreeMap<Vec<u8>, Vec<u8>>) -> (Journal, MemoryStorage) {
        let storage = MemoryStorage::default();
        {
            let mut values = storage.values.write().expect("invariant: a fresh lock is not poisoned");
            values.extend(durable.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        (Journal { durable }, storage)
    }

    /// The changes since the last call, in key order; the caller persists them.
    ///
    /// Runs after every message a member seals or reads, so it compares in place and copies
    /// only what changed (the whole store is ~10 KiB; its message secrets alone ~5 KiB).
    pub fn changes(&mut self, storage: &MemoryStorage) -> Vec<StorageChange> {
        let mut changes = Vec::new();
        {
            let values = storage.values.read().expect("invariant: openmls never panics holding the storage lock");
            // Visited in the map's order, but the changes are sorted below.
            for (key, value) in values.iter() {
                if self.durable.get(key) != Some(value) {
                    changes.push((key.clone(), Some(value.clone())));
                }
            }
            for key in self.durable.keys() {
                if !values.contains_key(key) {
                    changes.push((key.clone(), None));
                }
            }
        }
        changes.sort();
        for (key, value) in &changes {
            match value {
                Some(value) => self.durable.insert(key.clone(), value.clone()),
                None => self.durable.remove(key),
            };
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(storage: &MemoryStorage, key: &[u8], value: Option<&[u8]>) {
        let mut values = storage.values.write().expect("the test holds no other lock");
        match value {
            Some(value) => values.insert(key.to_vec(), value.to_vec()),
            None => values.remove(key),
        };
    }

    #[test]
    fn changes_name_each_write_and_deletion_once_in_key_order() {
        let durable = BTreeMap::from([(b"kept".to_vec(), b"1".to_vec()), (b"gone".to_vec(), b"2".to_vec())]);
        let (mut journal, storage) = Journal::restored(durable);
        assert_eq!(journal.changes(&storage), vec![]);
        write(&storage, b"new", Some(b"3"));
        write(&storage, b"kept", Some(b"4"));
        write(&storage, b"gone", None);
        let expected: Vec<StorageChange> =
            vec![(b"gone".to_vec(), None), (b"kept".to_vec(), Some(b"4".to_vec())), (b"new".to_vec(), Some(b"3".to_vec()))];
        assert_eq!(journal.changes(&storage), expected);
        assert_eq!(journal.changes(&storage), vec![], "what was returned is durable now");
        write(&storage, b"new", Some(b"3"));
        assert_eq!(journal.changes(&storage), vec![], "rewriting the same value is no change");
    }
}
