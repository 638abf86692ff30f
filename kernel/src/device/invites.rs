//! The inviting side of invite codes, per group on an admin device.
//!
//! An invite moves through stages, each persisted with the group's key-value state so a restart
//! resumes it:
//!
//! ```text
//!   Open --valid key package in the mailbox--> Adding --our add commit chosen--> Welcomed
//!   (any stage) --lifetime over--> deleted
//! ```
//!
//! While `Open`, the device keeps (re)opening the mailbox at every acceptor and polls it. A key
//! package counts only with a valid MAC under the code's secret, and only the first one does:
//! the code works once. While `Welcomed`, it posts the Welcome until a quorum of acceptors hold
//! it, so a joiner that is offline now finds it later; and, if the invite's role is not the one
//! the joiner holds already (the default, `Writer`, unless it is a member invited back after a
//! removal), its role is pending until a commit puts it in force (see [`Invites::roles_due`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::ids::{GroupId, NodeId};
use crate::invite::{InviteCode, MAILBOX_BYTES, Mailbox, node_named_by};
use crate::io::{CommandError, Rejection};
use crate::log::AcceptorSet;
use crate::mls::Role;
use crate::mls::roles::Roles;
use crate::storage::Record;
use crate::time::Time;
use crate::wire::Message;

/// Keys of invites in a group's key-value state (openmls never writes keys starting 0xff).
pub(crate) const KEY_PREFIX: &[u8] = b"\xffplait/invite/";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    Open,
    /// Our commit adding `joiner` (the node its key package names) is on its way.
    Adding {
        joiner: NodeId,
    },
    /// `joiner` is in; `role_pending` until the invite's role is in force.
    Welcomed {
        welcome: Vec<u8>,
        held_by: BTreeSet<NodeId>,
        joiner: NodeId,
        role_pending: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Invite {
    code: InviteCode,
    /// By this device's clock.
    expires_at: Time,
    /// What the acceptors are told (they apply it by their own clocks).
    lifetime_ms: u64,
    /// The role the joiner ends with.
    role: Role,
    stage: Stage,
}

/// The open invites of one group.
#[derive(Debug, Default)]
pub(crate) struct Invites {
    invites: BTreeMap<Mailbox, Invite>,
}

impl Invites {
    /// Rebuilds the invites from the group's durable key-value state, taking their keys out.
    pub(crate) fn restore(state: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> Invites {
        let keys: Vec<Vec<u8>> =
            state.range(KEY_PREFIX.to_vec()..).take_while(|(k, _)| k.starts_with(KEY_PREFIX)).map(|(k, _)| k.clone()).collect();
        let mut invites = BTreeMap::new();
        for key in keys {
            let value = state.remove(&key).expect("listed above");
            let Ok(id) = <[u8; MAILBOX_BYTES]>::try_from(&key[KEY_PREFIX.len()..]) else { continue };
            if let Ok(invite) = postcard::from_bytes::<Invite>(&value) {
                invites.insert(Mailbox(id), invite);
            }
        }
        Invites { invites }
    }

    /// After a restart: an invite whose joiner's key package was taken (`Adding`) but whose add
    /// commit is neither pending (`pending`: the invite of the commit that is) nor applied (the
    /// joiner is not a member, by `is_member`) lost its add with the restart, since the proposal
    /// queue is in memory. It is open again: the mailbox still holds the key package, which is
    /// taken again and added. (Until 2026-12-07 such an invite stayed `Adding` for good, and its
    /// joiner waited for ever.) Not written: a restart before it is taken again does the same.
    pub(crate) fn reopen_lost_adds(&mut self, pending: Option<Mailbox>, is_member: impl Fn(NodeId) -> bool) {
        for (mailbox, invite) in &mut self.invites {
            if let Stage::Adding { joiner } = invite.stage
                && pending != Some(*mailbox)
                && !is_member(joiner)
            {
                cov_mark::hit!(admin_takes_a_key_package_again_after_losing_its_add);
                invite.stage = Stage::Open;
            }
        }
    }

    /// Opens a new invite whose joiner ends with `role`; returns its code.
    pub(crate) fn create(
        &mut self,
        cx: &mut Context<'_>,
        acceptors: &AcceptorSet,
        lifetime_ms: u64,
        role: Role,
    ) -> Result<InviteCode, CommandError> {
        if self.invites.len() >= cx.config.invites_max {
            return Err(CommandError::TooManyInvites(self.invites.len()));
        }
        if lifetime_ms == 0 || lifetime_ms > cx.config.invite_lifetime_ms_max {
            let limit = cx.config.invite_lifetime_ms_max;
            return Err(CommandError::InvalidInvite(format!("a lifetime of {lifetime_ms} ms is outside 1..={limit}")));
        }
        let code = InviteCode::generate(cx.rng);
        let expires_at = cx.now.plus_ms(lifetime_ms);
        let invite = Invite { code: code.clone(), expires_at, lifetime_ms, role, stage: Stage::Open };
        self.store(cx, code.mailbox, invite);
        cx.send_all(acceptors.members(), &Message::OpenMailbox { mailbox: code.mailbox, lifetime_ms });
        Ok(code)
    }

    /// Periodic work: drop expired invites, keep mailboxes open and polled, keep posting Welcomes.
    pub(crate) fn on_timer(&mut self, cx: &mut Context<'_>, acceptors: &AcceptorSet) {
        let expired: Vec<Mailbox> = self.invites.iter().filter(|(_, i)| i.expires_at <= cx.now).map(|(m, _)| *m).collect();
        for mailbox in expired {
            self.invites.remove(&mailbox);
            cx.persist(vec![Record::MlsState { group: cx.group, key: key_of(mailbox), value: None }]);
        }
        for (mailbox, invite) in &self.invites {
            match &invite.stage {
                Stage::Open => {
                    // The remaining lifetime, so a reopened mailbox does not outlive the invite.
                    let lifetime_ms = invite.expires_at.since(cx.now);
                    cx.send_all(acceptors.members(), &Message::OpenMailbox { mailbox: *mailbox, lifetime_ms });
                    cx.send_all(acceptors.members(), &Message::FetchMailbox { mailbox: *mailbox });
                }
                Stage::Adding { .. } => {}
                Stage::Welcomed { welcome, held_by, .. } => {
                    if !acceptors.is_quorum(held_by.iter()) {
                        let missing: Vec<NodeId> = acceptors.members().iter().copied().filter(|a| !held_by.contains(a)).collect();
                        cx.send_all(&missing, &Message::PostWelcome { mailbox: *mailbox, welcome: welcome.clone() });
                    }
                }
            }
        }
    }

    /// What an acceptor's mailbox holds. Returns the key package to add, if it is the first
    /// valid one for an open invite.
    pub(crate) fn on_contents(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        mailbox: Mailbox,
        key_package: Option<(Vec<u8>, [u8; 32])>,
        holds_welcome: bool,
    ) -> Option<Vec<u8>> {
        let Some(invite) = self.invites.get_mut(&mailbox) else {
            cx.reject(Rejection::Duplicate);
            return None;
        };
        match &mut invite.stage {
            Stage::Open => {
                let (key_package, mac) = key_package?;
                if invite.expires_at <= cx.now {
                    cx.reject(Rejection::Expired);
                    return None;
                }
                if !invite.code.verify(&key_package, &mac) {
                    // Someone who knows only the mailbox (an acceptor, say) cannot join.
                    cov_mark::hit!(admin_refuses_a_key_package_without_the_codes_mac);
                    cx.reject(Rejection::Unauthorised);
                    return None;
                }
                let Some(joiner) = node_named_by(&key_package) else {
                    // Every Plait device's credential names its node; this one cannot be a device.
                    cx.reject(Rejection::Invalid);
                    return None;
                };
                let invite = Invite { stage: Stage::Adding { joiner }, ..invite.clone() };
                self.store(cx, mailbox, invite);
                Some(key_package)
            }
            Stage::Welcomed { held_by, .. } if holds_welcome => {
                held_by.insert(from);
                None
            }
            Stage::Adding { .. } | Stage::Welcomed { .. } => None,
        }
    }

    /// Our commit adding the invite's joiner was chosen: post its Welcome, and note the role
    /// still to give it unless `roles` (those in force) give it already.
    pub(crate) fn on_welcome(
        &mut self,
        cx: &mut Context<'_>,
        acceptors: &AcceptorSet,
        roles: &Roles,
        mailbox: Mailbox,
        welcome: Vec<u8>,
    ) {
        let Some(invite) = self.invites.get(&mailbox) else { return };
        // Only `Adding` leads to an add commit for this mailbox (see `on_contents`).
        let Stage::Adding { joiner } = invite.stage else { return };
        // A new member's role is the default (`Writer`) unless it was a member before: a role
        // outlives a removal, so one invited back as a writer may still hold another.
        let role_pending = roles.of(&joiner.0) != invite.role;
        let stage = Stage::Welcomed { welcome: welcome.clone(), held_by: BTreeSet::new(), joiner, role_pending };
        let invite = Invite { stage, ..invite.clone() };
        self.store(cx, mailbox, invite);
        cx.send_all(acceptors.members(), &Message::PostWelcome { mailbox, welcome });
    }

    /// `(mailbox, joiner, role)` for every added joiner whose invite's role is not known to be in
    /// force yet, in mailbox order. Kept durably, so a restart does not forget them.
    pub(crate) fn roles_due(&self) -> Vec<(Mailbox, NodeId, Role)> {
        let due = self.invites.iter().filter_map(|(mailbox, invite)| match invite.stage {
            Stage::Welcomed { joiner, role_pending: true, .. } => Some((*mailbox, joiner, invite.role)),
            _ => None,
        });
        due.collect()
    }

    /// The role of the invite with `mailbox` needs no more work (it is in force, or this device
    /// can no longer give it).
    pub(crate) fn role_settled(&mut self, cx: &mut Context<'_>, mailbox: Mailbox) {
        let Some(invite) = self.invites.get(&mailbox) else { return };
        let Stage::Welcomed { welcome, held_by, joiner, role_pending: true } = &invite.stage else { return };
        let stage = Stage::Welcomed { welcome: welcome.clone(), held_by: held_by.clone(), joiner: *joiner, role_pending: false };
        let invite = Invite { stage, ..invite.clone() };
        self.store(cx, mailbox, invite);
    }

    /// Whether an invite still needs the sync rounds: its mailbox is polled for a joiner, or its
    /// Welcome is not held by a quorum yet.
    pub(crate) fn need_rounds(&self, acceptors: &AcceptorSet) -> bool {
        self.invites.values().any(|invite| match &invite.stage {
            Stage::Open => true,
            Stage::Adding { .. } => false,
            Stage::Welcomed { held_by, .. } => !acceptors.is_quorum(held_by.iter()),
        })
    }

    /// When the next invite expires.
    pub(crate) fn wake_at(&self) -> Option<Time> {
        self.invites.values().map(|invite| invite.expires_at).min()
    }

    fn store(&mut self, cx: &mut Context<'_>, mailbox: Mailbox, invite: Invite) {
        let value = postcard::to_allocvec(&invite).expect("invariant: invites encode");
        cx.persist(vec![Record::MlsState { group: cx.group, key: key_of(mailbox), value: Some(value) }]);
        self.invites.insert(mailbox, invite);
    }
}

fn key_of(mailbox: Mailbox) -> Vec<u8> {
    [KEY_PREFIX, &mailbox.0].concat()
}

/// The envelope group a joiner uses before it knows the group (acceptors ignore it).
pub(crate) const NO_GROUP: GroupId = GroupId([0; 16]);
