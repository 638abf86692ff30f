//! The device node: a member of many groups, each with a learner and a proposer.

mod group;
mod invitations;
mod invites;
mod membership;
mod messages;
mod outbox;
mod proposer;
mod replica;
mod view;

use std::collections::{BTreeMap, BTreeSet};

use crate::acceptor::rejection_of;
use crate::config::ValidConfig;
use crate::context::Context;
use crate::deadlines::Deadlines;
use crate::ids::{GroupId, NodeId};
use crate::invite::Mailbox;
use crate::io::{Command, CommandError, Counters, Effects, Event, Input, Node, Outputs, Rejection};
use crate::log::{AcceptorSet, Entry, GroupGenesis};
use crate::rng::NodeRng;
use crate::storage::{Record, Restored, WriteBatch};
use crate::time::Time;
use crate::wire::{Envelope, decode};

use group::DeviceGroup;
use membership::{Intent, Membership};
pub use view::DeviceGroupView;

use crate::mls::{Identity, Joining, Member};

/// A device: proposes values and learns what is chosen, in many groups.
#[derive(Debug)]
pub struct Device {
    me: NodeId,
    /// Seeds the device's MLS signing key; the host keeps it with the node's other keys.
    identity_seed: [u8; 32],
    config: ValidConfig,
    rng: NodeRng,
    groups: BTreeMap<GroupId, DeviceGroup>,
    /// Key packages waiting for a Welcome (in memory: lost on restart; make a new one).
    joinings: Vec<Joining>,
    /// Invite codes being redeemed, durable (`Record::Redeeming`); their key packages count
    /// against `key_packages_max` too.
    invitations: invitations::Invitations,
    counters: Counters,
    /// Groups this input touched, whose entries below are recorded again before it returns.
    touched: BTreeSet<GroupId>,
    /// Each group's `wake_at`.
    deadlines: Deadlines,
    /// Groups with batches waiting for `Input::Flush` (`post_on_flush`).
    flushes_wanted: BTreeSet<GroupId>,
    /// Groups whose durable `SafeBelow` lags (`safe_mark_behind`).
    safe_marks_behind: BTreeSet<GroupId>,
}

impl Device {
    /// Builds a device from its durable state. `identity_seed` is the same at every boot (it is
    /// the device's MLS signing key); `seed` must differ between boots.
    pub fn new(config: ValidConfig, me: NodeId, identity_seed: [u8; 32], seed: u64, restored: Restored) -> (Device, Outputs) {
        let mut device = Device {
            me,
            identity_seed,
            config,
            rng: NodeRng::from_seed(seed),
            groups: BTreeMap::new(),
            joinings: Vec::new(),
            invitations: invitations::Invitations::default(),
            counters: Counters::default(),
            touched: BTreeSet::new(),
            deadlines: Deadlines::default(),
            flushes_wanted: BTreeSet::new(),
            safe_marks_behind: BTreeSet::new(),
        };
        for (id, state) in restored.groups {
            let mut key_values = state.mls.clone();
            let invites = invites::Invites::restore(&mut key_values);
            let joined_through = invitations::joined_through(&key_values);
            key_values.remove(invitations::JOINED_THROUGH_KEY);
            key_values.remove(group::confirming::DUTY_KEY);
            key_values.remove(replica::PEER_KEY);
            let mls = if state.genesis.is_mls() {
                let seed = device.mls_seed();
                Membership::restore(seed, device.identity(), key_values)
            } else {
                None
            };
            let replica = match mls.is_some() {
                true => {
                    let peer = device.rng.next_u64();
                    let out_of_order_max = device.config.updates_out_of_order_max;
                    replica::Replica::restore(Time::ZERO, me, peer, &state, out_of_order_max).ok()
                }
                false => None,
            };
            let mut group = DeviceGroup::restore(Time::ZERO, state, device.config.chosen_in_memory_max, mls);
            group.invites = invites;
            if let Some(mls) = group.mls.as_ref() {
                let pending = mls.pending.as_ref().and_then(|pending| pending.mailbox);
                let members = mls.member.members();
                group.invites.reopen_lost_adds(pending, |joiner| members.iter().any(|name| name.as_slice() == joiner.0));
            }
            group.joined_through = joined_through;
            if let Some((replica, refused)) = replica {
                (0..refused).for_each(|_| device.counters.count(Rejection::Invalid));
                group.replica = Some(replica);
            }
            device.groups.insert(id, group);
            device.touched.insert(id);
        }
        for redeeming in restored.redeeming.into_values() {
            // The same seed and identity make the same key package (the provider is seeded).
            match Joining::new(redeeming.key_seed, &device.identity()) {
                Ok(joining) => device.invitations.resume(redeeming, joining),
                Err(_) => device.counters.count(Rejection::Invalid),
            }
        }
        device.record_touched();
        let wake_at = device.wake_at();
        (device, Outputs { effects: Vec::new(), wake_at, wants_flush: false, rebuild_from_storage: false })
    }

    fn identity(&self) -> Identity {
        Identity::from_seed(self.identity_seed, &self.me.0)
    }

    /// Fresh randomness for one MLS provider, from the node's seeded RNG.
    fn mls_seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.rng.fill(&mut seed);
        seed
    }

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Counts of rejected input.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Read-only views of the groups, for checkers and status pages.
    pub fn groups(&self) -> impl Iterator<Item = DeviceGroupView<'_>> {
        self.groups.iter().map(|(id, group)| DeviceGroupView { id: *id, me: self.me, group })
    }

    /// A read-only view of one group.
    pub fn group(&self, id: GroupId) -> Option<DeviceGroupView<'_>> {
        self.groups.get(&id).map(|group| DeviceGroupView { id, me: self.me, group })
    }

    fn wake_at(&self) -> Option<Time> {
        crate::time::earliest(self.deadlines.earliest(), self.invitations.wake_at())
    }

    /// Group `id` and a context for it, noting that this input touched it.
    fn touch<'a>(&'a mut self, now: Time, id: GroupId, effects: &'a mut Effects) -> Option<(&'a mut DeviceGroup, Context<'a>)> {
        let group = self.groups.get_mut(&id)?;
        self.touched.insert(id);
        Some((group, Context::new(now, self.me, id, &self.config, &mut self.rng, &mut self.counters, effects)))
    }

    /// Records again the deadline and flags of every group this input touched.
    fn record_touched(&mut self) {
        for id in std::mem::take(&mut self.touched) {
            let Some(group) = self.groups.get(&id) else { continue };
            self.deadlines.set(id, group.wake_at());
            mark(&mut self.flushes_wanted, id, group.post_on_flush);
            mark(&mut self.safe_marks_behind, id, group.safe_mark_behind());
        }
        debug_assert!(
            self.groups.iter().all(|(id, group)| {
                self.deadlines.of(*id) == Some(group.wake_at())
                    && self.flushes_wanted.contains(id) == group.post_on_flush
                    && self.safe_marks_behind.contains(id) == group.safe_mark_behind()
            }),
            "invariant: every group an input changed was touched through `touch`"
        );
    }

    fn on_command(&mut self, now: Time, command: Command, effects: &mut Effects) {
        let result = match command {
            Command::OpenGroup { genesis } if genesis.is_mls() => Err(CommandError::NotOpaque(genesis.group_id())),
            Command::OpenGroup { genesis } => self.open_group(now, genesis, None, None, None, effects),
            Command::CreateGroup { acceptors, nonce, rotation_interval_ms } => {
                self.create_group(now, acceptors, nonce, rotation_interval_ms, effects)
            }
            Command::MakeKeyPackage => self.make_key_package(effects),
            Command::JoinGroup { genesis, welcome } => self.join_group(now, genesis, &welcome, effects),
            Command::AddMember { group, key_package } => self.intend(now, group, Intent::Add(key_package), effects),
            Command::RemoveMember { group, member } => self.intend(now, group, Intent::Remove(member), effects),
            Command::RotateKeys { group } => self.intend(now, group, Intent::Rotate, effects),
            Command::SetRole { group, member, role } => self.intend(now, group, Intent::SetRole(member, role), effects),
            Command::Propose { group, value } => self.propose(now, group, Entry::Value(value), effects),
            Command::SendMessage { group, data } => {
                self.send_message(now, group, crate::updates::Payload::Message(data), effects)
            }
            Command::SetPresence { group, state } => {
                self.send_message(now, group, crate::updates::Payload::Presence(state), effects)
            }
            Command::Edit { group, position, delete, insert } => self.edit(now, group, position, delete, &insert, effects),
            Command::CreateInvite { group, lifetime_ms, role } => self.create_invite(now, group, lifetime_ms, role, effects),
            Command::AcceptInvite { code, acceptors } => self.accept_invite(now, &code, acceptors, effects),
            Command::ChangeAcceptors { group, acceptors } => self.change_acceptors(now, group, acceptors, effects),
        };
        if let Err(error) = result {
            effects.notify(Event::CommandFailed { error });
        }
    }

    fn create_group(
        &mut self,
        now: Time,
        acceptors: AcceptorSet,
        nonce: u64,
        rotation_interval_ms: u64,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let mut mls_group_id = [0u8; 16];
        self.rng.fill(&mut mls_group_id);
        let identity = self.identity();
        let seed = self.mls_seed();
        let member = Member::create(seed, &identity, &mls_group_id, self.config.mls_past_epochs_max, rotation_interval_ms)
            .map_err(|error| CommandError::Mls(error.to_string()))?;
        let group_info = member.group_info(&identity).map_err(|error| CommandError::Mls(error.to_string()))?;
        let genesis = GroupGenesis { nonce, acceptors, proposers: vec![self.me], group_info: Some(group_info) };
        let membership = Membership::new(member, identity, mls_group_id.to_vec());
        self.open_group(now, genesis.clone(), Some(membership), None, None, effects)?;
        effects.notify(Event::GroupCreated { group: genesis.group_id(), genesis });
        Ok(())
    }

    fn make_key_package(&mut self, effects: &mut Effects) -> Result<(), CommandError> {
        let outstanding = self.joinings.len() + self.invitations.len();
        if outstanding >= self.config.key_packages_max {
            return Err(CommandError::TooManyKeyPackages(outstanding));
        }
        let seed = self.mls_seed();
        let joining = Joining::new(seed, &self.identity()).map_err(|error| CommandError::Mls(error.to_string()))?;
        effects.notify(Event::KeyPackage { key_package: joining.key_package.clone() });
        self.joinings.push(joining);
        Ok(())
    }

    fn join_group(
        &mut self,
        now: Time,
        genesis: GroupGenesis,
        welcome: &[u8],
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        if !genesis.is_mls() || !genesis.is_well_formed(self.config.acceptors_max, self.config.proposers_max) {
            return Err(CommandError::InvalidGenesis);
        }
        if self.groups.contains_key(&genesis.group_id()) {
            return Ok(());
        }
        for index in 0..self.joinings.len() {
            let joining = self.joinings.remove(index);
            match joining.join_with_extension(welcome, self.config.mls_past_epochs_max) {
                Ok((member, welcomed)) => {
                    let mls_group_id = member.group_id();
                    let membership = Membership::new(member, self.identity(), mls_group_id);
                    self.open_group(now, genesis.clone(), Some(membership), welcomed, None, effects)?;
                    effects.notify(Event::Joined { group: genesis.group_id(), genesis });
                    return Ok(());
                }
                Err(failed) => self.joinings.insert(index, failed.0),
            }
        }
        Err(CommandError::NoMatchingKeyPackage)
    }

    fn intend(&mut self, now: Time, id: GroupId, intent: Intent, effects: &mut Effects) -> Result<(), CommandError> {
        let (group, mut cx) = self.touch(now, id, effects).ok_or(CommandError::UnknownGroup(id))?;
        group.intend(&mut cx, intent)
    }

    fn open_group(
        &mut self,
        now: Time,
        genesis: GroupGenesis,
        mls: Option<Membership>,
        welcomed: Option<Vec<u8>>,
        carried: Option<group::Carried>,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        if !genesis.is_well_formed(self.config.acceptors_max, self.config.proposers_max) {
            return Err(CommandError::InvalidGenesis);
        }
        let id = genesis.group_id();
        if self.groups.contains_key(&id) {
            return Ok(());
        }
        if self.groups.len() >= self.config.groups_max {
            return Err(CommandError::TooManyGroups(self.groups.len()));
        }
        let mut cx = Context::new(now, self.me, id, &self.config, &mut self.rng, &mut self.counters, effects);
        let mut group = DeviceGroup::open(&mut cx, genesis, mls, carried);
        if let Some(bytes) = welcomed {
            group.adopt_welcomed_compaction(&mut cx, &bytes);
        }
        group.on_timer(&mut cx);
        self.groups.insert(id, group);
        self.touched.insert(id);
        Ok(())
    }

    fn create_invite(
        &mut self,
        now: Time,
        id: GroupId,
        lifetime_ms: u64,
        role: crate::mls::Role,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let (group, mut cx) = self.touch(now, id, effects).ok_or(CommandError::UnknownGroup(id))?;
        let code = group.create_invite(&mut cx, lifetime_ms, role)?;
        effects.notify(Event::InviteCreated { group: id, code: code.to_text(), uri: code.to_uri() });
        Ok(())
    }

    fn accept_invite(
        &mut self,
        now: Time,
        code: &str,
        acceptors: AcceptorSet,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let code = crate::invite::InviteCode::parse(code).map_err(|error| CommandError::InvalidInvite(error.to_string()))?;
        if !acceptors.is_well_formed(self.config.acceptors_max) {
            return Err(CommandError::InvalidGenesis);
        }
        if self.invitations.contains(&code.mailbox) {
            return Ok(());
        }
        let outstanding = self.joinings.len() + self.invitations.len();
        if outstanding >= self.config.key_packages_max {
            return Err(CommandError::TooManyKeyPackages(outstanding));
        }
        let seed = self.mls_seed();
        let joining = Joining::new(seed, &self.identity()).map_err(|error| CommandError::Mls(error.to_string()))?;
        let mut cx = Context::new(now, self.me, invites::NO_GROUP, &self.config, &mut self.rng, &mut self.counters, effects);
        self.invitations.accept(&mut cx, &code, acceptors, seed, joining);
        Ok(())
    }

    /// A mailbox's contents for an invite this device is redeeming.
    fn on_invitation(&mut self, now: Time, from: NodeId, message: crate::wire::Message, effects: &mut Effects) {
        let mut cx = Context::new(now, self.me, invites::NO_GROUP, &self.config, &mut self.rng, &mut self.counters, effects);
        let (mailbox, key_package, welcome) = match message {
            crate::wire::Message::MailboxContents { mailbox, key_package, welcome } => (mailbox, key_package, welcome),
            crate::wire::Message::MailboxUnknown { mailbox } => {
                if self.invitations.on_unknown(&mut cx, from, mailbox) {
                    cov_mark::hit!(joiner_hears_no_acceptor_holds_its_mailbox);
                    effects.notify(Event::InviteUnknown { mailbox });
                }
                return;
            }
            _ => return,
        };
        let (genesis, welcome) = match self.invitations.on_contents(&mut cx, from, mailbox, key_package, welcome) {
            invitations::Redeemed::Waiting => return,
            invitations::Redeemed::Spent => {
                cov_mark::hit!(joiner_finds_its_invite_already_used);
                let error = CommandError::InvalidInvite("the code was already used".into());
                return effects.notify(Event::CommandFailed { error });
            }
            invitations::Redeemed::Welcome { genesis, welcome } => (genesis, welcome),
        };
        if !genesis.is_mls() || !genesis.is_well_formed(self.config.acceptors_max, self.config.proposers_max) {
            return self.counters.count(Rejection::Invalid);
        }
        let past_epochs = self.config.mls_past_epochs_max;
        let joined = self.invitations.try_join(&mailbox, |joining| {
            joining.join_with_extension(&welcome, past_epochs).map_err(|failed| Box::new(failed.0))
        });
        let Some((member, welcomed)) = joined else { return self.counters.count(Rejection::Invalid) };
        let result = self.open_welcomed(now, genesis, mailbox, member, welcomed, effects);
        // The key package is spent whatever happened: the invitation is over, and goes from disk
        // after the group's own records.
        effects.persist(WriteBatch { records: vec![Record::Redeeming { mailbox, redeeming: None }] });
        if let Err(error) = result {
            effects.notify(Event::CommandFailed { error });
        }
    }

    /// Drops a group this device was removed from, in memory, so that it can join it again
    /// from a Welcome; returns what the new membership must keep, and how many of its own
    /// messages go: those written after the removal (the acceptors refused them) or not stored
    /// by a quorum before it, which the group does not hold. The disk forgets it in the same
    /// batch as the new membership's records (`DeviceGroup::open`), so that a crash cannot
    /// leave it forgotten without what it must keep.
    fn forget(&mut self, id: GroupId) -> Option<(group::Carried, usize)> {
        let group = self.groups.remove(&id)?;
        cov_mark::hit!(removed_device_forgets_the_group_to_join_it_again);
        self.deadlines.remove(id);
        self.flushes_wanted.remove(&id);
        self.safe_marks_behind.remove(&id);
        self.touched.remove(&id);
        let unsafe_dropped = group.replica.as_ref().map_or(0, |replica| replica.outbox.unsafe_count());
        Some((group.carried(self.me), unsafe_dropped))
    }

    /// Opens the group a Welcome put this device in, if the genesis an acceptor gave is that
    /// group's.
    fn open_welcomed(
        &mut self,
        now: Time,
        genesis: GroupGenesis,
        mailbox: Mailbox,
        member: Member,
        welcomed: Option<Vec<u8>>,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let mls_group_id = member.group_id();
        if !genesis_names(&genesis, &mls_group_id) {
            // The genesis comes from the acceptor, the Welcome from the admin: they must agree.
            cov_mark::hit!(joiner_refuses_a_genesis_that_is_not_the_welcomes);
            self.counters.count(Rejection::Invalid);
            return Err(CommandError::InvalidInvite("an acceptor sent a genesis that does not match the Welcome".into()));
        }
        let id = genesis.group_id();
        let held = self.groups.get(&id).map(|group| group.mls.as_ref());
        // A group held as a member at the Welcome's epoch or later is this same joining seen
        // again (a restart between joining and deleting the invitation). Held otherwise, this
        // device was removed (whether or not it has heard yet) and an admin added it again.
        let is_joined = held.flatten().is_some_and(|mls| mls.member.is_active() && mls.member.epoch() >= member.epoch());
        if is_joined {
            cov_mark::hit!(joiner_welcomed_into_a_group_it_already_holds);
        } else {
            match held {
                Some(Some(mls)) if mls.member.is_active() => cov_mark::hit!(welcomed_back_before_hearing_of_its_removal),
                Some(_) => cov_mark::hit!(welcomed_back_after_hearing_of_its_removal),
                None => {}
            }
            let forgotten = held.is_some().then(|| self.forget(id)).flatten();
            cov_mark::hit!(joiner_joins_through_an_invite);
            let membership = Membership::new(member, self.identity(), mls_group_id);
            let carried = forgotten.map(|(carried, _)| carried);
            self.open_group(now, genesis.clone(), Some(membership), welcomed, carried, effects)?;
            if let Some((_, unsafe_dropped)) = forgotten {
                effects.notify(Event::GroupForgotten { group: id, unsafe_dropped });
            }
        }
        let (group, mut cx) = self.touch(now, id, effects).expect("invariant: the group is held, opened above or before");
        group.joined_through = Some(mailbox);
        let key = invitations::JOINED_THROUGH_KEY.to_vec();
        cx.persist(vec![Record::MlsState { group: id, key, value: Some(mailbox.0.to_vec()) }]);
        effects.notify(Event::Joined { group: id, genesis });
        Ok(())
    }

    /// In an MLS group, a commit to its settings (admins only); otherwise a log entry.
    fn change_acceptors(
        &mut self,
        now: Time,
        id: GroupId,
        acceptors: AcceptorSet,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let limit = self.config.acceptors_max.min(crate::mls::roles::SETTINGS_ACCEPTORS_MAX);
        if !acceptors.is_well_formed(limit) {
            return Err(CommandError::InvalidGenesis);
        }
        let group = self.groups.get(&id).ok_or(CommandError::UnknownGroup(id))?;
        if group.mls.is_some() {
            self.intend(now, id, Intent::SetAcceptors(acceptors), effects)
        } else {
            self.propose(now, id, Entry::SetAcceptors(acceptors), effects)
        }
    }

    fn send_message(
        &mut self,
        now: Time,
        id: GroupId,
        payload: crate::updates::Payload,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let (group, mut cx) = self.touch(now, id, effects).ok_or(CommandError::UnknownGroup(id))?;
        group.send_message(&mut cx, payload)
    }

    fn edit(
        &mut self,
        now: Time,
        id: GroupId,
        position: usize,
        delete: usize,
        insert: &str,
        effects: &mut Effects,
    ) -> Result<(), CommandError> {
        let (group, mut cx) = self.touch(now, id, effects).ok_or(CommandError::UnknownGroup(id))?;
        let edited = group.edit(&mut cx, position, delete, insert);
        group.quicken_syncs_on_news(&cx);
        edited
    }

    fn propose(&mut self, now: Time, id: GroupId, entry: Entry, effects: &mut Effects) -> Result<(), CommandError> {
        let (group, mut cx) = self.touch(now, id, effects).ok_or(CommandError::UnknownGroup(id))?;
        group.propose(&mut cx, entry)
    }

    fn on_frame(&mut self, now: Time, from: NodeId, frame: &[u8], effects: &mut Effects) {
        let Envelope { group: id, message } = match decode(frame, self.config.message_bytes_max) {
            Ok(envelope) => envelope,
            Err(error) => return self.counters.count(rejection_of(&error)),
        };
        if let crate::wire::Message::MailboxContents { mailbox, .. } | crate::wire::Message::MailboxUnknown { mailbox } = &message
            && self.invitations.contains(mailbox)
        {
            return self.on_invitation(now, from, message, effects);
        }
        if !self.groups.contains_key(&id) {
            return self.counters.count(Rejection::UnknownGroup);
        }
        let Some((group, mut cx)) = self.touch(now, id, effects) else { return };
        group.on_message(&mut cx, from, message);
        group.quicken_syncs_on_news(&cx);
    }

    /// Posts the batches closed since the last flush.
    fn on_flush(&mut self, now: Time, effects: &mut Effects) {
        for id in self.flushes_wanted.clone() {
            let Some((group, mut cx)) = self.touch(now, id, effects) else { continue };
            group.post_on_flush = false;
            group.post_due(&mut cx);
        }
    }

    /// Each group's lagging `SafeBelow` goes with this input's writes, or alone once due.
    fn write_safe_marks(&mut self, now: Time, effects: &mut Effects) {
        let writing = effects.persists() > 0;
        for id in self.safe_marks_behind.clone() {
            let Some((group, mut cx)) = self.touch(now, id, effects) else { continue };
            group.write_safe_mark(&mut cx, writing);
        }
    }

    /// A link to `peer` is up again: every group it is an acceptor of syncs now.
    fn on_link_up(&mut self, now: Time, peer: NodeId, effects: &mut Effects) {
        let ids: Vec<GroupId> =
            self.groups.iter().filter(|(_, group)| group.acceptors().contains(peer)).map(|(id, _)| *id).collect();
        for id in ids {
            let Some((group, cx)) = self.touch(now, id, effects) else { continue };
            group.sync_soon(&cx);
        }
    }

    fn on_timer(&mut self, now: Time, effects: &mut Effects) {
        if self.invitations.wake_at().is_some_and(|at| at <= now) {
            let mut cx = Context::new(now, self.me, invites::NO_GROUP, &self.config, &mut self.rng, &mut self.counters, effects);
            for error in self.invitations.on_timer(&mut cx) {
                effects.notify(Event::CommandFailed { error });
            }
        }
        for id in self.deadlines.due(now) {
            let Some((group, mut cx)) = self.touch(now, id, effects) else { continue };
            group.on_timer(&mut cx);
        }
    }
}

/// Whether the genesis's GroupInfo is for the MLS group `mls_group_id`.
fn genesis_names(genesis: &GroupGenesis, mls_group_id: &[u8]) -> bool {
    let view = genesis.group_info.as_ref().and_then(|info| crate::mls::PublicView::from_group_info(info).ok());
    view.is_some_and(|view| view.group_id() == mls_group_id)
}

impl Node for Device {
    fn handle(&mut self, now: Time, input: Input) -> Outputs {
        let mut effects = Effects::default();
        match input {
            Input::Command(command) => self.on_command(now, command, &mut effects),
            Input::Received { from, frame } => self.on_frame(now, from, &frame, &mut effects),
            Input::Timer => self.on_timer(now, &mut effects),
            Input::Loaded { .. } => self.counters.count(Rejection::Invalid),
            Input::Flush => self.on_flush(now, &mut effects),
            Input::LinkUp { peer } => self.on_link_up(now, peer, &mut effects),
        }
        if self.touched.iter().any(|id| self.groups.get(id).is_some_and(DeviceGroup::mls_is_broken)) {
            // openmls panicked inside a member's call (contained): its memory is not to be
            // trusted, and it wrote none of it (see `Member`).
            cov_mark::hit!(device_rebuilds_after_its_mls_library_panicked);
            effects.rebuild_from_storage = true;
        }
        // Groups whose `SafeBelow` began to lag in this input write it with its writes too.
        self.record_touched();
        self.write_safe_marks(now, &mut effects);
        self.record_touched();
        Outputs {
            effects: effects.list,
            wake_at: self.wake_at(),
            wants_flush: !self.flushes_wanted.is_empty(),
            rebuild_from_storage: effects.rebuild_from_storage,
        }
    }
}

/// Puts `id` in `set` or takes it out.
fn mark(set: &mut BTreeSet<GroupId>, id: GroupId, member: bool) {
    if member {
        set.insert(id);
    } else {
        set.remove(&id);
    }
}
