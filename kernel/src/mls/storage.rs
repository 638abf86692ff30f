//! openmls's storage, with its message secrets in postcard instead of JSON.
//!
//! openmls writes a group's message secrets (the secret tree and its sender ratchets) on every
//! message a member seals or reads. `openmls_memory_storage` encodes every value as JSON, and
//! with Plait's 1,000-message out-of-order window (`member.rs`) that value is ~5 KiB, most of it
//! `null` for consumed keys. Encoding it as JSON, and the journal comparing and persisting it,
//! took about a seventh of the CPU per message in `cargo bench --workspace --bench real` (median
//! 305 → 260 µs over the six nodes, in 6 runs before and 15 after). This store keeps those
//! secrets as postcard (a tag byte, then the value) under the same key, and passes every other
//! call to `MemoryStorage` unchanged.
//!
//! Writing them is also deferred: openmls writes them after every message, but only the value at
//! the end of an operation is ever persisted (the journal compares after it, `journal.rs`), and
//! a reader reads a page of messages, or a writer seals a burst, as one operation. So a write
//! only marks them behind, and [`Member::changes`](crate::mls::member::Member::changes) has
//! openmls write them once before the journal compares. Nothing reads them from storage in
//! between: openmls reads its message secrets only when it loads a group at a restart.
//!
//! Stores written before this change hold the secrets as JSON; they are still read. A database
//! that holds postcard secrets is marked by migration 0006 (`store-sqlite`), so an older Plait,
//! which reads only JSON, refuses it instead of failing inside openmls.

use std::sync::atomic::{AtomicBool, Ordering};

use openmls_memory_storage::{MemoryStorage, MemoryStorageError};
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider, traits};

/// The label `MemoryStorage` files message secrets under (its keys are label, key, version).
const MESSAGE_SECRETS_LABEL: &[u8] = b"MessageSecrets";

/// First byte of a postcard value: JSON never starts with it (0xb1 is not valid UTF-8 there).
const POSTCARD_TAG: u8 = 0xb1;

/// Room beyond the last size of the message secrets when they are written again (a message
/// adds a slot to a sender's window; a new epoch adds a secret tree, and then the buffer grows).
const SECRETS_GROWTH_BYTES: usize = 256;

/// The store a node's openmls groups write through; see the module docs.
#[derive(Debug, Default)]
pub struct MlsStorage {
    inner: MemoryStorage,
    /// openmls wrote message secrets that `inner` does not hold yet. One flag is enough: a
    /// store holds one group (each `Joining`, `Member` and `PublicView` has its own provider).
    secrets_behind: AtomicBool,
    /// Message secrets written now go to `inner` (set only while catching up).
    secrets_written_through: AtomicBool,
}

impl MlsStorage {
    /// A store over `inner`'s values.
    pub fn new(inner: MemoryStorage) -> MlsStorage {
        MlsStorage { inner, secrets_behind: AtomicBool::new(false), secrets_written_through: AtomicBool::new(false) }
    }

    /// The key-value map the journal compares with what is durable.
    pub fn memory(&self) -> &MemoryStorage {
        assert!(!self.secrets_behind(), "invariant: message secrets are caught up before the journal compares");
        &self.inner
    }

    /// Whether openmls wrote message secrets that are not in the store yet.
    pub fn secrets_behind(&self) -> bool {
        self.secrets_behind.load(Ordering::Relaxed)
    }

    /// Runs `write`, in which openmls writes its message secrets, with those writes going to the
    /// store; afterwards the store is caught up.
    pub fn write_secrets_through<T>(&self, write: impl FnOnce() -> T) -> T {
        self.secrets_written_through.store(true, Ordering::Relaxed);
        let written = write();
        self.secrets_written_through.store(false, Ordering::Relaxed);
        written
    }

    fn message_secrets_key<GroupId: traits::GroupId<CURRENT_VERSION>>(group_id: &GroupId) -> Result<Vec<u8>, MemoryStorageError> {
        let mut key = MESSAGE_SECRETS_LABEL.to_vec();
        serde_json::to_writer(&mut key, group_id).map_err(|_| MemoryStorageError::SerializationError)?;
        key.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
        Ok(key)
    }
}

/// Implements each listed `StorageProvider` method by calling `MemoryStorage`'s own.
macro_rules! forward {
    ($(fn $name:ident<$($generic:ident: $bound:ident),*>($($arg:ident: $ty:ty),*) -> $value:ty;)*) => {
        $(
            fn $name<$($generic: traits::$bound<CURRENT_VERSION>),*>(
                &self,
                $($arg: $ty),*
            ) -> Result<$value, MemoryStorageError> {
                self.inner.$name::<$($generic),*>($($arg),*)
            }
        )*
    };
}

impl StorageProvider<CURRENT_VERSION> for MlsStorage {
    type Error = MemoryStorageError;

    fn write_message_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MessageSecrets: traits::MessageSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        message_secrets: &MessageSecrets,
    ) -> Result<(), Self::Error> {
        if !self.secrets_written_through.load(Ordering::Relaxed) {
            self.secrets_behind.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let key = Self::message_secrets_key(group_id)?;
        // Written at the end of every operation, at about the size it had: sized at once,
        // the buffer is not grown a few bytes at a time (that was ~2% of the real benchmark's CPU).
        let values = &self.inner.values;
        let size = values.read().expect("invariant: openmls never panics holding the storage lock").get(&key).map_or(0, Vec::len);
        let mut buffer = Vec::with_capacity(size + SECRETS_GROWTH_BYTES);
        buffer.push(POSTCARD_TAG);
        let value = postcard::to_extend(message_secrets, buffer).map_err(|_| MemoryStorageError::SerializationError)?;
        values.write().expect("invariant: openmls never panics holding the storage lock").insert(key, value);
        self.secrets_behind.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn message_secrets<GroupId: traits::GroupId<CURRENT_VERSION>, MessageSecrets: traits::MessageSecrets<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<MessageSecrets>, Self::Error> {
        assert!(!self.secrets_behind(), "invariant: openmls reads message secrets only when it loads a group");
        let key = Self::message_secrets_key(group_id)?;
        let values = self.inner.values.read().expect("invariant: openmls never panics holding the storage lock");
        let decoded = match values.get(&key) {
            None => return Ok(None),
            Some(value) => match value.split_first() {
                Some((&POSTCARD_TAG, postcard)) => postcard::from_bytes(postcard).ok(),
                _ => serde_json::from_slice(value).ok(),
            },
        };
        decoded.map(Some).ok_or(MemoryStorageError::SerializationError)
    }

    fn delete_message_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.secrets_behind.store(false, Ordering::Relaxed);
        self.inner.delete_message_secrets(group_id)
    }

    // Everything else goes to `MemoryStorage` as it is (the trait gives no method a default
    // body). The list is openmls_traits 0.6's trait, each bound `B` meaning `traits::B<1>`.
    forward! {
        fn write_mls_join_config<GroupId: GroupId, MlsGroupJoinConfig: MlsGroupJoinConfig>
            (group_id: &GroupId, config: &MlsGroupJoinConfig) -> ();
        fn append_own_leaf_node<GroupId: GroupId, LeafNode: LeafNode>
            (group_id: &GroupId, leaf_node: &LeafNode) -> ();
        fn queue_proposal<GroupId: GroupId, ProposalRef: ProposalRef, QueuedProposal: QueuedProposal>
            (group_id: &GroupId, proposal_ref: &ProposalRef, proposal: &QueuedProposal) -> ();
        fn write_tree<GroupId: GroupId, TreeSync: TreeSync>(group_id: &GroupId, tree: &TreeSync) -> ();
        fn write_interim_transcript_hash<GroupId: GroupId, InterimTranscriptHash: InterimTranscriptHash>
            (group_id: &GroupId, interim_transcript_hash: &InterimTranscriptHash) -> ();
        fn write_context<GroupId: GroupId, GroupContext: GroupContext>
            (group_id: &GroupId, group_context: &GroupContext) -> ();
        fn write_confirmation_tag<GroupId: GroupId, ConfirmationTag: ConfirmationTag>
            (group_id: &GroupId, confirmation_tag: &ConfirmationTag) -> ();
        fn write_group_state<GroupState: GroupState, GroupId: GroupId>
            (group_id: &GroupId, group_state: &GroupState) -> ();
        fn write_resumption_psk_store<GroupId: GroupId, ResumptionPskStore: ResumptionPskStore>
            (group_id: &GroupId, resumption_psk_store: &ResumptionPskStore) -> ();
        fn write_own_leaf_index<GroupId: GroupId, LeafNodeIndex: LeafNodeIndex>
            (group_id: &GroupId, own_leaf_index: &LeafNodeIndex) -> ();
        fn write_group_epoch_secrets<GroupId: GroupId, GroupEpochSecrets: GroupEpochSecrets>
            (group_id: &GroupId, group_epoch_secrets: &GroupEpochSecrets) -> ();
        fn write_signature_key_pair<SignaturePublicKey: SignaturePublicKey, SignatureKeyPair: SignatureKeyPair>
            (public_key: &SignaturePublicKey, signature_key_pair: &SignatureKeyPair) -> ();
        fn write_encryption_key_pair<EncryptionKey: EncryptionKey, HpkeKeyPair: HpkeKeyPair>
            (public_key: &EncryptionKey, key_pair: &HpkeKeyPair) -> ();
        fn write_encryption_epoch_key_pairs<GroupId: GroupId, EpochKey: EpochKey, HpkeKeyPair: HpkeKeyPair>
            (group_id: &GroupId, epoch: &EpochKey, leaf_index: u32, key_pairs: &[HpkeKeyPair]) -> ();
        fn write_key_package<HashReference: HashReference, KeyPackage: KeyPackage>
            (hash_ref: &HashReference, key_package: &KeyPackage) -> ();
        fn write_psk<PskId: PskId, PskBundle: PskBundle>(psk_id: &PskId, psk: &PskBundle) -> ();
        fn mls_group_join_config<GroupId: GroupId, MlsGroupJoinConfig: MlsGroupJoinConfig>
            (group_id: &GroupId) -> Option<MlsGroupJoinConfig>;
        fn own_leaf_nodes<GroupId: GroupId, LeafNode: LeafNode>(group_id: &GroupId) -> Vec<LeafNode>;
        fn queued_proposal_refs<GroupId: GroupId, ProposalRef: ProposalRef>
            (group_id: &GroupId) -> Vec<ProposalRef>;
        fn queued_proposals<GroupId: GroupId, ProposalRef: ProposalRef, QueuedProposal: QueuedProposal>
            (group_id: &GroupId) -> Vec<(ProposalRef, QueuedProposal)>;
        fn tree<GroupId: GroupId, TreeSync: TreeSync>(group_id: &GroupId) -> Option<TreeSync>;
        fn group_context<GroupId: GroupId, GroupContext: GroupContext>
            (group_id: &GroupId) -> Option<GroupContext>;
        fn interim_transcript_hash<GroupId: GroupId, InterimTranscriptHash: InterimTranscriptHash>
            (group_id: &GroupId) -> Option<InterimTranscriptHash>;
        fn confirmation_tag<GroupId: GroupId, ConfirmationTag: ConfirmationTag>
            (group_id: &GroupId) -> Option<ConfirmationTag>;
        fn group_state<GroupState: GroupState, GroupId: GroupId>(group_id: &GroupId) -> Option<GroupState>;
        fn resumption_psk_store<GroupId: GroupId, ResumptionPskStore: ResumptionPskStore>
            (group_id: &GroupId) -> Option<ResumptionPskStore>;
        fn own_leaf_index<GroupId: GroupId, LeafNodeIndex: LeafNodeIndex>
            (group_id: &GroupId) -> Option<LeafNodeIndex>;
        fn group_epoch_secrets<GroupId: GroupId, GroupEpochSecrets: GroupEpochSecrets>
            (group_id: &GroupId) -> Option<GroupEpochSecrets>;
        fn signature_key_pair<SignaturePublicKey: SignaturePublicKey, SignatureKeyPair: SignatureKeyPair>
            (public_key: &SignaturePublicKey) -> Option<SignatureKeyPair>;
        fn encryption_key_pair<HpkeKeyPair: HpkeKeyPair, EncryptionKey: EncryptionKey>
            (public_key: &EncryptionKey) -> Option<HpkeKeyPair>;
        fn encryption_epoch_key_pairs<GroupId: GroupId, EpochKey: EpochKey, HpkeKeyPair: HpkeKeyPair>
            (group_id: &GroupId, epoch: &EpochKey, leaf_index: u32) -> Vec<HpkeKeyPair>;
        fn key_package<KeyPackageRef: HashReference, KeyPackage: KeyPackage>
            (hash_ref: &KeyPackageRef) -> Option<KeyPackage>;
        fn psk<PskBundle: PskBundle, PskId: PskId>(psk_id: &PskId) -> Option<PskBundle>;
        fn remove_proposal<GroupId: GroupId, ProposalRef: ProposalRef>
            (group_id: &GroupId, proposal_ref: &ProposalRef) -> ();
        fn delete_own_leaf_nodes<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_group_config<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_tree<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_confirmation_tag<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_group_state<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_context<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_interim_transcript_hash<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_all_resumption_psk_secrets<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_own_leaf_index<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn delete_group_epoch_secrets<GroupId: GroupId>(group_id: &GroupId) -> ();
        fn clear_proposal_queue<GroupId: GroupId, ProposalRef: ProposalRef>(group_id: &GroupId) -> ();
        fn delete_signature_key_pair<SignaturePublicKey: SignaturePublicKey>
            (public_key: &SignaturePublicKey) -> ();
        fn delete_encryption_key_pair<EncryptionKey: EncryptionKey>(public_key: &EncryptionKey) -> ();
        fn delete_encryption_epoch_key_pairs<GroupId: GroupId, EpochKey: EpochKey>
            (group_id: &GroupId, epoch: &EpochKey, leaf_index: u32) -> ();
        fn delete_key_package<KeyPackageRef: HashReference>(hash_ref: &KeyPackageRef) -> ();
        fn delete_psk<PskKey: PskId>(psk_id: &PskKey) -> ();
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize)]
    struct Group(Vec<u8>);
    impl traits::GroupId<CURRENT_VERSION> for Group {}
    impl openmls_traits::storage::Key<CURRENT_VERSION> for Group {}

    /// Shaped like openmls's secrets: a window of consumed (empty) key slots.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Secrets {
        window: Vec<Option<[u8; 32]>>,
        head: [u8; 32],
    }
    impl traits::MessageSecrets<CURRENT_VERSION> for Secrets {}
    impl openmls_traits::storage::Entity<CURRENT_VERSION> for Secrets {}

    fn secrets() -> Secrets {
        let mut window = vec![None; 1_000];
        window[999] = Some([7; 32]);
        Secrets { window, head: [9; 32] }
    }

    fn stored_value(storage: &MlsStorage) -> Vec<u8> {
        let values = storage.memory().values.read().expect("the test holds no other lock");
        let mut matching = values.iter().filter(|(key, _)| key.starts_with(MESSAGE_SECRETS_LABEL));
        let (_, value) = matching.next().expect("the secrets were written");
        assert!(matching.next().is_none(), "one group, one value");
        value.clone()
    }

    #[test]
    fn message_secrets_are_written_as_tagged_postcard_and_read_back() {
        let storage = MlsStorage::default();
        storage.write_secrets_through(|| storage.write_message_secrets(&Group(b"g".to_vec()), &secrets())).expect("writes");
        let value = stored_value(&storage);
        assert_eq!(value[0], POSTCARD_TAG);
        assert_eq!(postcard::from_bytes::<Secrets>(&value[1..]).expect("postcard"), secrets());
        let read: Option<Secrets> = storage.message_secrets(&Group(b"g".to_vec())).expect("reads");
        assert_eq!(read, Some(secrets()));
        assert_eq!(storage.message_secrets::<Group, Secrets>(&Group(b"other".to_vec())).expect("reads"), None);
    }

    #[test]
    fn message_secrets_a_json_store_wrote_are_read_under_the_same_key_and_deleted() {
        let storage = MlsStorage::default();
        // What a store from before this change holds: `MemoryStorage`'s own JSON write.
        storage.memory().write_message_secrets(&Group(b"g".to_vec()), &secrets()).expect("writes");
        assert_eq!(stored_value(&storage)[0], b'{');
        let read: Option<Secrets> = storage.message_secrets(&Group(b"g".to_vec())).expect("reads");
        assert_eq!(read, Some(secrets()));
        storage.delete_message_secrets(&Group(b"g".to_vec())).expect("deletes");
        assert!(storage.memory().values.read().expect("no other lock").is_empty());
    }

    #[test]
    fn message_secrets_written_outside_a_write_through_only_mark_the_store_behind() {
        let storage = MlsStorage::default();
        let mut older = secrets();
        older.head = [1; 32];
        storage.write_secrets_through(|| storage.write_message_secrets(&Group(b"g".to_vec()), &older)).expect("writes");
        storage.write_message_secrets(&Group(b"g".to_vec()), &secrets()).expect("writes");
        assert!(storage.secrets_behind());
        let held: Vec<Vec<u8>> = storage.inner.values.read().expect("no other lock").values().cloned().collect();
        assert_eq!(held.len(), 1);
        assert_eq!(postcard::from_bytes::<Secrets>(&held[0][1..]).expect("postcard"), older, "the later write waits");
        let caught_up = storage.write_secrets_through(|| storage.write_message_secrets(&Group(b"g".to_vec()), &secrets()));
        caught_up.expect("writes");
        assert!(!storage.secrets_behind());
        assert_eq!(postcard::from_bytes::<Secrets>(&stored_value(&storage)[1..]).expect("postcard"), secrets());
        storage.write_message_secrets(&Group(b"g".to_vec()), &older).expect("writes");
        storage.delete_message_secrets(&Group(b"g".to_vec())).expect("deletes");
        assert!(!storage.secrets_behind(), "nothing is left to catch up once the secrets are deleted");
        assert!(storage.memory().values.read().expect("no other lock").is_empty());
    }

    #[test]
    fn unreadable_message_secrets_are_an_error_not_a_panic() {
        let storage = MlsStorage::default();
        storage.write_secrets_through(|| storage.write_message_secrets(&Group(b"g".to_vec()), &secrets())).expect("writes");
        let key = MlsStorage::message_secrets_key(&Group(b"g".to_vec())).expect("a key");
        for value in [vec![POSTCARD_TAG, 0xff], b"{not json".to_vec(), vec![]] {
            storage.memory().values.write().expect("no other lock").insert(key.clone(), value);
            let read = storage.message_secrets::<Group, Secrets>(&Group(b"g".to_vec()));
            assert!(matches!(read, Err(MemoryStorageError::SerializationError)));
        }
    }
}
