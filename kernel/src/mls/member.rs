//! One device's membership in one MLS group, on the deterministic provider.
//!
//! Commits leave as MLS PublicMessages (acceptors validate them); application data as
//! PrivateMessages. A commit this device makes stays pending until the Paxos log decides: if it
//! is chosen, [`Member::merge_own_commit`]; if another value is chosen for the slot,
//! [`Member::discard_own_commit`] and [`Member::apply_commit`] the chosen one.

use std::collections::BTreeMap;

use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;
use tls_codec::{Deserialize as _, Serialize as _};

use crate::faults::{self, Library};
use crate::mls::contained;
use crate::mls::digest::{AUTHENTICATORS_KEPT, DigestCheck, ForkEvidence, SignedDigest, authenticator_hash};
use crate::mls::identity::{CIPHERSUITE, Identity};
use crate::mls::journal::{Journal, StorageChange};
use crate::mls::provider::DeterministicProvider;
use crate::mls::roles::{CommitSummary, GroupSettings, Roles, authorize, capabilities};

/// The extension type of Plait's own GroupInfo extension (in the private-use range).
const PLAIT_EXTENSION: u16 = 0xff5a;

/// Commits travel in plaintext (acceptors validate them); incoming may be either.
const POLICY: WireFormatPolicy = MIXED_PLAINTEXT_WIRE_FORMAT_POLICY;

/// How far behind a sender's newest message an older one of the same epoch may still be read.
/// Document messages arrive late by design (backfill after a lost push, copies from another
/// acceptor), so this is much wider than openmls's default of 5. Consumed keys are kept as
/// empty slots, so the window costs about a byte per generation in the stored secret tree.
const OUT_OF_ORDER_TOLERANCE: u32 = 1_000;

/// How far ahead of the last message read a sender's message may be.
const FORWARD_DISTANCE_MAX: u32 = 2_000;

fn sender_ratchet() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(OUT_OF_ORDER_TOLERANCE, FORWARD_DISTANCE_MAX)
}

/// Why an MLS operation failed. Bytes from peers map to `Malformed` or `Rejected`; the rest are
/// local misuse or (`Internal`) a library failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MlsError {
    /// The bytes were not an MLS message of the expected kind.
    #[error("malformed MLS message")]
    Malformed,
    /// The message was well-formed but refused (wrong group or epoch, bad signature, ...).
    #[error("MLS message refused: {0}")]
    Rejected(String),
    /// The operation is impossible in the current state (unknown member, pending commit, ...).
    #[error("impossible MLS operation: {0}")]
    Impossible(String),
    /// The message is from an epoch this member has not reached: buffer it and retry later.
    #[error("message from epoch {0}, which this member has not reached yet")]
    FutureEpoch(u64),
    /// The message is from an epoch whose secrets were deleted (forward secrecy).
    #[error("message from epoch {0}, older than the epochs kept")]
    TooOld(u64),
    /// openmls failed on something that is not the peer's fault.
    #[error("MLS library failure: {0}")]
    Internal(String),
    /// openmls panicked on a peer's bytes (or did before, in this member: see [`Member`]).
    #[error("the MLS library panicked on the input")]
    Panicked,
}

fn internal(error: impl std::fmt::Debug) -> MlsError {
    MlsError::Internal(format!("{error:?}"))
}

/// A commit this device made, and the Welcome for anyone it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCommit {
    /// The commit, an encoded `MlsMessageOut` (PublicMessage).
    pub commit: Vec<u8>,
    /// The Welcome, if the commit adds members.
    pub welcome: Option<Vec<u8>>,
}

/// Application data a member decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The sender's name (credential identity), authenticated by MLS.
    pub sender: Vec<u8>,
    /// The epoch it was encrypted in.
    pub epoch: u64,
    /// The plaintext.
    pub data: Vec<u8>,
    /// The sender is a reader: it may only ask for a compaction (see `device/group/messaging.rs`).
    pub from_reader: bool,
}

/// A join that failed: the key package comes back with the reason.
pub type FailedJoin = Box<(Joining, MlsError)>;

/// A key package offered to join, with the provider that holds its private keys.
#[derive(Debug)]
pub struct Joining {
    provider: DeterministicProvider,
    journal: Journal,
    /// The encoded key package, to hand to an admin.
    pub key_package: Vec<u8>,
}

/// One group as a member sees it.
///
/// A panic inside openmls while it reads a peer's message is contained
/// ([`MlsError::Panicked`]), but it may have left the group's state half written: the member
/// is then `broken`. It refuses every later call that reads or changes that state, and
/// [`Member::changes`] hands over nothing, so none of it becomes durable and nothing sealed
/// with it leaves. Its owner builds it again from what is durable.
#[derive(Debug)]
pub struct Member {
    provider: DeterministicProvider,
    journal: Journal,
    group: MlsGroup,
    /// Hashes of the last [`AUTHENTICATORS_KEPT`] epoch authenticators, for fork detection.
    authenticators: BTreeMap<u64, [u8; 32]>,
    broken: bool,
}

/// Key packages are valid for all time: openmls checks lifetimes against the system clock, and a
/// window this wide makes that check independent of the clock (see ARCHITECTURE.md).
fn lifetime() -> Lifetime {
    Lifetime::init(0, u64::MAX)
}

impl Joining {
    /// Makes a key package for `identity`, with randomness from `seed`.
    pub fn new(seed: [u8; 32], identity: &Identity) -> Result<Joining, MlsError> {
        let provider = DeterministicProvider::new(seed, Default::default());
        let bundle = KeyPackage::builder()
            .key_package_lifetime(lifetime())
            .leaf_node_capabilities(capabilities())
            .build(CIPHERSUITE, &provider, &identity.signer, identity.credential.clone())
            .map_err(internal)?;
        let key_package = MlsMessageOut::from(bundle.key_package().clone()).tls_serialize_detached().map_err(internal)?;
        Ok(Joining { provider, journal: Journal::default(), key_package })
    }

    /// Joins with a Welcome made for this key package, keeping `past_epochs` epochs' secrets.
    /// On failure the key package comes back, so another Welcome can be tried with it.
    pub fn join(self, welcome: &[u8], past_epochs: usize) -> Result<Member, Box<(Joining, MlsError)>> {
        self.join_with_extension(welcome, past_epochs).map(|(member, _)| member)
    }

    /// [`Joining::join`], also returning what the inviter put in the GroupInfo's Plait extension (the latest
    /// compaction and its key), checked with the rest of the Welcome. On failure the key package
    /// comes back, so another Welcome can be tried with it.
    pub fn join_with_extension(self, welcome: &[u8], past_epochs: usize) -> Result<(Member, Option<Vec<u8>>), FailedJoin> {
        // A panic refuses the Welcome like any failure: a member is made only on success. What
        // openmls wrote meanwhile stays in the joining's store, in memory, under the group the
        // Welcome named (at worst the key package's keys are gone and a retry fails too).
        match contained(|| self.try_join(welcome, past_epochs)) {
            Ok((group, extension)) => Ok((Member::with(self.provider, self.journal, group), extension)),
            Err(error) => Err(Box::new((self, error))),
        }
    }

    fn try_join(&self, welcome: &[u8], past_epochs: usize) -> Result<(MlsGroup, Option<Vec<u8>>), MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|_| MlsError::Malformed)?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else { return Err(MlsError::Malformed) };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(past_epochs)
            .sender_ratchet_configuration(sender_ratchet())
            .build();
        let processed = ProcessedWelcome::new_from_welcome(&self.provider, &config, welcome)
            .map_err(|error| MlsError::Rejected(format!("{error:?}")))?;
        // Read before the GroupInfo's signature is checked, and used only once it is (below).
        let extension = processed.unverified_group_info().extensions().iter().find_map(|extension| match extension {
            Extension::Unknown(PLAIT_EXTENSION, UnknownExtension(bytes)) => Some(bytes.clone()),
            _ => None,
        });
        let staged =
            processed.into_staged_welcome(&self.provider, None).map_err(|error| MlsError::Rejected(format!("{error:?}")))?;
        let group = staged.into_group(&self.provider).map_err(|error| MlsError::Rejected(format!("{error:?}")))?;
        Ok((group, extension))
    }
}

impl Member {
    /// Creates a group with `id` and this device as its only member and admin, keeping
    /// `past_epochs` epochs' secrets to decrypt late messages (older ones are deleted), with
    /// members rotating their keys every `rotation_interval_ms` (0: only on demand).
    pub fn create(
        seed: [u8; 32],
        identity: &Identity,
        id: &[u8],
        past_epochs: usize,
        rotation_interval_ms: u64,
    ) -> Result<Member, MlsError> {
        let provider = DeterministicProvider::new(seed, Default::default());
        let settings = GroupSettings::founded_by(identity.credential.credential.serialized_content(), rotation_interval_ms);
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .capabilities(capabilities())
            .with_group_context_extensions(settings.to_extensions()?)
            .wire_format_policy(POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(past_epochs)
            .sender_ratchet_configuration(sender_ratchet())
            .lifetime(lifetime())
            .build();
        let group = MlsGroup::new_with_group_id(
            &provider,
            &identity.signer,
            &config,
            GroupId::from_slice(id),
            identity.credential.clone(),
        )
        .map_err(internal)?;
        Ok(Member::with(provider, Journal::default(), group))
    }

    /// Rebuilds a group from what was persisted of its storage.
    pub fn restore(seed: [u8; 32], durable: BTreeMap<Vec<u8>, Vec<u8>>, id: &[u8]) -> Result<Member, MlsError> {
        let (journal, storage) = Journal::restored(durable);
        let provider = DeterministicProvider::new(seed, storage);
        let group = MlsGroup::load(provider.storage(), &GroupId::from_slice(id))
            .map_err(internal)?
            .ok_or_else(|| MlsError::Impossible("no such group in storage".into()))?;
        Ok(Member::with(provider, journal, group))
    }

    fn with(provider: DeterministicProvider, journal: Journal, group: MlsGroup) -> Member {
        let mut member = Member { provider, journal, group, authenticators: BTreeMap::new(), broken: false };
        member.remember_epoch();
        member
    }

    fn remember_epoch(&mut self) {
        if !self.group.is_active() {
            // A member removed by this commit has no secrets for the new epoch.
            return;
        }
        let hash = authenticator_hash(self.group.epoch_authenticator().as_slice());
        self.authenticators.insert(self.epoch(), hash);
        while self.authenticators.len() > AUTHENTICATORS_KEPT {
            self.authenticators.pop_first();
        }
    }

    /// Whether openmls panicked inside one of this member's calls (see [`Member`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn intact(&self) -> Result<(), MlsError> {
        if self.broken { Err(MlsError::Panicked) } else { Ok(()) }
    }

    /// Runs a call that may change the group's state on a peer's bytes; a panic inside it
    /// breaks the member.
    fn guarded<T>(&mut self, call: impl FnOnce(&mut Member) -> Result<T, MlsError>) -> Result<T, MlsError> {
        self.intact()?;
        let result = contained(|| call(self));
        if matches!(result, Err(MlsError::Panicked)) {
            self.broken = true;
        }
        result
    }

    /// This member's signed digest of the current epoch.
    pub fn epoch_digest(&self, identity: &Identity) -> Result<SignedDigest, MlsError> {
        use openmls_traits::signatures::Signer as _;
        self.intact()?;
        let group = self.group.group_id().as_slice().to_vec();
        let hash = authenticator_hash(self.group.epoch_authenticator().as_slice());
        let bytes = SignedDigest::signed_bytes(&group, self.epoch(), &hash);
        let signature = identity.signer.sign(&bytes).map_err(internal)?;
        let signer = identity.credential.credential.serialized_content().to_vec();
        Ok(SignedDigest { group, epoch: self.epoch(), authenticator_hash: hash, signer, signature })
    }

    /// Signs `bytes` with this device's signature key (the one its leaf carries).
    pub fn sign(&self, identity: &Identity, bytes: &[u8]) -> Result<Vec<u8>, MlsError> {
        use openmls_traits::signatures::Signer as _;
        identity.signer.sign(bytes).map_err(internal)
    }

    /// Whether `signature` over `bytes` verifies with the signature key of current member `name`.
    pub fn verifies(&self, name: &[u8], bytes: &[u8], signature: &[u8]) -> bool {
        use openmls_traits::crypto::OpenMlsCrypto as _;
        let Some(signer) = self.group.members().find(|m| m.credential.serialized_content() == name) else { return false };
        self.provider.crypto().verify_signature(SignatureScheme::ED25519, bytes, &signer.signature_key, signature).is_ok()
    }

    /// Checks another member's digest against our record of that epoch.
    pub fn check_digest(&self, digest: &SignedDigest) -> DigestCheck {
        use openmls_traits::crypto::OpenMlsCrypto as _;
        if !self.group.is_active() {
            return DigestCheck::UnknownEpoch;
        }
        if digest.group != self.group.group_id().as_slice() {
            return DigestCheck::Invalid;
        }
        let Some(signer) = self.group.members().find(|m| m.credential.serialized_content() == digest.signer) else {
            return DigestCheck::Invalid;
        };
        let bytes = SignedDigest::signed_bytes(&digest.group, digest.epoch, &digest.authenticator_hash);
        let verified =
            self.provider.crypto().verify_signature(SignatureScheme::ED25519, &bytes, &signer.signature_key, &digest.signature);
        if verified.is_err() {
            return DigestCheck::Invalid;
        }
        match self.authenticators.get(&digest.epoch) {
            None => DigestCheck::UnknownEpoch,
            Some(ours) if *ours == digest.authenticator_hash => DigestCheck::Agree,
            Some(ours) => DigestCheck::Fork(ForkEvidence { epoch: digest.epoch, ours: *ours, theirs: digest.clone() }),
        }
    }

    /// Storage changes since the last call: persist them before anything depending on them leaves.
    pub fn changes(&mut self) -> Vec<StorageChange> {
        if self.broken {
            return Vec::new();
        }
        let storage = self.provider.storage();
        if storage.secrets_behind() {
            // openmls's one public call that writes its message secrets as they are: setting
            // the policy it has (which leaves the secrets as they are, and writes the same
            // join configuration again).
            let policy = self.group.past_epoch_deletion_policy().clone();
            storage
                .write_secrets_through(|| self.group.set_past_epoch_deletion_policy(&self.provider, policy))
                .expect("invariant: the in-memory store writes every value it is given");
        }
        self.journal.changes(self.provider.memory())
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// Whether this device is still a member (a commit removing it makes it inactive).
    pub fn is_active(&self) -> bool {
        self.group.is_active()
    }

    /// The MLS group id.
    pub fn group_id(&self) -> Vec<u8> {
        self.group.group_id().as_slice().to_vec()
    }

    /// The current epoch's authenticator (equal at every member that agrees on the epoch).
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    /// The settings in force this epoch.
    pub fn settings(&self) -> Result<GroupSettings, MlsError> {
        GroupSettings::from_extensions(self.group.extensions())
    }

    /// The roles in force this epoch.
    pub fn roles(&self) -> Result<Roles, MlsError> {
        Ok(self.settings()?.roles)
    }

    /// Commits new roles, keeping the other settings (admins only).
    pub fn commit_roles(&mut self, identity: &Identity, roles: &Roles) -> Result<OwnCommit, MlsError> {
        let settings = GroupSettings { roles: roles.clone(), ..self.settings()? };
        self.commit_settings(identity, &settings)
    }

    /// Commits new settings (admins only; acceptors and members refuse it otherwise).
    pub fn commit_settings(&mut self, identity: &Identity, settings: &GroupSettings) -> Result<OwnCommit, MlsError> {
        self.intact()?;
        let (commit, _, _) = self
            .group
            .update_group_context_extensions(&self.provider, settings.to_extensions()?, &identity.signer)
            .map_err(|error| MlsError::Impossible(format!("{error:?}")))?;
        Ok(OwnCommit { commit: encode(&commit)?, welcome: None })
    }

    /// The members' names (credential identities), in leaf order.
    pub fn members(&self) -> Vec<Vec<u8>> {
        self.group.members().map(|member| member.credential.serialized_content().to_vec()).collect()
    }

    /// A signed GroupInfo carrying the ratchet tree: what an acceptor starts following from.
    pub fn group_info(&self, identity: &Identity) -> Result<Vec<u8>, MlsError> {
        self.intact()?;
        let info = self.group.export_group_info(self.provider.crypto(), &identity.signer, true).map_err(internal)?;
        encode(&info)
    }

    /// Commits adding the member whose encoded key package this is.
    pub fn commit_add(&mut self, identity: &Identity, key_package: &[u8]) -> Result<OwnCommit, MlsError> {
        self.commit_add_with_extension(identity, key_package, None)
    }

    /// [`Member::commit_add`]; `extension`, if any, goes into the Welcome's GroupInfo (encrypted
    /// to the joiner, signed by us) as Plait's own extension.
    pub fn commit_add_with_extension(
        &mut self,
        identity: &Identity,
        key_package: &[u8],
        extension: Option<Vec<u8>>,
    ) -> Result<OwnCommit, MlsError> {
        self.intact()?;
        // The joiner's bytes are checked on their own first: a panic there leaves our state as
        // it was, so it only refuses the key package.
        let key_package = contained(|| {
            let message = MlsMessageIn::tls_deserialize_exact(key_package).map_err(|_| MlsError::Malformed)?;
            let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else { return Err(MlsError::Malformed) };
            key_package
                .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                .map_err(|error| MlsError::Rejected(format!("{error:?}")))
        })?;
        let impossible = |error: &dyn std::fmt::Debug| MlsError::Impossible(format!("{error:?}"));
        let extensions = extension.map(|bytes| Extension::Unknown(PLAIT_EXTENSION, UnknownExtension(bytes)));
        let bundle = self
            .group
            .commit_builder()
            .propose_adds([key_package])
            .load_psks(self.provider.storage())
            .map_err(|e| impossible(&e))?
            .create_group_info_with_extensions(extensions)
            .map_err(|e| impossible(&e))?
            .build(self.provider.rand(), self.provider.crypto(), &identity.signer, |_| true)
            .map_err(|e| impossible(&e))?
            .stage_commit(&self.provider)
            .map_err(|e| impossible(&e))?;
        let welcome = bundle.to_welcome_msg().ok_or_else(|| MlsError::Internal("an add made no Welcome".into()))?;
        Ok(OwnCommit { commit: encode(bundle.commit())?, welcome: Some(encode(&welcome)?) })
    }

    /// Commits removing the member named `name`.
    pub fn commit_remove(&mut self, identity: &Identity, name: &[u8]) -> Result<OwnCommit, MlsError> {
        self.intact()?;
        let leaf = self
            .group
            .members()
            .find(|member| member.credential.serialized_content() == name)
            .map(|member| member.index)
            .ok_or_else(|| MlsError::Impossible("no member with that name".into()))?;
        let (commit, welcome, _) = self
            .group
            .remove_members(&self.provider, &identity.signer, &[leaf])
            .map_err(|error| MlsError::Impossible(format!("{error:?}")))?;
        Ok(OwnCommit { commit: encode(&commit)?, welcome: welcome.as_ref().map(encode).transpose()? })
    }

    /// Commits a fresh leaf key for this device (key rotation).
    pub fn commit_update(&mut self, identity: &Identity) -> Result<OwnCommit, MlsError> {
        self.commit_update_with_aad(identity, Vec::new())
    }

    /// [`Member::commit_update`] with `aad` as the commit's authenticated data (signed by us,
    /// readable by acceptors).
    pub fn commit_update_with_aad(&mut self, identity: &Identity, aad: Vec<u8>) -> Result<OwnCommit, MlsError> {
        self.intact()?;
        self.group.set_aad(aad);
        let bundle = self
            .group
            .self_update(&self.provider, &identity.signer, LeafNodeParameters::default())
            .map_err(|error| MlsError::Impossible(format!("{error:?}")))?;
        Ok(OwnCommit { commit: encode(bundle.commit())?, welcome: None })
    }

    /// Our pending commit was chosen: move to the next epoch, unless our role does not allow it
    /// (then every other member refuses it too, so we discard it and stay, as they do).
    pub fn merge_own_commit(&mut self) -> Result<(), MlsError> {
        self.intact()?;
        if let Some(staged) = self.group.pending_commit() {
            let own = self.group.own_leaf_node().map(|leaf| leaf.credential().serialized_content().to_vec()).unwrap_or_default();
            let summary = CommitSummary::of(staged, own, |leaf| self.group.member(leaf).map(|c| c.serialized_content().to_vec()));
            if let Err(refused) = authorize(&summary, &self.roles()?) {
                cov_mark::hit!(own_unauthorised_commit_is_discarded);
                self.discard_own_commit()?;
                return Err(refused);
            }
        }
        self.group.merge_pending_commit(&self.provider).map_err(internal)?;
        self.remember_epoch();
        Ok(())
    }

    /// Another value was chosen for the slot our commit wanted: forget ours.
    pub fn discard_own_commit(&mut self) -> Result<(), MlsError> {
        self.intact()?;
        self.group.clear_pending_commit(self.provider.storage()).map_err(internal)
    }

    /// A secret of the current epoch that every member can derive and nobody else can, bound to
    /// `label` and `context`.
    pub fn export_secret(&self, label: &str, context: &[u8]) -> Result<[u8; 32], MlsError> {
        self.intact()?;
        let secret = self.group.export_secret(self.provider.crypto(), label, context, 32).map_err(internal)?;
        secret.try_into().map_err(|_| MlsError::Internal("exporter gave the wrong length".into()))
    }

    /// Applies a commit someone else made, chosen in the log. An invalid or unauthorised one is
    /// refused the same way at every member (and at acceptors), and the epoch stays.
    pub fn apply_commit(&mut self, bytes: &[u8]) -> Result<(), MlsError> {
        self.apply_commit_with(bytes, |_, _| ())
    }

    /// [`Member::apply_commit`]; before the commit is merged, `before_merge` sees its
    /// authenticated data while the epoch it was made in is still current (to derive that
    /// epoch's secrets).
    pub fn apply_commit_with(&mut self, bytes: &[u8], before_merge: impl FnOnce(&Member, &[u8])) -> Result<(), MlsError> {
        self.guarded(|member| member.try_apply_commit(bytes, before_merge))
    }

    fn try_apply_commit(&mut self, bytes: &[u8], before_merge: impl FnOnce(&Member, &[u8])) -> Result<(), MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
        let protocol = message.try_into_protocol_message().map_err(|_| MlsError::Malformed)?;
        if !matches!(protocol, ProtocolMessage::PublicMessage(_)) {
            return Err(MlsError::Rejected("commits must be PublicMessages".into()));
        }
        let processed =
            self.group.process_message(&self.provider, protocol).map_err(|error| MlsError::Rejected(format!("{error:?}")))?;
        let committer = processed.credential().serialized_content().to_vec();
        let aad = processed.aad().to_vec();
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(MlsError::Rejected("not a commit".into()));
        };
        let summary =
            CommitSummary::of(&staged, committer, |leaf| self.group.member(leaf).map(|c| c.serialized_content().to_vec()));
        // Refused: the staged commit is dropped and nothing was merged.
        authorize(&summary, &self.roles()?)?;
        before_merge(self, &aad);
        self.group.merge_staged_commit(&self.provider, *staged).map_err(internal)?;
        self.remember_epoch();
        Ok(())
    }

    /// Encrypts application data for the current epoch (a PrivateMessage).
    pub fn encrypt(&mut self, identity: &Identity, plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        self.intact()?;
        let message = self
            .group
            .create_message(&self.provider, &identity.signer, plaintext)
            .map_err(|error| MlsError::Impossible(format!("{error:?}")))?;
        encode(&message)
    }

    /// Decrypts application data: the sender's name, the epoch and the plaintext. Messages from
    /// epochs not reached yet are reported (`FutureEpoch`) so the caller can buffer them;
    /// messages from members removed before that epoch are refused, and those of readers marked.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Decrypted, MlsError> {
        self.guarded(|member| member.try_decrypt(bytes))
    }

    fn try_decrypt(&mut self, bytes: &[u8]) -> Result<Decrypted, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
        let protocol = message.try_into_protocol_message().map_err(|_| MlsError::Malformed)?;
        if !matches!(protocol, ProtocolMessage::PrivateMessage(_)) {
            return Err(MlsError::Rejected("application data must be a PrivateMessage".into()));
        }
        let epoch = protocol.epoch().as_u64();
        if epoch > self.epoch() {
            return Err(MlsError::FutureEpoch(epoch));
        }
        let processed = self.group.process_message(&self.provider, protocol).map_err(|error| match error {
            ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(_)) if epoch < self.epoch() => {
                MlsError::TooOld(epoch)
            }
            other => MlsError::Rejected(format!("{other:?}")),
        })?;
        let sender = processed.credential().serialized_content().to_vec();
        let from_reader = self.roles()?.of(&sender) == crate::mls::roles::Role::Reader;
        let ProcessedMessageContent::ApplicationMessage(application) = processed.into_content() else {
            return Err(MlsError::Rejected("not application data".into()));
        };
        let data = application.into_bytes();
        faults::panic_if_armed(Library::Mls, &data);
        Ok(Decrypted { sender, epoch, data, from_reader })
    }
}

/// The name (credential identity) an encoded key package claims. Parsed, not verified: use it
/// only for a key package a chosen commit added (adding one validates it).
pub fn key_package_name(key_package: &[u8]) -> Result<Vec<u8>, MlsError> {
    let message = MlsMessageIn::tls_deserialize_exact(key_package).map_err(|_| MlsError::Malformed)?;
    let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else { return Err(MlsError::Malformed) };
    Ok(key_package.unverified_credential().credential.serialized_content().to_vec())
}

fn encode(message: &MlsMessageOut) -> Result<Vec<u8>, MlsError> {
    message.tls_serialize_detached().map_err(internal)
}
