//! An acceptor's view of an MLS group: membership, epoch and tree, no secrets (openmls
//! `PublicGroup`). It checks a commit before the acceptor accepts it, and follows chosen commits.

use std::collections::BTreeMap;

use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;
use tls_codec::Deserialize as _;

use crate::faults::{self, Library};
use crate::mls::contained;
use crate::mls::journal::{Journal, StorageChange};
use crate::mls::member::MlsError;
use crate::mls::provider::DeterministicProvider;
use crate::mls::roles::{CommitSummary, GroupSettings, Roles, authorize};

/// What a valid, authorised commit does, as far as an acceptor can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCommit {
    /// The epoch the commit was made in (it moves the group to the next one).
    pub epoch: u64,
    /// What it changes and who made it.
    pub summary: CommitSummary,
    /// Its authenticated data (a compaction names itself here; see `snapshot.rs`).
    pub aad: Vec<u8>,
}

/// A group as an acceptor follows it.
///
/// A panic inside openmls while it merges a chosen commit (which passed the same check first)
/// may leave the group half merged: the view is then `broken` and refuses to check or verify
/// anything more, so its acceptor stops serving that group (and only it). Replaying the log
/// after a restart meets the same commit, so the view stays broken, without a loop.
#[derive(Debug)]
pub struct PublicView {
    provider: DeterministicProvider,
    journal: Journal,
    group: PublicGroup,
    broken: bool,
}

impl PublicView {
    /// Starts following a group from a GroupInfo that carries the ratchet tree.
    pub fn from_group_info(group_info: &[u8]) -> Result<PublicView, MlsError> {
        // A panic leaves nothing behind: the view is made only on success.
        contained(|| PublicView::try_from_group_info(group_info))
    }

    fn try_from_group_info(group_info: &[u8]) -> Result<PublicView, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(group_info).map_err(|_| MlsError::Malformed)?;
        let MlsMessageBodyIn::GroupInfo(group_info) = message.extract() else { return Err(MlsError::Malformed) };
        let tree = group_info
            .extensions()
            .ratchet_tree()
            .ok_or_else(|| MlsError::Rejected("the group info carries no ratchet tree".into()))?
            .ratchet_tree()
            .clone();
        // Verification draws no randomness; a fixed seed keeps construction free of the OS.
        let provider = DeterministicProvider::new([0; 32], Default::default());
        let (group, _) =
            PublicGroup::from_external(provider.crypto(), provider.storage(), tree, group_info, ProposalStore::new())
                .map_err(|error| MlsError::Rejected(format!("{error:?}")))?;
        Ok(PublicView { provider, journal: Journal::default(), group, broken: false })
    }

    /// Rebuilds a view from what was persisted of its storage.
    pub fn restore(durable: BTreeMap<Vec<u8>, Vec<u8>>, id: &[u8]) -> Result<PublicView, MlsError> {
        let (journal, storage) = Journal::restored(durable);
        let provider = DeterministicProvider::new([0; 32], storage);
        let group = PublicGroup::load(provider.storage(), &GroupId::from_slice(id))
            .map_err(|error| MlsError::Internal(format!("{error:?}")))?
            .ok_or_else(|| MlsError::Impossible("no such group in storage".into()))?;
        Ok(PublicView { provider, journal, group, broken: false })
    }

    /// Storage changes since the last call.
    pub fn changes(&mut self) -> Vec<StorageChange> {
        self.journal.changes(self.provider.memory())
    }

    /// The MLS group id.
    pub fn group_id(&self) -> &[u8] {
        self.group.group_id().as_slice()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// The members' names, in leaf order.
    pub fn members(&self) -> Vec<Vec<u8>> {
        self.group.members().map(|member| member.credential.serialized_content().to_vec()).collect()
    }

    /// The settings in force this epoch.
    pub fn settings(&self) -> Result<GroupSettings, MlsError> {
        GroupSettings::from_extensions(self.group.group_context().extensions())
    }

    /// The roles in force this epoch.
    pub fn roles(&self) -> Result<Roles, MlsError> {
        Ok(self.settings()?.roles)
    }

    /// Whether `signature` over `bytes` verifies with the signature key of current member `name`.
    pub fn verifies(&self, name: &[u8], bytes: &[u8], signature: &[u8]) -> bool {
        use openmls_traits::crypto::OpenMlsCrypto as _;
        if self.broken {
            return false;
        }
        let Some(signer) = self.group.members().find(|m| m.credential.serialized_content() == name) else { return false };
        self.provider.crypto().verify_signature(SignatureScheme::ED25519, bytes, &signer.signature_key, signature).is_ok()
    }

    /// Whether `name` is a current member allowed to send application data (not a reader).
    pub fn is_writer(&self, name: &[u8]) -> bool {
        if self.broken {
            return false;
        }
        let member = self.group.members().any(|member| member.credential.serialized_content() == name);
        member && self.roles().is_ok_and(|roles| roles.of(name) != crate::mls::Role::Reader)
    }

    /// The epoch an encoded MLS message names in its header (`None` if it is not one).
    pub fn epoch_of(bytes: &[u8]) -> Option<u64> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).ok()?;
        message.try_into_protocol_message().ok().map(|protocol| protocol.epoch().as_u64())
    }

    /// Checks what an acceptor can check of application data without any secret: an MLS
    /// PrivateMessage of this group, from this epoch or one of the `past_epochs` before it.
    /// Returns its epoch.
    pub fn check_application(&self, bytes: &[u8], past_epochs: usize) -> Result<u64, MlsError> {
        self.intact()?;
        contained(|| self.try_check_application(bytes, past_epochs))
    }

    fn try_check_application(&self, bytes: &[u8], past_epochs: usize) -> Result<u64, MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
        let protocol = message.try_into_protocol_message().map_err(|_| MlsError::Malformed)?;
        if !matches!(protocol, ProtocolMessage::PrivateMessage(_)) {
            return Err(MlsError::Rejected("application data must be a PrivateMessage".into()));
        }
        if protocol.group_id() != self.group.group_id() {
            return Err(MlsError::Rejected("another group's message".into()));
        }
        let epoch = protocol.epoch().as_u64();
        if epoch > self.epoch() {
            return Err(MlsError::FutureEpoch(epoch));
        }
        if epoch + (past_epochs as u64) < self.epoch() {
            return Err(MlsError::TooOld(epoch));
        }
        Ok(epoch)
    }

    /// Checks a commit against the current epoch without applying it: it must be a
    /// PublicMessage commit for this group and epoch, signed by a current member whose role
    /// allows what it changes.
    pub fn check_commit(&self, bytes: &[u8]) -> Result<CheckedCommit, MlsError> {
        self.stage(bytes).map(|(checked, _)| checked)
    }

    /// Applies a chosen commit (checking it first).
    pub fn apply_commit(&mut self, bytes: &[u8]) -> Result<CheckedCommit, MlsError> {
        let (checked, staged) = self.stage(bytes)?;
        let merged = contained(|| {
            faults::panic_if_armed(Library::MlsMerge, bytes);
            self.group.merge_commit(self.provider.storage(), staged).map_err(|error| MlsError::Internal(format!("{error:?}")))
        });
        if matches!(merged, Err(MlsError::Panicked)) {
            self.broken = true;
        }
        merged.map(|()| checked)
    }

    /// Whether openmls panicked merging a commit into this view (see [`PublicView`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn intact(&self) -> Result<(), MlsError> {
        if self.broken { Err(MlsError::Panicked) } else { Ok(()) }
    }

    /// Checks a commit on `&self`: a panic inside openmls leaves the view as it was, so it
    /// only refuses the commit.
    fn stage(&self, bytes: &[u8]) -> Result<(CheckedCommit, StagedCommit), MlsError> {
        self.intact()?;
        contained(|| {
            faults::panic_if_armed(Library::Mls, bytes);
            self.try_stage(bytes)
        })
    }

    fn try_stage(&self, bytes: &[u8]) -> Result<(CheckedCommit, StagedCommit), MlsError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
        let protocol = message.try_into_protocol_message().map_err(|_| MlsError::Malformed)?;
        if !matches!(protocol, ProtocolMessage::PublicMessage(_)) {
            return Err(MlsError::Rejected("commits must be PublicMessages".into()));
        }
        let processed = self
            .group
            .process_message(self.provider.crypto(), protocol)
            .map_err(|error| MlsError::Rejected(format!("{error:?}")))?;
        let epoch = processed.epoch().as_u64();
        let committer = processed.credential().serialized_content().to_vec();
        let aad = processed.aad().to_vec();
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(MlsError::Rejected("not a commit".into()));
        };
        let summary = CommitSummary::of(&staged, committer, |leaf| {
            self.group.leaf(leaf).map(|node| node.credential().serialized_content().to_vec())
        });
        authorize(&summary, &self.roles()?)?;
        Ok((CheckedCommit { epoch, summary, aad }, *staged))
    }
}
