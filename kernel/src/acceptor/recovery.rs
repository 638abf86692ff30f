//! How an acceptor with fresh state for a group earns its vote.
//!
//! Creating state cannot tell "new group" from "I lost my disk", and a lost disk may hold
//! promises some proposer is still counting on. So, before voting:
//!
//! 1. **Choosing**: ask peers which incarnation of ours they last recorded; take one more than
//!    the highest answer. Enough peers answer (`n - quorum + 1` of the others) that the answers
//!    overlap every earlier fence, so the new incarnation is higher than every earlier one.
//! 2. **Fencing**: send the incarnation to peers. Each records it durably (incarnations only rise)
//!    and from then on refuses accepts that counted a promise of an older incarnation of ours.
//!    Each reports its promise, its accepted values and how far it knows the log is chosen.
//!    Once enough peers reported, adopt the highest promise and, per slot, the accepted value with
//!    the highest ballot, and catch up the chosen log as far as any of them knew it.
//!
//! Reports also carry the incarnations each peer recorded (its own included), and the recovering
//! acceptor adopts the highest per acceptor: otherwise peers that lose their disks one after
//! another would forget a fence, and an acceptor could pick an incarnation it used before.
//!
//! Why this is safe: a value chosen with our old vote was accepted by a quorum; the reporting
//! peers overlap that quorum outside us, so we adopt it (or a value of a higher ballot, which by
//! Paxos is the same value). A proposer still counting an old promise of ours needs an accept
//! quorum, which overlaps the fencing peers, and they refuse it.

use std::collections::BTreeMap;

use crate::context::Context;
use crate::ids::{Ballot, Incarnation, NodeId, Slot};
use crate::io::Rejection;
use crate::log::{AcceptorSet, GroupGenesis};
use crate::storage::{AcceptedValue, Record};
use crate::wire::Message;

use super::group::{AcceptorGroup, Fencing, PeerReport, Phase};

impl AcceptorGroup {
    /// The set our recovery is measured against: the latest one we know that includes us.
    fn voting_set(&self, me: NodeId) -> &AcceptorSet {
        match &self.hint {
            Some(hint) if !self.history.latest().contains(me) && hint.contains(me) => hint,
            _ => self.history.latest(),
        }
    }

    /// How many of `answered` count toward recovery, and how many must.
    fn recovery_quorum<T>(&self, me: NodeId, answered: &BTreeMap<NodeId, T>) -> (usize, usize) {
        let set = self.voting_set(me);
        let others = set.members().iter().filter(|m| **m != me).count();
        let needed = (set.members().len() - set.quorum_size() + 1).min(others);
        let have = set.members().iter().filter(|m| **m != me && answered.contains_key(m)).count();
        (have, needed)
    }

    /// Sends the current recovery step's request to every peer that has not answered it.
    pub(crate) fn ask_peers(&mut self, cx: &mut Context<'_>) {
        let (message, answered): (Message, Vec<NodeId>) = match &self.phase {
            Phase::Choosing(choosing) => {
                (Message::IncarnationQuery { genesis: self.genesis.clone() }, choosing.answers.keys().copied().collect())
            }
            Phase::Fencing(fencing) => (
                Message::Recover { incarnation: self.incarnation, genesis: self.genesis.clone() },
                fencing.reports.keys().copied().collect(),
            ),
            Phase::Voting => return,
        };
        let waiting: Vec<NodeId> = self.peers(cx.me).into_iter().filter(|p| !answered.contains(p)).collect();
        cx.send_all(&waiting, &message);
        self.next_peer_sync_at = cx.now.plus_ms(cx.config.sync_interval_ms);
    }

    /// Peer side of step 1.
    pub(crate) fn on_incarnation_query(&mut self, cx: &mut Context<'_>, from: NodeId, genesis: &GroupGenesis) {
        if *genesis != self.genesis || !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        cx.send(from, Message::IncarnationKnown { incarnation: self.peer_incarnations.get(&from).copied() });
    }

    /// Our side of step 1.
    pub(crate) fn on_incarnation_known(&mut self, cx: &mut Context<'_>, from: NodeId, incarnation: Option<Incarnation>) {
        if !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        let Phase::Choosing(choosing) = &mut self.phase else {
            return cx.reject(Rejection::Duplicate);
        };
        choosing.answers.insert(from, incarnation);
        self.advance_recovery(cx);
    }

    /// Peer side of step 2: record the new incarnation (only ever upwards), then report.
    pub(crate) fn on_recover(&mut self, cx: &mut Context<'_>, from: NodeId, incarnation: Incarnation, genesis: &GroupGenesis) {
        if *genesis != self.genesis {
            return cx.reject(Rejection::Invalid);
        }
        if !self.is_known_acceptor(from) {
            cov_mark::hit!(recover_from_unknown_acceptor_refused);
            return cx.reject(Rejection::Unauthorised);
        }
        match self.peer_incarnations.get(&from) {
            Some(recorded) if incarnation < *recorded => {
                cov_mark::hit!(recover_from_an_older_incarnation_refused);
                return cx.reject(Rejection::StaleIncarnation);
            }
            Some(recorded) if incarnation == *recorded => {}
            _ => {
                self.peer_incarnations.insert(from, incarnation);
                cx.persist(vec![Record::PeerIncarnation { group: cx.group, acceptor: from, incarnation }]);
            }
        }
        let accepted = self.accepted.range(self.chosen_next..).map(|(s, v)| (*s, v.clone())).collect();
        let mut incarnations: Vec<(NodeId, Incarnation)> = self.peer_incarnations.iter().map(|(n, i)| (*n, *i)).collect();
        if self.incarnation.0 > 0 {
            incarnations.push((cx.me, self.incarnation));
        }
        let chosen_next = self.chosen_next;
        cx.send(from, Message::Recovery { incarnation, promised: self.promised, accepted, chosen_next, incarnations });
    }

    /// Our side of step 2.
    pub(crate) fn on_recovery(&mut self, cx: &mut Context<'_>, from: NodeId, incarnation: Incarnation, report: PeerReport) {
        if !self.is_known_acceptor(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        let Phase::Fencing(fencing) = &mut self.phase else {
            return cx.reject(Rejection::Duplicate);
        };
        if incarnation != self.incarnation {
            return cx.reject(Rejection::StaleIncarnation);
        }
        if report.chosen_next > self.chosen_next {
            cx.send(from, Message::CatchUp { from_slot: self.chosen_next });
        }
        fencing.reports.insert(from, report);
        self.advance_recovery(cx);
    }

    /// Moves recovery forward as far as the answers so far allow.
    pub(crate) fn advance_recovery(&mut self, cx: &mut Context<'_>) {
        if let Phase::Choosing(choosing) = &self.phase {
            let (have, needed) = self.recovery_quorum(cx.me, &choosing.answers);
            if have < needed {
                return;
            }
            let highest = choosing.answers.values().flatten().max().copied().unwrap_or(Incarnation(0));
            self.incarnation = Incarnation(highest.0 + 1);
            cx.persist(vec![Record::Incarnation { group: cx.group, incarnation: self.incarnation }]);
            self.phase = Phase::Fencing(Fencing::default());
            self.ask_peers(cx);
        }
        self.finish_if_caught_up(cx);
    }

    /// Step 2's end: adopt the peers' state and vote.
    fn finish_if_caught_up(&mut self, cx: &mut Context<'_>) {
        let Phase::Fencing(fencing) = &self.phase else { return };
        let (have, needed) = self.recovery_quorum(cx.me, &fencing.reports);
        if have < needed {
            return;
        }
        let reports: Vec<&PeerReport> = fencing.reports.values().collect();
        let known_chosen = reports.iter().map(|r| r.chosen_next).max().unwrap_or(Slot(0));
        if self.chosen_next < known_chosen {
            return;
        }
        let promised = reports.iter().map(|r| r.promised).max().unwrap_or(Ballot::ZERO).max(self.promised);
        let mut adopted: BTreeMap<Slot, AcceptedValue> = BTreeMap::new();
        for (slot, value) in reports.iter().flat_map(|r| r.accepted.iter()) {
            let better = adopted.get(slot).is_none_or(|current| value.ballot > current.ballot);
            if *slot >= self.chosen_next && better && value.entry.hash() == value.value_hash {
                adopted.insert(*slot, value.clone());
            }
        }
        let mut records = vec![Record::Promised { group: cx.group, ballot: promised }];
        for (slot, value) in adopted {
            if self.accepted.get(&slot).is_some_and(|own| own.ballot >= value.ballot) {
                continue;
            }
            let (ballot, value_hash, entry, proof) = (value.ballot, value.value_hash, value.entry.clone(), value.proof.clone());
            records.push(Record::Accepted { group: cx.group, slot, ballot, value_hash, entry, proof });
            self.accepted.insert(slot, value);
        }
        for (node, incarnation) in reports.iter().flat_map(|r| r.incarnations.iter()) {
            let newer = self.peer_incarnations.get(node).is_none_or(|recorded| incarnation > recorded);
            if *node != cx.me && newer {
                self.peer_incarnations.insert(*node, *incarnation);
                records.push(Record::PeerIncarnation { group: cx.group, acceptor: *node, incarnation: *incarnation });
            }
        }
        records.push(Record::Recovered { group: cx.group });
        self.promised = promised;
        self.phase = Phase::Voting;
        cov_mark::hit!(acceptor_recovered_and_votes);
        cx.persist(records);
    }
}
