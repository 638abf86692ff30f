//! A device's MLS state for one group, and how it follows the log.
//!
//! Commits are made when the proposer reaches a slot (against the epoch after every earlier
//! slot) and stay pending in openmls until that slot is decided: if the chosen value is ours,
//! merge it; otherwise discard ours and apply the chosen one. The pending commit (bytes, hash and
//! Welcome) is persisted beside openmls's state before its accept leaves, so a device that
//! restarts in the middle of a commit still recognises its own commit when it is chosen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::ids::{GroupId, NodeId, ValueHash};
use crate::io::Event;
use crate::log::Entry;
use crate::mls::{Identity, Member, MlsError};
use crate::snapshot::{Compaction, ContentKey, KeyedCompaction, SnapshotHash, open, seal};
use crate::storage::Record;

/// Keys of Plait's own facts in a group's MLS state (openmls never writes keys starting 0xff).
const PENDING_KEY: &[u8] = b"\xffplait/pending-commit";
const MLS_GROUP_ID_KEY: &[u8] = b"\xffplait/mls-group-id";

/// A change the app asked for, turned into a commit when the proposer gets a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Add the member whose encoded key package this is.
    Add(Vec<u8>),
    /// Add the member who redeemed the invite with this mailbox, by its key package.
    AddInvited(crate::invite::Mailbox, Vec<u8>),
    /// Remove this member.
    Remove(NodeId),
    /// Rotate this device's keys.
    Rotate,
    /// Give a member a role.
    SetRole(NodeId, crate::mls::Role),
    /// Hand the group's log to another acceptor set (from the slot after the commit's).
    SetAcceptors(crate::log::AcceptorSet),
    /// Make this snapshot, stored at a write quorum, count: a key rotation whose authenticated
    /// data names it (`wrapped_key` is filled in against the epoch the commit is made in). It
    /// was taken while the compaction named second was in force; once another one is, it is
    /// abandoned (acceptors drop every snapshot but the one in force).
    Compact(KeyedCompaction, Option<SnapshotHash>),
    /// Finish the commit that was pending when the device restarted (the intent it was made
    /// for was in memory and is gone, but the commit may already hold accepts).
    Resume,
}

/// A commit this device made that the log has not decided yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingCommit {
    pub(crate) hash: ValueHash,
    pub(crate) commit: Vec<u8>,
    pub(crate) welcome: Option<Vec<u8>>,
    /// The invite whose joiner the commit adds, if any (its Welcome goes to that mailbox).
    pub(crate) mailbox: Option<crate::invite::Mailbox>,
    /// The compaction the commit makes, if any, with its key.
    pub(crate) compaction: Option<KeyedCompaction>,
}

/// What following one chosen entry did.
#[derive(Debug, Default)]
pub(crate) struct Followed {
    /// It was our pending commit.
    pub(crate) ours: bool,
    /// What to tell the app.
    pub(crate) events: Vec<Event>,
    /// The compaction it made, with its key; `Err` for one whose key did not unwrap.
    pub(crate) compaction: Option<Result<KeyedCompaction, Compaction>>,
}

/// One group's MLS side on a device.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) member: Member,
    identity: Identity,
    mls_group_id: Vec<u8>,
    pub(crate) pending: Option<PendingCommit>,
    /// The pending commit as last recorded (encoded; `Some(None)`: no row), so that `changes`
    /// writes it only when it changed: at a membership change, not at every message. `None`
    /// until a new membership's first `changes`, which writes it whatever the disk holds.
    pending_recorded: Option<Option<Vec<u8>>>,
}

impl Membership {
    /// A membership just created or joined; `changes` persists everything about it.
    pub(crate) fn new(member: Member, identity: Identity, mls_group_id: Vec<u8>) -> Membership {
        Membership { member, identity, mls_group_id, pending: None, pending_recorded: None }
    }

    /// Rebuilds from the group's durable MLS state.
    pub(crate) fn restore(seed: [u8; 32], identity: Identity, mut durable: BTreeMap<Vec<u8>, Vec<u8>>) -> Option<Membership> {
        let mls_group_id = durable.remove(MLS_GROUP_ID_KEY)?;
        let recorded = durable.remove(PENDING_KEY);
        let pending = recorded.as_ref().and_then(|bytes| postcard::from_bytes(bytes).ok());
        let member = Member::restore(seed, durable, &mls_group_id).ok()?;
        Some(Membership { member, identity, mls_group_id, pending, pending_recorded: Some(recorded) })
    }

    /// The records that make everything changed since the last call durable.
    pub(crate) fn changes(&mut self, group: GroupId, first: bool) -> Vec<Record> {
        let mut records: Vec<Record> =
            self.member.changes().into_iter().map(|(key, value)| Record::MlsState { group, key, value }).collect();
        if first {
            records.push(Record::MlsState { group, key: MLS_GROUP_ID_KEY.to_vec(), value: Some(self.mls_group_id.clone()) });
        }
        let pending = self.pending.as_ref().map(|p| postcard::to_allocvec(p).expect("invariant: pending commits encode"));
        if self.pending_recorded.as_ref() != Some(&pending) {
            records.push(Record::MlsState { group, key: PENDING_KEY.to_vec(), value: pending.clone() });
            self.pending_recorded = Some(pending);
        }
        records
    }

    /// The commit for `intent` against the current epoch: the pending one if there is one (a
    /// retry of the same slot), else a new one. `latest` is the compaction in force: a Welcome
    /// carries it to the joiner, and a new compaction must cover everything it covers.
    pub(crate) fn commit_for(&mut self, intent: &Intent, latest: Option<&KeyedCompaction>) -> Result<Entry, MlsError> {
        if let Some(pending) = &self.pending {
            return Ok(Entry::Value(pending.commit.clone()));
        }
        let own = match intent {
            Intent::Resume => return Err(MlsError::Impossible("no commit is pending".into())),
            Intent::Add(key_package) | Intent::AddInvited(_, key_package) => {
                let extension = latest.map(|keyed| postcard::to_allocvec(keyed).expect("invariant: compactions encode"));
                self.member.commit_add_with_extension(&self.identity, key_package, extension)?
            }
            Intent::Remove(node) => self.member.commit_remove(&self.identity, &node.0)?,
            Intent::Rotate => self.member.commit_update(&self.identity)?,
            Intent::Compact(keyed, base) => {
                if latest.map(|latest| latest.compaction.hash) != *base {
                    return Err(MlsError::Impossible("another compaction was chosen since this snapshot".into()));
                }
                let mut compaction = keyed.compaction.clone();
                compaction.wrapped_key = seal(&wrapping_key(&self.member, &compaction.hash)?, &keyed.key.0);
                self.member.commit_update_with_aad(&self.identity, compaction.to_aad())?
            }
            Intent::SetRole(node, role) => {
                let roles = self.member.roles()?.with(&node.0, *role);
                self.member.commit_roles(&self.identity, &roles)?
            }
            Intent::SetAcceptors(set) => {
                let settings = crate::mls::GroupSettings { acceptors: Some(set.clone()), ..self.member.settings()? };
                self.member.commit_settings(&self.identity, &settings)?
            }
        };
        let entry = Entry::Value(own.commit.clone());
        let mailbox = match intent {
            Intent::AddInvited(mailbox, _) => Some(*mailbox),
            _ => None,
        };
        let compaction = match intent {
            Intent::Compact(keyed, _) => Some(keyed.clone()),
            _ => None,
        };
        self.pending = Some(PendingCommit { hash: entry.hash(), commit: own.commit, welcome: own.welcome, mailbox, compaction });
        Ok(entry)
    }

    /// Where this device stands in the order in which members take their turn to compact after
    /// the snapshot named `latest` (0: first). The order is a hash of `latest` and each current
    /// writer's name, so every member computes the same one and a new one after every snapshot.
    pub(crate) fn compaction_turn(&self, latest: &[u8; 32], me: &[u8]) -> u64 {
        let roles = self.member.roles().unwrap_or_default();
        let rank = |name: &[u8]| *blake3::keyed_hash(latest, name).as_bytes();
        let mine = rank(me);
        let writers = self.member.members().into_iter().filter(|name| roles.of(name) != crate::mls::Role::Reader);
        writers.filter(|name| rank(name) < mine).count() as u64
    }

    /// Our place in the order in which members (of any role) confirm the compaction with
    /// `hash`: a keyed order, so a committer cannot choose to be the only one first.
    pub(crate) fn confirm_rank(&self, hash: &[u8; 32], me: &[u8]) -> u64 {
        let rank = |name: &[u8]| *blake3::keyed_hash(hash, name).as_bytes();
        let mine = rank(me);
        self.member.members().into_iter().filter(|name| rank(name) < mine).count() as u64
    }

    /// Follows one chosen entry.
    pub(crate) fn follow(&mut self, cx: &Context<'_>, entry: &Entry, value_hash: ValueHash) -> Followed {
        let Entry::Value(bytes) = entry else { return Followed::default() };
        let before = self.member.epoch();
        let mut followed = Followed::default();
        let ours = self.pending.as_ref().is_some_and(|pending| pending.hash == value_hash);
        if ours {
            let pending = self.pending.take().expect("checked above");
            // Refused only if our role does not allow it; every member then skips it alike.
            if self.member.merge_own_commit().is_ok() {
                if let Some(welcome) = pending.welcome {
                    followed.events.push(Event::Welcome { group: cx.group, welcome });
                }
                followed.compaction = pending.compaction.map(Ok);
            }
        } else {
            if self.pending.take().is_some() {
                // Another value took the slot our commit wanted; it is remade for a later slot.
                let _ = self.member.discard_own_commit();
            }
            let mut compaction = None;
            let applied = self.member.apply_commit_with(bytes, |member, aad| {
                let Some(named) = Compaction::from_aad(aad) else { return };
                // The epoch the commit was made in is still current here.
                let key = wrapping_key(member, &named.hash)
                    .ok()
                    .and_then(|wrapping| open(&wrapping, &named.wrapped_key))
                    .and_then(|key| <[u8; 32]>::try_from(key).ok());
                compaction = Some(match key {
                    Some(key) => Ok(KeyedCompaction { compaction: named, key: ContentKey(key) }),
                    None => Err(named),
                });
            });
            if applied.is_err() {
                cov_mark::hit!(device_skips_an_invalid_chosen_commit);
            } else {
                followed.compaction = compaction;
            }
        }
        followed.ours = ours;
        let events = &mut followed.events;
        if self.member.epoch() != before && self.member.is_active() {
            let authenticator_hash = *blake3::hash(&self.member.epoch_authenticator()).as_bytes();
            let members =
                self.member.members().iter().filter_map(|name| Some(NodeId(name.as_slice().try_into().ok()?))).collect();
            events.push(Event::EpochChanged { group: cx.group, epoch: self.member.epoch(), authenticator_hash, members });
        }
        followed
    }

    /// The acceptor set this epoch's settings name, if they changed it from the genesis set.
    pub(crate) fn acceptors(&self) -> Option<crate::log::AcceptorSet> {
        self.member.settings().ok()?.acceptors
    }

    /// Our signature on an accept (see [`crate::wire::accept_signed_bytes`]).
    pub(crate) fn sign_accept(
        &self,
        group: GroupId,
        ballot: crate::ids::Ballot,
        slot: crate::ids::Slot,
        hash: &ValueHash,
    ) -> Vec<u8> {
        let bytes = crate::wire::accept_signed_bytes(group, ballot, slot, hash);
        self.member.sign(&self.identity, &bytes).expect("invariant: Ed25519 signing does not fail")
    }

    /// Whether an accepted value reported in a promise carries a valid signature of the member
    /// whose ballot carried it.
    pub(crate) fn accept_is_signed(&self, group: GroupId, slot: crate::ids::Slot, value: &crate::storage::AcceptedValue) -> bool {
        let bytes = crate::wire::accept_signed_bytes(group, value.ballot, slot, &value.value_hash);
        self.member.verifies(&value.ballot.proposer.0, &bytes, &value.proof)
    }

    /// Encrypts application data for the current epoch.
    pub(crate) fn encrypt(&mut self, data: &[u8]) -> Result<Vec<u8>, MlsError> {
        self.member.encrypt(&self.identity, data)
    }

    /// Whether this device may send application data (a current member, not a reader).
    pub(crate) fn may_write(&self, group: GroupId, me: NodeId) -> Result<(), crate::io::CommandError> {
        use crate::io::CommandError;
        if !self.member.is_active() {
            return Err(CommandError::NotAMember(group));
        }
        if self.member.roles().is_ok_and(|roles| roles.of(&me.0) == crate::mls::Role::Reader) {
            return Err(CommandError::ReadOnly(group));
        }
        Ok(())
    }

    /// Whether this device can post its document messages now: a current member, not a reader,
    /// and no commit of its own undecided (openmls cannot seal meanwhile). While it cannot, the
    /// messages' post times do not wake it: nothing would change (a removed device woke every
    /// millisecond in the simulator, and a real driver would spin).
    pub(crate) fn may_post(&self) -> bool {
        let me = self.identity.credential.credential.serialized_content();
        self.pending.is_none()
            && self.member.is_active()
            && self.member.roles().is_ok_and(|roles| roles.of(me) != crate::mls::Role::Reader)
    }

    /// Our signed digest of the current epoch, to tell the other members.
    pub(crate) fn digest(&self) -> Option<crate::mls::SignedDigest> {
        if !self.member.is_active() {
            return None;
        }
        self.member.epoch_digest(&self.identity).ok()
    }

    /// Checks another member's digest; a fork comes back as the event to raise.
    pub(crate) fn check_digest(&self, group: GroupId, digest: &crate::mls::SignedDigest) -> Result<Option<Event>, ()> {
        use crate::mls::DigestCheck;
        match self.member.check_digest(digest) {
            DigestCheck::Agree | DigestCheck::UnknownEpoch => Ok(None),
            DigestCheck::Invalid => Err(()),
            DigestCheck::Fork(evidence) => {
                cov_mark::hit!(device_detects_a_fork);
                Ok(Some(Event::ForkDetected { group, epoch: evidence.epoch, ours: evidence.ours, theirs: evidence.theirs }))
            }
        }
    }

    /// Drops the pending commit (the acceptors refused it).
    pub(crate) fn drop_pending(&mut self) {
        if self.pending.take().is_some() {
            let _ = self.member.discard_own_commit();
        }
    }
}

/// The key that wraps a snapshot's content key in a commit made in `member`'s current epoch.
fn wrapping_key(member: &Member, hash: &SnapshotHash) -> Result<ContentKey, MlsError> {
    let (label, context) = Compaction::exporter_context(hash);
    Ok(ContentKey(member.export_secret(label, &context)?))
}
