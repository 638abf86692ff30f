//! Property tests of the pure parts: the codec, ballot order and quorum arithmetic.

use plait_kernel::storage::AcceptedValue;
use plait_kernel::wire::{Envelope, Message, RejectReason, decode, encode};
use plait_kernel::{AcceptorSet, Ballot, Entry, GroupId, Incarnation, NodeId, Slot};
use proptest::prelude::*;

fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![(0..20u64).prop_map(NodeId::from_index), any::<[u8; 32]>().prop_map(NodeId)]
}

fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), node()).prop_map(|(round, proposer)| Ballot { round, proposer })
}

fn set() -> impl Strategy<Value = AcceptorSet> {
    proptest::collection::vec(node(), 1..8).prop_filter_map("non-empty", |nodes| AcceptorSet::new(nodes, 16))
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        Just(Entry::Noop),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Entry::Value),
        set().prop_map(Entry::SetAcceptors),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (ballot(), any::<u64>()).prop_map(|(ballot, slot)| Message::Prepare { ballot, from_slot: Slot(slot) }),
        (ballot(), any::<u64>(), entry(), proptest::collection::vec((node(), any::<u64>()), 0..5)).prop_map(
            |(ballot, slot, entry, by)| {
                Message::Accept {
                    ballot,
                    slot: Slot(slot),
                    value_hash: entry.hash(),
                    entry,
                    promised_by: by.into_iter().map(|(n, i)| (n, Incarnation(i))).collect(),
                    proof: vec![7; 64],
                }
            }
        ),
        (ballot(), any::<u64>(), proptest::collection::vec((any::<u64>(), ballot(), entry()), 0..4)).prop_map(
            |(ballot, inc, accepted)| {
                let accepted = accepted
                    .into_iter()
                    .map(|(s, b, e)| (Slot(s), AcceptedValue { ballot: b, value_hash: e.hash(), entry: e, proof: vec![] }))
                    .collect();
                Message::Promise { ballot, incarnation: Incarnation(inc), accepted }
            }
        ),
        (ballot(), ballot()).prop_map(|(ballot, promised)| Message::Rejected {
            ballot,
            reason: RejectReason::BallotTooLow,
            promised
        }),
        (proptest::collection::vec((any::<u64>(), entry()), 0..4), any::<u64>(), any::<bool>()).prop_map(
            |(entries, next, pending)| {
                Message::Entries {
                    entries: entries.into_iter().map(|(s, e)| (Slot(s), e)).collect(),
                    chosen_next: Slot(next),
                    accepted_pending: pending,
                }
            }
        ),
        proptest::option::of(any::<u64>()).prop_map(|i| Message::IncarnationKnown { incarnation: i.map(Incarnation) }),
        Just(Message::UnknownGroup),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(group in any::<[u8; 16]>(), message in message()) {
        let envelope = Envelope { group: GroupId(group), message };
        let frame = encode(&envelope, 1 << 20).expect("fits");
        prop_assert_eq!(decode(&frame, 1 << 20), Ok(envelope));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        plait_kernel::fuzzing::decode_message(&bytes);
    }

    #[test]
    fn truncated_frames_are_refused(message in message(), cut in any::<prop::sample::Index>()) {
        let frame = encode(&Envelope { group: GroupId([1; 16]), message }, 1 << 20).expect("fits");
        let cut = cut.index(frame.len());
        prop_assert!(decode(&frame[..cut], 1 << 20).is_err());
    }

    #[test]
    fn ballots_order_by_round_then_proposer(a in ballot(), b in ballot()) {
        prop_assert_eq!(a.cmp(&b), (a.round, a.proposer).cmp(&(b.round, b.proposer)));
        prop_assert!(Ballot::ZERO <= a);
    }

    #[test]
    fn any_two_quorums_share_a_member(set in set(), picks in proptest::collection::vec(any::<bool>(), 16), others in proptest::collection::vec(any::<bool>(), 16)) {
        let members = set.members();
        let first: Vec<NodeId> = members.iter().zip(&picks).filter(|(_, p)| **p).map(|(m, _)| *m).collect();
        let second: Vec<NodeId> = members.iter().zip(&others).filter(|(_, p)| **p).map(|(m, _)| *m).collect();
        if set.is_quorum(first.iter()) && set.is_quorum(second.iter()) {
            prop_assert!(first.iter().any(|m| second.contains(m)));
        }
    }

    #[test]
    fn quorums_ignore_strangers_and_repeats(set in set(), stranger in any::<[u8; 32]>()) {
        let stranger = NodeId(stranger);
        prop_assume!(!set.contains(stranger));
        let below: Vec<NodeId> = set.members().iter().take(set.quorum_size() - 1).copied().collect();
        let mut padded = below.clone();
        padded.extend(below.iter().copied());
        padded.extend(std::iter::repeat_n(stranger, 10));
        prop_assert!(!set.is_quorum(padded.iter()));
    }

    /// Recovery asks `n - quorum + 1` peers: any two such groups of peers, and any such group and
    /// any quorum minus one member, overlap among the other `n - 1` acceptors.
    #[test]
    fn recovery_reads_overlap_every_fence_and_quorum(n in 2usize..20) {
        let quorum = n / 2 + 1;
        let read = n - quorum + 1;
        prop_assert!(2 * read > n - 1, "two recovery reads overlap");
        prop_assert!(read + (quorum - 1) > n - 1, "a recovery read overlaps every quorum without us");
    }
}
