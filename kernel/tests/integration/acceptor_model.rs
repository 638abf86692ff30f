//! The acceptor against a tiny reference model of a multi-Paxos acceptor, over random
//! sequences of prepares, accepts and restarts. Restarts rebuild the acceptor from the batches
//! it persisted, and nothing else, so a reply that was not backed by a persist shows up as a
//! disagreement after the next restart.

use std::collections::BTreeMap;

use plait_kernel::wire::{Envelope, Message, RejectReason, decode, encode};
use plait_kernel::{
    Acceptor, AcceptorSet, Ballot, Config, Effect, Entry, GroupGenesis, GroupId, Incarnation, Input, Node, NodeId, Restored,
    Slot, Time,
};
use proptest::prelude::*;

const PROPOSERS: [u64; 2] = [101, 102];
const WINDOW: u64 = 8;

/// The reference: one promise for the group, one accepted value per slot.
#[derive(Default)]
struct Model {
    promised: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Entry)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Promise(Ballot, Vec<(Slot, Ballot)>),
    Accepted(Ballot, Slot),
    Rejected(Ballot),
    Nothing,
}

impl Model {
    fn prepare(&mut self, ballot: Ballot) -> Reply {
        if ballot < self.promised {
            return Reply::Rejected(ballot);
        }
        self.promised = ballot;
        Reply::Promise(ballot, self.accepted.iter().map(|(s, (b, _))| (*s, *b)).collect())
    }

    fn accept(&mut self, ballot: Ballot, slot: Slot, entry: Entry) -> Reply {
        if ballot < self.promised || slot.0 >= WINDOW {
            return Reply::Rejected(ballot);
        }
        if let Some((existing, value)) = self.accepted.get(&slot)
            && *existing == ballot
            && *value != entry
        {
            return Reply::Nothing; // equivocation: refused silently
        }
        self.promised = ballot;
        self.accepted.insert(slot, (ballot, entry));
        Reply::Accepted(ballot, slot)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Prepare { proposer: usize, round: u64 },
    Accept { proposer: usize, round: u64, slot: u64, value: u8 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 1..6u64).prop_map(|(proposer, round)| Op::Prepare { proposer, round }),
        (0..2usize, 1..6u64, 0..10u64, 0..3u8).prop_map(|(proposer, round, slot, value)| Op::Accept {
            proposer,
            round,
            slot,
            value
        }),
        Just(Op::Restart),
    ]
}

struct Subject {
    acceptor: Acceptor,
    durable: Restored,
    group: GroupId,
    genesis: GroupGenesis,
    boots: u64,
}

impl Subject {
    fn new() -> Subject {
        let acceptors = AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three");
        let genesis = GroupGenesis {
            nonce: 1,
            acceptors,
            proposers: PROPOSERS.iter().map(|i| NodeId::from_index(*i)).collect(),
            group_info: None,
        };
        let (acceptor, _) = Acceptor::new(config(), me(), 0, Restored::empty());
        let mut subject = Subject { acceptor, durable: Restored::empty(), group: genesis.group_id(), genesis, boots: 0 };
        subject.recover();
        subject
    }

    /// Walks the acceptor through recovery with two silent, empty peers.
    fn recover(&mut self) {
        let sync = Message::Sync { genesis: self.genesis.clone(), from_slot: Slot(0), acceptors: self.genesis.acceptors.clone() };
        self.send(NodeId::from_index(101), sync);
        for peer in [2, 3] {
            self.send(NodeId::from_index(peer), Message::IncarnationKnown { incarnation: None });
        }
        let incarnation = self.acceptor.group(self.group).expect("created").incarnation();
        for peer in [2, 3] {
            let report = Message::Recovery {
                incarnation,
                promised: Ballot::ZERO,
                accepted: vec![],
                chosen_next: Slot(0),
                incarnations: vec![],
            };
            self.send(NodeId::from_index(peer), report);
        }
        assert!(self.acceptor.group(self.group).expect("created").is_voting());
    }

    fn send(&mut self, from: NodeId, message: Message) -> Vec<Message> {
        let frame = encode(&Envelope { group: self.group, message }, 1 << 20).expect("small");
        let outputs = self.acceptor.handle(Time(0), Input::Received { from, frame });
        let mut replies = Vec::new();
        for effect in outputs.effects {
            match effect {
                Effect::Persist(batch) => self.durable.apply(&batch),
                Effect::Send { to, frame } if to == from => replies.push(decode(&frame, usize::MAX).expect("valid").message),
                _ => {}
            }
        }
        replies
    }

    fn restart(&mut self) {
        self.boots += 1;
        self.acceptor = Acceptor::new(config(), me(), self.boots, self.durable.clone()).0;
    }

    fn incarnation(&self) -> Incarnation {
        self.acceptor.group(self.group).expect("hosted").incarnation()
    }
}

fn config() -> plait_kernel::ValidConfig {
    Config { accepted_window_slots: WINDOW, ..Config::default() }.validate().expect("valid")
}

fn me() -> NodeId {
    NodeId::from_index(1)
}

fn reply_of(messages: Vec<Message>) -> Reply {
    match messages.as_slice() {
        [] => Reply::Nothing,
        [Message::Promise { ballot, accepted, .. }] => {
            Reply::Promise(*ballot, accepted.iter().map(|(s, v)| (*s, v.ballot)).collect())
        }
        [Message::Accepted { ballot, slot, .. }] => Reply::Accepted(*ballot, *slot),
        [Message::Rejected { ballot, reason: RejectReason::BallotTooLow | RejectReason::OutsideWindow, .. }] => {
            Reply::Rejected(*ballot)
        }
        other => panic!("unexpected replies {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn acceptor_matches_the_reference_across_restarts(ops in proptest::collection::vec(op(), 1..60)) {
        let mut subject = Subject::new();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Prepare { proposer, round } => {
                    let from = NodeId::from_index(PROPOSERS[proposer]);
                    let ballot = Ballot { round, proposer: from };
                    let actual = reply_of(subject.send(from, Message::Prepare { ballot, from_slot: Slot(0) }));
                    prop_assert_eq!(actual, model.prepare(ballot));
                }
                Op::Accept { proposer, round, slot, value } => {
                    let from = NodeId::from_index(PROPOSERS[proposer]);
                    let ballot = Ballot { round, proposer: from };
                    let entry = Entry::Value(vec![value]);
                    let promised_by = vec![(me(), subject.incarnation())];
                    let accept = Message::Accept { ballot, slot: Slot(slot), value_hash: entry.hash(), entry: entry.clone(), promised_by, proof: vec![] };
                    let actual = reply_of(subject.send(from, accept));
                    let expected = model.accept(ballot, Slot(slot), entry);
                    // A retransmitted accept is answered again without a new persist.
                    prop_assert_eq!(actual, expected);
                }
                Op::Restart => subject.restart(),
            }
            let view = subject.acceptor.group(subject.group).expect("hosted");
            prop_assert_eq!(view.promised(), model.promised);
            let accepted: Vec<(Slot, Ballot)> = view.accepted().collect();
            let expected: Vec<(Slot, Ballot)> = model.accepted.iter().map(|(s, (b, _))| (*s, *b)).collect();
            prop_assert_eq!(accepted, expected);
        }
    }
}
