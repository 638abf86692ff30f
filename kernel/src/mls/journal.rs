//! Turns what openmls wrote into its in-memory storage into durable records.
//!
//! openmls writes its state through a storage provider inside its own calls. Plait gives it an
//! in-memory store and, after each operation, compares it with what was last persisted: the
//! differences become one `Persist` batch. The store's map is a `HashMap`; the journal reads it
//! into key order first, so the records never depend on its iteration order.

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
    pub fn changes(&mut self, storage: &MemoryStorage) -> Vec<StorageChange> {
        let now: BTreeMap<Vec<u8>, Vec<u8>> = {
            let values = storage.values.read().expect("invariant: openmls never panics holding the storage lock");
            values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut changes = Vec::new();
        for (key, value) in &now {
            if self.durable.get(key) != Some(value) {
                changes.push((key.clone(), Some(value.clone())));
            }
        }
        for key in self.durable.keys() {
            if !now.contains_key(key) {
                changes.push((key.clone(), None));
            }
        }
        changes.sort();
        self.durable = now;
        changes
    }
}
