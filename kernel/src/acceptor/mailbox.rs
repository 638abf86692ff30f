//! Invite mailboxes: where a joiner and an admin meet without being online together.
//!
//! An admin device opens a mailbox (named by an invite code) at each acceptor of its group. The
//! joiner posts its key package there, with a MAC only the code's secret can make; the admin
//! fetches it, checks the MAC, adds the joiner and posts the Welcome; the joiner fetches that.
//! An acceptor learns nothing secret: the MAC key never leaves devices and the Welcome is
//! encrypted to the joiner.
//!
//! Rules: only an admin of the group opens a mailbox or posts a Welcome; a mailbox takes one key
//! package (the first; later posts are refused: codes work once); it is deleted when it expires
//! by this acceptor's clock; posts and fetches from anyone but the group's members are
//! rate-limited per peer. Mailboxes are stored
//! with the group's other key-value state (`Record::MlsState`, under a reserved key prefix).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::acceptor::AcceptorGroup;
use crate::config::ValidConfig;
use crate::context::Context;
use crate::ids::{GroupId, NodeId};
use crate::invite::{MAILBOX_BYTES, Mailbox, node_named_by};
use crate::io::{Counters, Effects, Rejection};
use crate::rng::NodeRng;
use crate::storage::Record;
use crate::time::Time;
use crate::wire::Message;

/// Keys of mailboxes in a group's key-value state (openmls never writes keys starting 0xff).
const KEY_PREFIX: &[u8] = b"\xffplait/mailbox/";

/// The rate limit's window.
const RATE_WINDOW_MS: u64 = 1_000;

/// One mailbox as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Contents {
    opened_by: NodeId,
    expires_at: Time,
    key_package: Option<(Vec<u8>, [u8; 32])>,
    welcome: Option<Vec<u8>>,
}

/// Every mailbox this acceptor holds, and the request rates of peers.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes {
    boxes: BTreeMap<Mailbox, (GroupId, Contents)>,
    /// Per peer: the start of its current window and the requests in it.
    rates: BTreeMap<NodeId, (Time, u32)>,
}

/// The node-level state a mailbox request may touch.
pub(crate) struct Node<'a> {
    pub(crate) now: Time,
    pub(crate) me: NodeId,
    pub(crate) config: &'a ValidConfig,
    pub(crate) rng: &'a mut NodeRng,
    pub(crate) counters: &'a mut Counters,
    pub(crate) effects: &'a mut Effects,
}

impl Node<'_> {
    fn context(&mut self, group: GroupId) -> Context<'_> {
        Context::new(self.now, self.me, group, self.config, self.rng, self.counters, self.effects)
    }
}

/// Whether a message is about a mailbox (routed here, not to a group).
pub(crate) fn is_mailbox_message(message: &Message) -> bool {
    matches!(
        message,
        Message::OpenMailbox { .. }
            | Message::PostKeyPackage { .. }
            | Message::PostWelcome { .. }
            | Message::FetchMailbox { .. }
            | Message::MailboxContents { .. }
            | Message::MailboxUnknown { .. }
    )
}

impl Mailboxes {
    /// Rebuilds the mailboxes from the groups' durable key-value state.
    pub(crate) fn restore<'a>(groups: impl Iterator<Item = (GroupId, &'a BTreeMap<Vec<u8>, Vec<u8>>)>) -> Mailboxes {
        let mut mailboxes = Mailboxes::default();
        for (group, state) in groups {
            for (key, value) in state.range(KEY_PREFIX.to_vec()..).take_while(|(key, _)| key.starts_with(KEY_PREFIX)) {
                let Ok(id) = <[u8; MAILBOX_BYTES]>::try_from(&key[KEY_PREFIX.len()..]) else { continue };
                if let Ok(contents) = postcard::from_bytes::<Contents>(value) {
                    mailboxes.boxes.insert(Mailbox(id), (group, contents));
                }
            }
        }
        mailboxes
    }

    /// When the next mailbox expires.
    pub(crate) fn wake_at(&self) -> Option<Time> {
        self.boxes.values().map(|(_, contents)| contents.expires_at).min()
    }

    /// How many mailboxes are open.
    pub(crate) fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Deletes expired mailboxes.
    pub(crate) fn expire(&mut self, node: &mut Node<'_>) {
        let expired: Vec<(Mailbox, GroupId)> = self
            .boxes
            .iter()
            .filter(|(_, (_, contents))| contents.expires_at <= node.now)
            .map(|(mailbox, (group, _))| (*mailbox, *group))
            .collect();
        for (mailbox, group) in expired {
            self.boxes.remove(&mailbox);
            node.context(group).persist(vec![Record::MlsState { group, key: key_of(mailbox), value: None }]);
        }
    }

    /// Handles one mailbox message. `group` is the envelope's group, which only messages from
    /// admins (open, Welcome) are about.
    pub(crate) fn on_message(
        &mut self,
        node: &mut Node<'_>,
        groups: &BTreeMap<GroupId, AcceptorGroup>,
        from: NodeId,
        group: GroupId,
        message: Message,
    ) {
        // Members of the envelope's group (an admin keeping its invites' mailboxes open and
        // polled) are not rate-limited: their traffic is bounded by `invites_max`. Joiners and
        // strangers are.
        let member = groups.get(&group).is_some_and(|g| g.allows_member(from));
        if !member && !self.within_rate(node, from) {
            cov_mark::hit!(acceptor_rate_limits_mailbox_requests);
            return node.counters.count(Rejection::OverLimit);
        }
        match message {
            Message::OpenMailbox { mailbox, lifetime_ms } => self.open(node, groups, from, group, mailbox, lifetime_ms),
            Message::PostKeyPackage { mailbox, key_package, mac } => {
                self.post_key_package(node, groups, from, mailbox, key_package, mac)
            }
            Message::PostWelcome { mailbox, welcome } => self.post_welcome(node, groups, from, group, mailbox, welcome),
            Message::FetchMailbox { mailbox } => {
                if !self.boxes.contains_key(&mailbox) && from != node.me {
                    // Said, so that a joiner holding an expired or wrong code can stop waiting.
                    node.context(group).send(from, Message::MailboxUnknown { mailbox });
                }
                self.answer(node, groups, from, mailbox)
            }
            _ => node.counters.count(Rejection::Unauthorised),
        }
    }

    fn within_rate(&mut self, node: &Node<'_>, peer: NodeId) -> bool {
        let limit = node.config.mailbox_requests_per_peer_per_second;
        if !self.rates.contains_key(&peer) && self.rates.len() >= node.config.mailbox_peers_tracked_max {
            self.rates.retain(|_, (start, _)| node.now.since(*start) < RATE_WINDOW_MS);
            if self.rates.len() >= node.config.mailbox_peers_tracked_max {
                return false;
            }
        }
        let (start, count) = self.rates.entry(peer).or_insert((node.now, 0));
        if node.now.since(*start) >= RATE_WINDOW_MS {
            *start = node.now;
            *count = 0;
        }
        *count += 1;
        *count <= limit
    }

    fn open(
        &mut self,
        node: &mut Node<'_>,
        groups: &BTreeMap<GroupId, AcceptorGroup>,
        from: NodeId,
        group: GroupId,
        mailbox: Mailbox,
        lifetime_ms: u64,
    ) {
        if !groups.get(&group).is_some_and(|g| g.is_admin(from)) {
            return node.counters.count(Rejection::Unauthorised);
        }
        if lifetime_ms > node.config.invite_lifetime_ms_max {
            return node.counters.count(Rejection::Invalid);
        }
        match self.boxes.get(&mailbox) {
            Some((owner, contents)) if *owner == group && contents.opened_by == from => {
                return node.counters.count(Rejection::Duplicate);
            }
            Some(_) => return node.counters.count(Rejection::Unauthorised),
            None => {}
        }
        if self.boxes.len() >= node.config.mailboxes_max {
            return node.counters.count(Rejection::OverLimit);
        }
        let contents = Contents { opened_by: from, expires_at: node.now.plus_ms(lifetime_ms), key_package: None, welcome: None };
        self.store(node, mailbox, group, contents);
    }

    fn post_key_package(
        &mut self,
        node: &mut Node<'_>,
        groups: &BTreeMap<GroupId, AcceptorGroup>,
        from: NodeId,
        mailbox: Mailbox,
        key_package: Vec<u8>,
        mac: [u8; 32],
    ) {
        if key_package.len() > node.config.key_package_bytes_max {
            return node.counters.count(Rejection::Oversized);
        }
        let Some((group, contents)) = self.boxes.get(&mailbox).cloned() else {
            return node.counters.count(Rejection::UnknownGroup);
        };
        match &contents.key_package {
            Some((posted, _)) if *posted == key_package => node.counters.count(Rejection::Duplicate),
            Some(_) => {
                // The code was already redeemed by someone else.
                cov_mark::hit!(mailbox_refuses_a_second_key_package);
                node.counters.count(Rejection::Duplicate);
            }
            None => {
                let opener = contents.opened_by;
                self.store(node, mailbox, group, Contents { key_package: Some((key_package, mac)), ..contents });
                // Tell the admin at once if it is listening; it also polls.
                self.answer(node, groups, opener, mailbox);
            }
        }
        self.answer(node, groups, from, mailbox);
    }

    fn post_welcome(
        &mut self,
        node: &mut Node<'_>,
        groups: &BTreeMap<GroupId, AcceptorGroup>,
        from: NodeId,
        group: GroupId,
        mailbox: Mailbox,
        welcome: Vec<u8>,
    ) {
        if !groups.get(&group).is_some_and(|g| g.is_admin(from)) {
            return node.counters.count(Rejection::Unauthorised);
        }
        if welcome.len() > node.config.entry_bytes_max {
            return node.counters.count(Rejection::Oversized);
        }
        let Some((owner, contents)) = self.boxes.get(&mailbox).cloned() else {
            return node.counters.count(Rejection::UnknownGroup);
        };
        if owner != group || contents.key_package.is_none() {
            return node.counters.count(Rejection::Unauthorised);
        }
        if contents.welcome.as_ref() != Some(&welcome) {
            let joiner = contents.key_package.as_ref().and_then(|(key_package, _)| node_named_by(key_package));
            self.store(node, mailbox, group, Contents { welcome: Some(welcome), ..contents });
            // Tell the joiner at once if it is listening (it also polls, every
            // `sync_interval_ms`): a joiner otherwise waits up to a poll for its Welcome.
            if let Some(joiner) = joiner {
                cov_mark::hit!(acceptor_hands_the_joiner_its_welcome);
                self.answer(node, groups, joiner, mailbox);
            }
        }
        self.answer(node, groups, from, mailbox);
    }

    /// Sends `to` what the mailbox holds (nothing for an unknown mailbox).
    fn answer(&self, node: &mut Node<'_>, groups: &BTreeMap<GroupId, AcceptorGroup>, to: NodeId, mailbox: Mailbox) {
        let Some((group, contents)) = self.boxes.get(&mailbox) else {
            return node.counters.count(Rejection::UnknownGroup);
        };
        if to == node.me {
            return;
        }
        let welcome = match (&contents.welcome, groups.get(group)) {
            (Some(welcome), Some(state)) => Some((state.genesis.clone(), welcome.clone())),
            _ => None,
        };
        let message = Message::MailboxContents { mailbox, key_package: contents.key_package.clone(), welcome };
        node.context(*group).send(to, message);
    }

    fn store(&mut self, node: &mut Node<'_>, mailbox: Mailbox, group: GroupId, contents: Contents) {
        let value = postcard::to_allocvec(&contents).expect("invariant: mailbox contents encode");
        node.context(group).persist(vec![Record::MlsState { group, key: key_of(mailbox), value: Some(value) }]);
        self.boxes.insert(mailbox, (group, contents));
    }
}

fn key_of(mailbox: Mailbox) -> Vec<u8> {
    [KEY_PREFIX, &mailbox.0].concat()
}
