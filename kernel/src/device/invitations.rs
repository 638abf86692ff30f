//! The joining side of invite codes, on a device that is not in the group yet.
//!
//! The joiner makes a key package, MACs it with the code's secret and posts it to the mailbox at
//! every acceptor it was given, then polls until one of them holds a Welcome. It retries on its
//! timer, so either side may be offline at any time until the invite's lifetime is over.
//!
//! Each invitation is durable (`Record::Redeeming`) before its key package leaves: the code, the
//! acceptors, and the seed the key package is made from. A joiner that restarts before its
//! Welcome makes the same key package again and goes on; before, its private keys were in memory
//! only, and an admin that added the old key package meanwhile made a Welcome nobody could open
//! (the code works once, so the joiner needed a new one).

use std::collections::BTreeMap;

use crate::context::Context;
use crate::ids::NodeId;
use crate::invite::{InviteCode, Mailbox, Redeeming};
use crate::io::{CommandError, Rejection};
use crate::log::{AcceptorSet, GroupGenesis};
use crate::mls::Joining;
use crate::storage::Record;
use crate::time::Time;
use crate::wire::Message;

/// The key, in a group's key-value state, of the mailbox of the code this device joined it
/// through (openmls never writes keys starting 0xff).
pub(crate) const JOINED_THROUGH_KEY: &[u8] = b"\xffplait/joined-through";

/// The mailbox a group's key-value state says this device joined it through.
pub(crate) fn joined_through(state: &BTreeMap<Vec<u8>, Vec<u8>>) -> Option<Mailbox> {
    Some(Mailbox(state.get(JOINED_THROUGH_KEY)?.as_slice().try_into().ok()?))
}

/// One invite being redeemed.
#[derive(Debug)]
struct Invitation {
    acceptors: AcceptorSet,
    joining: Joining,
    mac: [u8; 32],
    started_at: Time,
    next_try_at: Time,
    /// Whether an acceptor showed it holds our key package (then we only poll).
    posted: bool,
    /// The acceptors whose latest answer was that they hold no such mailbox.
    unknown_at: std::collections::BTreeSet<NodeId>,
}

/// What a mailbox's contents mean for an invitation.
pub(crate) enum Redeemed {
    /// Not yet.
    Waiting,
    /// The Welcome is there: join with [`Invitations::try_join`].
    Welcome { genesis: GroupGenesis, welcome: Vec<u8> },
    /// Someone else's key package took the mailbox: the code was used.
    Spent,
}

/// Invites this device is redeeming.
#[derive(Debug, Default)]
pub(crate) struct Invitations {
    by_mailbox: BTreeMap<Mailbox, Invitation>,
}

impl Invitations {
    /// How many are outstanding.
    pub(crate) fn len(&self) -> usize {
        self.by_mailbox.len()
    }

    /// Whether `mailbox` belongs to one of ours.
    pub(crate) fn contains(&self, mailbox: &Mailbox) -> bool {
        self.by_mailbox.contains_key(mailbox)
    }

    /// Starts redeeming `code` with the key package made from `key_seed` (`joining`): durable
    /// first, then posted.
    pub(crate) fn accept(
        &mut self,
        cx: &mut Context<'_>,
        code: &InviteCode,
        acceptors: AcceptorSet,
        key_seed: [u8; 32],
        joining: Joining,
    ) {
        let redeeming = Redeeming { code: code.clone(), acceptors, key_seed, started_at: cx.now };
        cx.persist(vec![Record::Redeeming { mailbox: code.mailbox, redeeming: Some(redeeming.clone()) }]);
        self.resume(redeeming, joining);
        self.on_timer(cx);
    }

    /// Goes on redeeming a code after a restart, with the key package `redeeming.key_seed` makes
    /// (`joining`); it is posted again at the next timer (an acceptor that holds it says so).
    pub(crate) fn resume(&mut self, redeeming: Redeeming, joining: Joining) {
        let Redeeming { code, acceptors, key_seed: _, started_at } = redeeming;
        let mac = code.mac(&joining.key_package);
        let unknown_at = std::collections::BTreeSet::new();
        let invitation = Invitation { acceptors, joining, mac, started_at, next_try_at: started_at, posted: false, unknown_at };
        self.by_mailbox.insert(code.mailbox, invitation);
    }

    /// Stops redeeming the code of `mailbox` (the device got in, or the code is no use), and
    /// deletes it from disk.
    pub(crate) fn forget(&mut self, cx: &mut Context<'_>, mailbox: &Mailbox) {
        if self.by_mailbox.remove(mailbox).is_some() {
            cx.persist(vec![Record::Redeeming { mailbox: *mailbox, redeeming: None }]);
        }
    }

    /// When to try again next.
    pub(crate) fn wake_at(&self) -> Option<Time> {
        self.by_mailbox.values().map(|i| i.next_try_at).min()
    }

    /// Posts and polls what is due; gives up on invitations older than the longest lifetime.
    pub(crate) fn on_timer(&mut self, cx: &mut Context<'_>) -> Vec<CommandError> {
        let lifetime = cx.config.invite_lifetime_ms_max;
        let now = cx.now;
        let over: Vec<Mailbox> =
            self.by_mailbox.iter().filter(|(_, i)| now.since(i.started_at) >= lifetime).map(|(mailbox, _)| *mailbox).collect();
        for mailbox in &over {
            self.forget(cx, mailbox);
        }
        let expired = vec![CommandError::InviteExpired; over.len()];
        for (mailbox, invitation) in self.by_mailbox.iter_mut().filter(|(_, i)| i.next_try_at <= now) {
            if !invitation.posted {
                let post = Message::PostKeyPackage {
                    mailbox: *mailbox,
                    key_package: invitation.joining.key_package.clone(),
                    mac: invitation.mac,
                };
                cx.send_all(invitation.acceptors.members(), &post);
            }
            cx.send_all(invitation.acceptors.members(), &Message::FetchMailbox { mailbox: *mailbox });
            invitation.next_try_at = cx.now.plus_ms(cx.config.sync_interval_ms);
        }
        expired
    }

    /// A mailbox's contents from one of the acceptors we were given.
    pub(crate) fn on_contents(
        &mut self,
        cx: &mut Context<'_>,
        from: NodeId,
        mailbox: Mailbox,
        key_package: Option<(Vec<u8>, [u8; 32])>,
        welcome: Option<(GroupGenesis, Vec<u8>)>,
    ) -> Redeemed {
        let Some(invitation) = self.by_mailbox.get_mut(&mailbox) else { return Redeemed::Waiting };
        if !invitation.acceptors.contains(from) {
            cx.reject(Rejection::Unauthorised);
            return Redeemed::Waiting;
        }
        invitation.unknown_at.remove(&from);
        match key_package {
            Some((posted, _)) if posted == invitation.joining.key_package => invitation.posted = true,
            Some(_) => {
                self.forget(cx, &mailbox);
                return Redeemed::Spent;
            }
            None => return Redeemed::Waiting,
        }
        match welcome {
            Some((genesis, welcome)) => Redeemed::Welcome { genesis, welcome },
            None => Redeemed::Waiting,
        }
    }

    /// An acceptor we were given holds no such mailbox. Whether every one of them now says so
    /// (their latest answers); the invitation goes on either way, since a mailbox may yet be
    /// opened (the admin's open may still be on its way): the host decides how long to believe it.
    pub(crate) fn on_unknown(&mut self, cx: &mut Context<'_>, from: NodeId, mailbox: Mailbox) -> bool {
        let Some(invitation) = self.by_mailbox.get_mut(&mailbox) else { return false };
        if !invitation.acceptors.contains(from) {
            cx.reject(Rejection::Unauthorised);
            return false;
        }
        invitation.unknown_at.insert(from);
        invitation.acceptors.members().iter().all(|acceptor| invitation.unknown_at.contains(acceptor))
    }

    /// Joins with the invitation's key package; if `join` gives it back (the Welcome did not
    /// work), the invitation stays outstanding. Once it worked the invitation is over, but the
    /// caller deletes it from disk ([`Record::Redeeming`] with `None`) only after the group's
    /// own records, so that a crash in between resumes it.
    pub(crate) fn try_join<T>(&mut self, mailbox: &Mailbox, join: impl FnOnce(Joining) -> Result<T, Box<Joining>>) -> Option<T> {
        let invitation = self.by_mailbox.remove(mailbox)?;
        let Invitation { acceptors, joining, mac, started_at, next_try_at, posted, unknown_at } = invitation;
        match join(joining) {
            Ok(joined) => Some(joined),
            Err(joining) => {
                let invitation = Invitation { acceptors, joining: *joining, mac, started_at, next_try_at, posted, unknown_at };
                self.by_mailbox.insert(*mailbox, invitation);
                None
            }
        }
    }
}
