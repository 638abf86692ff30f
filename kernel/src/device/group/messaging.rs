//! A device group's application messages and invites: the MLS traffic beside the log.

use crate::canary::canary;
use crate::context::Context;
use crate::device::group::{DeviceGroup, Proposal};
use crate::device::membership::Intent;
use crate::device::messages::{self, Received};
use crate::ids::NodeId;
use crate::invite::Mailbox;
use crate::io::{CommandError, Event, Rejection};
use crate::mls::{MlsError, Role};
use crate::updates::{Payload, UpdateId};

/// What became of a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// Applied, delivered or refused for good.
    Done,
    /// Held until this device reaches the message's epoch.
    Held,
}

impl DeviceGroup {
    /// Opens an invite whose joiner ends with `role` (admins only); returns its code.
    pub(crate) fn create_invite(
        &mut self,
        cx: &mut Context<'_>,
        lifetime_ms: u64,
        role: Role,
    ) -> Result<crate::invite::InviteCode, CommandError> {
        let Some(mls) = self.mls.as_ref() else { return Err(CommandError::NotMls(cx.group)) };
        mls.may_write(cx.group, cx.me)?;
        if mls.member.roles().map_or(true, |roles| roles.of(&cx.me.0) != Role::Admin) {
            return Err(CommandError::NotAnAdmin(cx.group));
        }
        let acceptors = self.history.latest().clone();
        self.invites.create(cx, &acceptors, lifetime_ms, role)
    }

    /// Our commits adding the joiners of these invites were chosen: post their Welcomes, then
    /// give the joiners their invites' roles.
    pub(super) fn on_invitees_added(&mut self, cx: &mut Context<'_>, welcomes: Vec<(Mailbox, Vec<u8>)>) {
        let acceptors = self.history.latest().clone();
        let roles = self.mls.as_ref().and_then(|mls| mls.member.roles().ok()).unwrap_or_default();
        for (mailbox, welcome) in welcomes {
            self.invites.on_welcome(cx, &acceptors, &roles, mailbox, welcome);
        }
        self.give_invitees_their_roles(cx);
    }

    /// Queues a role change for every added joiner whose invite's role is not in force yet, and
    /// settles each one once it is. Runs after chosen entries and on the timer, so the change
    /// survives a restart (which empties the queue) and a lost slot. Not held to
    /// `proposals_queued_max`: at most one per open invite, and those are `invites_max`.
    pub(super) fn give_invitees_their_roles(&mut self, cx: &mut Context<'_>) {
        let Some(mls) = self.mls.as_ref() else { return };
        let due = self.invites.roles_due();
        // A commit pending since a restart may be the role change itself: settle it first.
        if due.is_empty() || self.queue.contains(&Proposal::Intent(Intent::Resume)) {
            return;
        }
        let Ok(roles) = mls.member.roles() else { return };
        let admin = mls.member.is_active() && roles.of(&cx.me.0) == Role::Admin;
        for (mailbox, joiner, role) in due {
            if !admin || roles.of(&joiner.0) == role {
                // In force, or no longer ours to give (only admins set roles).
                self.invites.role_settled(cx, mailbox);
                continue;
            }
            let intent = Proposal::Intent(Intent::SetRole(joiner, role));
            if !self.queue.contains(&intent) {
                cov_mark::hit!(admin_gives_an_invitee_its_role);
                self.queue.push_back(intent);
            }
        }
        assert!(self.queue.len() <= cx.config.proposals_queued_max + cx.config.invites_max, "the queue stays bounded");
    }

    /// A mailbox's contents, for one of our invites: add its joiner once, when it shows up.
    pub(super) fn on_mailbox(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        mailbox: Mailbox,
        key_package: Option<(Vec<u8>, [u8; 32])>,
        holds_welcome: bool,
    ) {
        if self.mls.is_none() {
            return cx.reject(Rejection::Unauthorised);
        }
        let Some(key_package) = self.invites.on_contents(cx, from, mailbox, key_package, holds_welcome) else { return };
        if self.queue.len() >= cx.config.proposals_queued_max {
            return cx.reject(Rejection::OverLimit);
        }
        cov_mark::hit!(admin_adds_the_joiner_of_an_invite);
        self.queue.push_back(Proposal::Intent(Intent::AddInvited(mailbox, key_package)));
        self.drive(cx);
    }

    /// Sends application data (`Payload::Message`) or presence to the online members: relayed,
    /// never stored (see `messages.rs`).
    pub(crate) fn send_message(&mut self, cx: &mut Context<'_>, payload: Payload) -> Result<(), CommandError> {
        let Some(mls) = self.mls.as_ref() else { return Err(CommandError::NotMls(cx.group)) };
        match (&payload, mls.may_write(cx.group, cx.me)) {
            // A reader may ask for a compaction: it falls behind like anyone.
            (Payload::CompactionWanted { .. }, Err(CommandError::ReadOnly(_))) | (_, Ok(())) => {}
            (_, Err(error)) => return Err(error),
        }
        let size = match &payload {
            Payload::Message(data) | Payload::Presence(data) => data.len(),
            Payload::Update { update, .. } => update.len(),
            Payload::CompactionWanted { .. } => 0,
        };
        if size > cx.config.application_bytes_max {
            return Err(CommandError::ValueTooLarge { size, limit: cx.config.application_bytes_max });
        }
        let data = payload.encode();
        if mls.pending.is_some() {
            cov_mark::hit!(device_holds_a_message_while_its_commit_is_undecided);
            return self.messages.hold(cx, data);
        }
        self.seal_and_send(cx, vec![data]);
        Ok(())
    }

    /// Encrypts each plaintext, makes the advanced ratchet durable, then sends the ciphertexts.
    fn seal_and_send(&mut self, cx: &mut Context<'_>, plaintexts: Vec<Vec<u8>>) {
        let mls = self.mls.as_mut().expect("invariant: only MLS groups send application data");
        let mut sealed = Vec::with_capacity(plaintexts.len());
        for data in plaintexts {
            if canary!(cx.config, AcceptorSeesPlaintext) {
                sealed.push(data);
                continue;
            }
            match mls.encrypt(&data) {
                Ok(message) => sealed.push(message),
                Err(error) => cx.effects.notify(Event::CommandFailed { error: CommandError::Mls(error.to_string()) }),
            }
        }
        let mut records = mls.changes(cx.group, false);
        if let Some(page) = self.page_writes.as_mut()
            && !page.records.is_empty()
        {
            // Sealed while reading a page (asking for a compaction of a message it cannot
            // read): these changes hold the keys the page's messages used so far, so the updates
            // they carried go in the same write. Written apart, a crash between the two writes
            // kept the used keys and lost the updates for good (a key is used once).
            cov_mark::hit!(device_seals_a_message_while_reading_a_page);
            records.append(&mut page.records);
        }
        cx.persist(records);
        let acceptors = self.history.latest().clone();
        for message in sealed {
            cx.send_all(acceptors.members(), &messages::outgoing(cx.me, message));
        }
    }

    /// Application data relayed by an acceptor.
    pub(super) fn on_application(&mut self, cx: &mut Context<'_>, sender: NodeId, message: Vec<u8>) {
        if self.mls.is_none() {
            return cx.reject(Rejection::Unauthorised);
        }
        if let Received::Decrypt = self.messages.receive(cx, &message) {
            self.read_message(cx, sender, message, None);
        }
    }

    /// Decrypts one message and applies or delivers it, or holds it until its epoch is reached.
    /// `stored` names a document message from an acceptor's store (relayed data has no id).
    pub(super) fn read_message(
        &mut self,
        cx: &mut Context<'_>,
        sender: NodeId,
        message: Vec<u8>,
        stored: Option<UpdateId>,
    ) -> Read {
        if stored.is_some() && self.replica.as_ref().is_some_and(|replica| replica.doc.is_broken()) {
            // The node is about to be built again from storage (see `apply_update`), and reads
            // the message then: no cursor passed it, so its acceptor hands it over again.
            return Read::Held;
        }
        let mls = self.mls.as_mut().expect("invariant: only MLS groups receive application data");
        if mls.member.is_broken() {
            // The node is about to be built again from storage (see below) and reads it then.
            return Read::Held;
        }
        if let Some(page) = self.page_writes.as_mut() {
            page.decrypted = true;
        }
        let decrypted = match mls.member.decrypt(&message) {
            Ok(decrypted) => decrypted,
            Err(MlsError::Panicked) => {
                // openmls panicked on it, maybe halfway through advancing the ratchet: the
                // member writes nothing more and the node is built again from storage (see
                // `Device::handle`), without this message's ratchet step. So that it does not
                // meet the message again, a stored one counts as one it cannot decrypt: the
                // cursor passes it, its copies are skipped, and a snapshot that covers it
                // brings what it held, if another member could read it.
                cov_mark::hit!(device_refuses_a_message_its_mls_library_panicked_on);
                cx.reject(Rejection::Invalid);
                if let Some(id) = stored {
                    let epoch = mls.member.epoch();
                    self.want_compaction(cx, id, epoch);
                }
                return Read::Done;
            }
            Err(MlsError::FutureEpoch(epoch)) => {
                self.messages.hold_early(cx, epoch, sender, message, stored);
                return Read::Held;
            }
            Err(error) => {
                cx.reject(messages::rejection_of(&error));
                if let (MlsError::TooOld(epoch), Some(id)) = (&error, stored) {
                    self.want_compaction(cx, id, *epoch);
                }
                return Read::Done;
            }
        };
        // MLS authenticated the sender; a relaying acceptor's label is only a hint. (Reading
        // used the message's key, so a mislabelled copy is still read, under its true name.)
        let Ok(author) = decrypted.sender.as_slice().try_into().map(NodeId) else {
            cx.reject(Rejection::Invalid);
            return Read::Done;
        };
        if author != sender {
            cx.reject(Rejection::Invalid);
        }
        // Reading advances the receiving ratchet; keep the deletion of used keys durable (for a
        // page, once at its end).
        let mut records = if self.page_writes.is_some() { Vec::new() } else { mls.changes(cx.group, false) };
        let payload = Payload::decode(&decrypted.data);
        if decrypted.from_reader && (stored.is_some() || !matches!(payload, Some(Payload::CompactionWanted { .. }))) {
            // Acceptors relay a reader's messages only because it may ask for a compaction.
            cov_mark::hit!(device_refuses_a_relayed_message_a_reader_may_not_send);
            cx.persist(records);
            cx.reject(Rejection::Unauthorised);
            return Read::Done;
        }
        match (payload, stored) {
            (Some(Payload::Update { seq, update }), Some(label)) => {
                let id = UpdateId { sender: author, seq };
                if id != label {
                    cov_mark::hit!(device_reads_a_mislabelled_update_under_its_true_id);
                    cx.reject(Rejection::Invalid);
                }
                let size = update.len();
                let applied = self.apply_update(cx, id, update);
                let changed = applied.is_some();
                if changed {
                    self.note_uncovered(id, decrypted.epoch, size);
                }
                if let Some(page) = self.page_writes.as_mut() {
                    page.records.extend(applied);
                    page.changed.extend(changed.then_some(id));
                    return Read::Done;
                }
                // The app hears of it before the write: see `Event::waits_for_writes`.
                if changed {
                    cx.effects.notify(Event::DocumentChanged { group: cx.group, id });
                }
                records.extend(applied);
                cx.persist(records);
            }
            (Some(Payload::Presence(state)), None) if author == sender => {
                cx.persist(records);
                cx.effects.notify(Event::Presence { group: cx.group, sender, state });
            }
            (Some(Payload::CompactionWanted { before_epoch }), None) if author == sender => {
                cx.persist(records);
                self.on_compaction_wanted(cx, before_epoch);
            }
            (Some(Payload::Message(data)), None) if author == sender => {
                cx.persist(records);
                cx.effects.notify(Event::Message { group: cx.group, epoch: decrypted.epoch, sender, data });
            }
            // A payload sent down the wrong path, or relabelled by an acceptor.
            _ => {
                cx.persist(records);
                cx.reject(Rejection::Invalid);
            }
        }
        Read::Done
    }

    /// After the epoch may have changed or our pending commit was settled: read held messages
    /// that are now readable, and send what waited for the commit.
    pub(super) fn after_mls_change(&mut self, cx: &mut Context<'_>) {
        let Some(mls) = self.mls.as_ref() else { return };
        if !mls.member.is_active() {
            if !self.messages.take_outbox().is_empty() {
                cx.effects.notify(Event::CommandFailed { error: CommandError::NotAMember(cx.group) });
            }
            return;
        }
        let (epoch, settled) = (mls.member.epoch(), mls.pending.is_none());
        for (sender, message, stored) in self.messages.take_early(epoch) {
            self.read_message(cx, sender, message, stored);
        }
        if settled {
            let outbox = self.messages.take_outbox();
            if !outbox.is_empty() {
                self.seal_and_send(cx, outbox);
            }
            self.post_due(cx);
        }
    }
}
