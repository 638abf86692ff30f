//! Subscribers: the nodes an acceptor pushes a group's news to (chosen entries, stored messages,
//! digests, confirmations). A node subscribes with a `Sync`.
//!
//! They are durable, one key each in the group's key-value state, so that an acceptor that
//! restarts pushes to them at once. Kept in memory only, a restart forgot them, and an idle
//! device heard that acceptor's pushes again only at its next `Sync`, up to
//! `idle_sync_interval_max_ms` later (what it takes on real processes, where a device must also
//! open a link again: ARCHITECTURE.md, "A restarted acceptor reaches its devices again"). The
//! write does not hold anything back (the answer to the `Sync` goes first): lost in a crash, it
//! costs only that wait.
//!
//! At most `subscribers_max` per group. Durable, a set full of nodes that left would stay full,
//! so at the limit the nodes that may no longer propose (members removed, for an MLS group) make
//! room first.

use std::collections::{BTreeMap, BTreeSet};

use crate::acceptor::group::AcceptorGroup;
use crate::context::Context;
use crate::ids::NodeId;
use crate::io::Rejection;
use crate::storage::Record;

/// Where a subscriber is kept, followed by its id, in the group's key-value state (openmls never
/// writes keys starting 0xff).
const SUBSCRIBER_KEY_PREFIX: &[u8] = b"\xffplait/subscriber/";

/// The subscribers kept in the group's key-value state.
pub(crate) fn restore(state: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeSet<NodeId> {
    state
        .range(SUBSCRIBER_KEY_PREFIX.to_vec()..)
        .map(|(key, _)| key)
        .take_while(|key| key.starts_with(SUBSCRIBER_KEY_PREFIX))
        .filter_map(|key| key[SUBSCRIBER_KEY_PREFIX.len()..].try_into().ok().map(NodeId))
        .collect()
}

fn record(cx: &Context<'_>, node: NodeId, subscribed: bool) -> Record {
    let key = [SUBSCRIBER_KEY_PREFIX, node.0.as_slice()].concat();
    Record::MlsState { group: cx.group, key, value: subscribed.then(Vec::new) }
}

impl AcceptorGroup {
    /// `from`, a node that may read the group, asked to hear its news.
    pub(super) fn subscribe(&mut self, cx: &mut Context<'_>, from: NodeId) {
        if self.subscribers.contains(&from) {
            return;
        }
        let mut records = Vec::new();
        if self.subscribers.len() >= cx.config.subscribers_max {
            let departed: Vec<NodeId> = self.subscribers.iter().copied().filter(|s| !self.allows_member(*s)).collect();
            if !departed.is_empty() {
                cov_mark::hit!(acceptor_drops_subscribers_that_left_to_make_room);
            }
            for node in departed {
                self.subscribers.remove(&node);
                records.push(record(cx, node, false));
            }
        }
        if self.subscribers.len() < cx.config.subscribers_max {
            self.subscribers.insert(from);
            records.push(record(cx, from, true));
        } else {
            cx.reject(Rejection::OverLimit);
        }
        cx.persist(records);
    }
}
