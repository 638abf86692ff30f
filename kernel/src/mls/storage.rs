//! openmls's storage, with its message secrets in postcard instead of JSON.
//!
//! openmls writes a group's message secrets (the secret tree and its sender ratchets) on every
//! message a member seals or reads. `openmls_memory_storage` encodes every value as JSON, and
//! with Plait's 1,000-message out-of-order window (`member.rs`) that value is ~5 KiB, most of it
//! `null` for consumed keys. Encoding it as JSON, and the journal comparing and persisting it,
//! took about a seventh of the CPU per message in `cargo bench --workspace --bench real` (median
//! 305 → 260 µs over the six nodes, in 6 runs before and 15 after). This store keeps those secrets as postcard (a tag byte,
//! then the value) under the same key, and passes every other call to `MemoryStorage` unchanged.
//!
//! Stores written before this change hold the secrets as JSON; they are still read. A database
//! that holds postcard secrets is marked by migration 0006 (`store-sqlite`), so an older Plait,
//! which reads only JSON, refuses it instead of failing inside openmls.

use openmls_memory_storage::{MemoryStorage, MemoryStorageError};
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider, traits};

/// The label `MemoryStorage` files message secrets under (its keys are label, key, version).
const MESSAGE_SECRETS_LABEL: &[u8] = b"MessageSecrets";

/// First byte of a postcard value: JSON never starts with it (0xb1 is not valid UTF-8 there).
const POSTCARD_TAG: u8 = 0xb1;

/// The store a node's openmls groups write through; see the module docs.
#[derive(Debug, Default)]
pub struct MlsStorage {
    inner: MemoryStorage,
}

impl MlsStorage {
    /// A store over `inner`'s values.
    pub fn new(inner: MemoryStorage) -> MlsStorage {
        MlsStorage { inner }
    }

    /// The key-value map the journal compares with what is durable.
    pub fn memory(&self) -> &MemoryStorage {
        &self.inner
    }

    fn message_secrets_key<GroupId: traits::GroupId<CURRENT_VERSION>>(group_id: &GroupId) -> Result<Vec<u8>, MemoryStorageError> {
        let mut key = MESSAGE_SECRETS_LABEL.to_vec();
        serde_json::to_writer(&mut key, group_id).map_err(|_| MemoryStorageError::SerializationError)?;
        key.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
        Ok(key)
    }
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
        let key = Self::message_secrets_key(group_id)?;
        let value =
            postcard::to_extend(message_secrets, vec![POSTCARD_TAG]).map_err(|_| MemoryStorageError::SerializationError)?;
        self.inner.values.write().expect("invariant: openmls never panics holding the storage lock").insert(key, value);
        Ok(())
    }

    fn message_secrets<GroupId: traits::GroupId<CURRENT_VERSION>, MessageSecrets: traits::MessageSecrets<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<MessageSecrets>, Self::Error> {
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

    // Everything else goes to `MemoryStorage` as it is: one forwarding method per trait method,
    // since the trait gives none a default body (generated from openmls_traits 0.6's trait).

    fn write_mls_join_config<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MlsGroupJoinConfig: traits::MlsGroupJoinConfig<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        config: &MlsGroupJoinConfig,
    ) -> Result<(), Self::Error> {
        self.inner.write_mls_join_config::<GroupId, MlsGroupJoinConfig>(group_id, config)
    }

    fn append_own_leaf_node<GroupId: traits::GroupId<CURRENT_VERSION>, LeafNode: traits::LeafNode<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
        leaf_node: &LeafNode,
    ) -> Result<(), Self::Error> {
        self.inner.append_own_leaf_node::<GroupId, LeafNode>(group_id, leaf_node)
    }

    fn queue_proposal<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        proposal_ref: &ProposalRef,
        proposal: &QueuedProposal,
    ) -> Result<(), Self::Error> {
        self.inner.queue_proposal::<GroupId, ProposalRef, QueuedProposal>(group_id, proposal_ref, proposal)
    }

    fn write_tree<GroupId: traits::GroupId<CURRENT_VERSION>, TreeSync: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
        tree: &TreeSync,
    ) -> Result<(), Self::Error> {
        self.inner.write_tree::<GroupId, TreeSync>(group_id, tree)
    }

    fn write_interim_transcript_hash<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        interim_transcript_hash: &InterimTranscriptHash,
    ) -> Result<(), Self::Error> {
        self.inner.write_interim_transcript_hash::<GroupId, InterimTranscriptHash>(group_id, interim_transcript_hash)
    }

    fn write_context<GroupId: traits::GroupId<CURRENT_VERSION>, GroupContext: traits::GroupContext<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
        group_context: &GroupContext,
    ) -> Result<(), Self::Error> {
        self.inner.write_context::<GroupId, GroupContext>(group_id, group_context)
    }

    fn write_confirmation_tag<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ConfirmationTag: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        confirmation_tag: &ConfirmationTag,
    ) -> Result<(), Self::Error> {
        self.inner.write_confirmation_tag::<GroupId, ConfirmationTag>(group_id, confirmation_tag)
    }

    fn write_group_state<GroupState: traits::GroupState<CURRENT_VERSION>, GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
        group_state: &GroupState,
    ) -> Result<(), Self::Error> {
        self.inner.write_group_state::<GroupState, GroupId>(group_id, group_state)
    }

    fn write_resumption_psk_store<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ResumptionPskStore: traits::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        resumption_psk_store: &ResumptionPskStore,
    ) -> Result<(), Self::Error> {
        self.inner.write_resumption_psk_store::<GroupId, ResumptionPskStore>(group_id, resumption_psk_store)
    }

    fn write_own_leaf_index<GroupId: traits::GroupId<CURRENT_VERSION>, LeafNodeIndex: traits::LeafNodeIndex<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
        own_leaf_index: &LeafNodeIndex,
    ) -> Result<(), Self::Error> {
        self.inner.write_own_leaf_index::<GroupId, LeafNodeIndex>(group_id, own_leaf_index)
    }

    fn write_group_epoch_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupEpochSecrets: traits::GroupEpochSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        group_epoch_secrets: &GroupEpochSecrets,
    ) -> Result<(), Self::Error> {
        self.inner.write_group_epoch_secrets::<GroupId, GroupEpochSecrets>(group_id, group_epoch_secrets)
    }

    fn write_signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<CURRENT_VERSION>,
        SignatureKeyPair: traits::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
        signature_key_pair: &SignatureKeyPair,
    ) -> Result<(), Self::Error> {
        self.inner.write_signature_key_pair::<SignaturePublicKey, SignatureKeyPair>(public_key, signature_key_pair)
    }

    fn write_encryption_key_pair<
        EncryptionKey: traits::EncryptionKey<CURRENT_VERSION>,
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &EncryptionKey,
        key_pair: &HpkeKeyPair,
    ) -> Result<(), Self::Error> {
        self.inner.write_encryption_key_pair::<EncryptionKey, HpkeKeyPair>(public_key, key_pair)
    }

    fn write_encryption_epoch_key_pairs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        EpochKey: traits::EpochKey<CURRENT_VERSION>,
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
        key_pairs: &[HpkeKeyPair],
    ) -> Result<(), Self::Error> {
        self.inner.write_encryption_epoch_key_pairs::<GroupId, EpochKey, HpkeKeyPair>(group_id, epoch, leaf_index, key_pairs)
    }

    fn write_key_package<
        HashReference: traits::HashReference<CURRENT_VERSION>,
        KeyPackage: traits::KeyPackage<CURRENT_VERSION>,
    >(
        &self,
        hash_ref: &HashReference,
        key_package: &KeyPackage,
    ) -> Result<(), Self::Error> {
        self.inner.write_key_package::<HashReference, KeyPackage>(hash_ref, key_package)
    }

    fn write_psk<PskId: traits::PskId<CURRENT_VERSION>, PskBundle: traits::PskBundle<CURRENT_VERSION>>(
        &self,
        psk_id: &PskId,
        psk: &PskBundle,
    ) -> Result<(), Self::Error> {
        self.inner.write_psk::<PskId, PskBundle>(psk_id, psk)
    }

    fn mls_group_join_config<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MlsGroupJoinConfig: traits::MlsGroupJoinConfig<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<MlsGroupJoinConfig>, Self::Error> {
        self.inner.mls_group_join_config::<GroupId, MlsGroupJoinConfig>(group_id)
    }

    fn own_leaf_nodes<GroupId: traits::GroupId<CURRENT_VERSION>, LeafNode: traits::LeafNode<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Vec<LeafNode>, Self::Error> {
        self.inner.own_leaf_nodes::<GroupId, LeafNode>(group_id)
    }

    fn queued_proposal_refs<GroupId: traits::GroupId<CURRENT_VERSION>, ProposalRef: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Vec<ProposalRef>, Self::Error> {
        self.inner.queued_proposal_refs::<GroupId, ProposalRef>(group_id)
    }

    fn queued_proposals<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Vec<(ProposalRef, QueuedProposal)>, Self::Error> {
        self.inner.queued_proposals::<GroupId, ProposalRef, QueuedProposal>(group_id)
    }

    fn tree<GroupId: traits::GroupId<CURRENT_VERSION>, TreeSync: traits::TreeSync<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<TreeSync>, Self::Error> {
        self.inner.tree::<GroupId, TreeSync>(group_id)
    }

    fn group_context<GroupId: traits::GroupId<CURRENT_VERSION>, GroupContext: traits::GroupContext<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<GroupContext>, Self::Error> {
        self.inner.group_context::<GroupId, GroupContext>(group_id)
    }

    fn interim_transcript_hash<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<InterimTranscriptHash>, Self::Error> {
        self.inner.interim_transcript_hash::<GroupId, InterimTranscriptHash>(group_id)
    }

    fn confirmation_tag<GroupId: traits::GroupId<CURRENT_VERSION>, ConfirmationTag: traits::ConfirmationTag<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<ConfirmationTag>, Self::Error> {
        self.inner.confirmation_tag::<GroupId, ConfirmationTag>(group_id)
    }

    fn group_state<GroupState: traits::GroupState<CURRENT_VERSION>, GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<GroupState>, Self::Error> {
        self.inner.group_state::<GroupState, GroupId>(group_id)
    }

    fn resumption_psk_store<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ResumptionPskStore: traits::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<ResumptionPskStore>, Self::Error> {
        self.inner.resumption_psk_store::<GroupId, ResumptionPskStore>(group_id)
    }

    fn own_leaf_index<GroupId: traits::GroupId<CURRENT_VERSION>, LeafNodeIndex: traits::LeafNodeIndex<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<LeafNodeIndex>, Self::Error> {
        self.inner.own_leaf_index::<GroupId, LeafNodeIndex>(group_id)
    }

    fn group_epoch_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupEpochSecrets: traits::GroupEpochSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<GroupEpochSecrets>, Self::Error> {
        self.inner.group_epoch_secrets::<GroupId, GroupEpochSecrets>(group_id)
    }

    fn signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<CURRENT_VERSION>,
        SignatureKeyPair: traits::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
    ) -> Result<Option<SignatureKeyPair>, Self::Error> {
        self.inner.signature_key_pair::<SignaturePublicKey, SignatureKeyPair>(public_key)
    }

    fn encryption_key_pair<
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
        EncryptionKey: traits::EncryptionKey<CURRENT_VERSION>,
    >(
        &self,
        public_key: &EncryptionKey,
    ) -> Result<Option<HpkeKeyPair>, Self::Error> {
        self.inner.encryption_key_pair::<HpkeKeyPair, EncryptionKey>(public_key)
    }

    fn encryption_epoch_key_pairs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        EpochKey: traits::EpochKey<CURRENT_VERSION>,
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> Result<Vec<HpkeKeyPair>, Self::Error> {
        self.inner.encryption_epoch_key_pairs::<GroupId, EpochKey, HpkeKeyPair>(group_id, epoch, leaf_index)
    }

    fn key_package<KeyPackageRef: traits::HashReference<CURRENT_VERSION>, KeyPackage: traits::KeyPackage<CURRENT_VERSION>>(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> Result<Option<KeyPackage>, Self::Error> {
        self.inner.key_package::<KeyPackageRef, KeyPackage>(hash_ref)
    }

    fn psk<PskBundle: traits::PskBundle<CURRENT_VERSION>, PskId: traits::PskId<CURRENT_VERSION>>(
        &self,
        psk_id: &PskId,
    ) -> Result<Option<PskBundle>, Self::Error> {
        self.inner.psk::<PskBundle, PskId>(psk_id)
    }

    fn remove_proposal<GroupId: traits::GroupId<CURRENT_VERSION>, ProposalRef: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
        proposal_ref: &ProposalRef,
    ) -> Result<(), Self::Error> {
        self.inner.remove_proposal::<GroupId, ProposalRef>(group_id, proposal_ref)
    }

    fn delete_own_leaf_nodes<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_own_leaf_nodes::<GroupId>(group_id)
    }

    fn delete_group_config<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_group_config::<GroupId>(group_id)
    }

    fn delete_tree<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_tree::<GroupId>(group_id)
    }

    fn delete_confirmation_tag<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_confirmation_tag::<GroupId>(group_id)
    }

    fn delete_group_state<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_group_state::<GroupId>(group_id)
    }

    fn delete_context<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_context::<GroupId>(group_id)
    }

    fn delete_interim_transcript_hash<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.inner.delete_interim_transcript_hash::<GroupId>(group_id)
    }

    fn delete_message_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_message_secrets::<GroupId>(group_id)
    }

    fn delete_all_resumption_psk_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.inner.delete_all_resumption_psk_secrets::<GroupId>(group_id)
    }

    fn delete_own_leaf_index<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> Result<(), Self::Error> {
        self.inner.delete_own_leaf_index::<GroupId>(group_id)
    }

    fn delete_group_epoch_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.inner.delete_group_epoch_secrets::<GroupId>(group_id)
    }

    fn clear_proposal_queue<GroupId: traits::GroupId<CURRENT_VERSION>, ProposalRef: traits::ProposalRef<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.inner.clear_proposal_queue::<GroupId, ProposalRef>(group_id)
    }

    fn delete_signature_key_pair<SignaturePublicKey: traits::SignaturePublicKey<CURRENT_VERSION>>(
        &self,
        public_key: &SignaturePublicKey,
    ) -> Result<(), Self::Error> {
        self.inner.delete_signature_key_pair::<SignaturePublicKey>(public_key)
    }

    fn delete_encryption_key_pair<EncryptionKey: traits::EncryptionKey<CURRENT_VERSION>>(
        &self,
        public_key: &EncryptionKey,
    ) -> Result<(), Self::Error> {
        self.inner.delete_encryption_key_pair::<EncryptionKey>(public_key)
    }

    fn delete_encryption_epoch_key_pairs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        EpochKey: traits::EpochKey<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> Result<(), Self::Error> {
        self.inner.delete_encryption_epoch_key_pairs::<GroupId, EpochKey>(group_id, epoch, leaf_index)
    }

    fn delete_key_package<KeyPackageRef: traits::HashReference<CURRENT_VERSION>>(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> Result<(), Self::Error> {
        self.inner.delete_key_package::<KeyPackageRef>(hash_ref)
    }

    fn delete_psk<PskKey: traits::PskId<CURRENT_VERSION>>(&self, psk_id: &PskKey) -> Result<(), Self::Error> {
        self.inner.delete_psk::<PskKey>(psk_id)
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
        storage.write_message_secrets(&Group(b"g".to_vec()), &secrets()).expect("writes");
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
    fn unreadable_message_secrets_are_an_error_not_a_panic() {
        let storage = MlsStorage::default();
        storage.write_message_secrets(&Group(b"g".to_vec()), &secrets()).expect("writes");
        let key = MlsStorage::message_secrets_key(&Group(b"g".to_vec())).expect("a key");
        for value in [vec![POSTCARD_TAG, 0xff], b"{not json".to_vec(), vec![]] {
            storage.memory().values.write().expect("no other lock").insert(key.clone(), value);
            let read = storage.message_secrets::<Group, Secrets>(&Group(b"g".to_vec()));
            assert!(matches!(read, Err(MemoryStorageError::SerializationError)));
        }
    }
}
