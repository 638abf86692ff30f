//! Replays the checked-in fuzz corpus (`fuzz/corpus/*`) through the fuzzing entry points, on
//! stable Rust. `PLAIT_WRITE_CORPUS=1` regenerates the seed inputs from valid messages.

use plait_kernel::updates::{Cursor, PostRefusal, Posted, StoredId, StoredMessage, UpdateId};
use std::path::{Path, PathBuf};

use plait_kernel::storage::AcceptedValue;
use plait_kernel::wire::{Envelope, GroupRefusal, Message, encode};
use plait_kernel::{AcceptorSet, Ballot, Entry, GroupGenesis, Incarnation, NodeId, Slot, fuzzing};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Valid frames of every kind, for a group the fuzzing acceptor hosts.
fn seeds() -> Vec<Vec<u8>> {
    let acceptors = AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three");
    let genesis =
        GroupGenesis { nonce: 0, acceptors: acceptors.clone(), proposers: vec![NodeId::from_index(10)], group_info: None };
    let group = genesis.group_id();
    let ballot = Ballot { round: 3, proposer: NodeId::from_index(10) };
    let entry = Entry::Value(b"seed".to_vec());
    let accepted = AcceptedValue { ballot, value_hash: entry.hash(), entry: entry.clone(), proof: vec![9; 64] };
    let mailbox = plait_kernel::invite::Mailbox([5; plait_kernel::invite::MAILBOX_BYTES]);
    let messages = vec![
        Message::Sync { genesis: genesis.clone(), from_slot: Slot(0), acceptors },
        Message::Prepare { ballot, from_slot: Slot(0) },
        Message::Promise { ballot, incarnation: Incarnation(1), accepted: vec![(Slot(0), accepted.clone())] },
        Message::Accept {
            ballot,
            slot: Slot(0),
            value_hash: entry.hash(),
            entry: entry.clone(),
            promised_by: vec![(NodeId::from_index(1), Incarnation(1))],
            proof: vec![9; 64],
        },
        Message::Application { sender: NodeId::from_index(10), message: b"not really mls".to_vec() },
        Message::OpenMailbox { mailbox, lifetime_ms: 60_000 },
        Message::PostKeyPackage { mailbox, key_package: b"key package".to_vec(), mac: [1; 32] },
        Message::PostWelcome { mailbox, welcome: b"welcome".to_vec() },
        Message::FetchMailbox { mailbox },
        Message::MailboxContents { mailbox, key_package: Some((b"key package".to_vec(), [1; 32])), welcome: None },
        Message::Accepted { ballot, slot: Slot(0), value_hash: entry.hash() },
        Message::Chosen { slot: Slot(0), entry: entry.clone() },
        Message::Entries { entries: vec![(Slot(0), entry)], chosen_next: Slot(1), accepted_pending: false },
        Message::IncarnationQuery { genesis: genesis.clone() },
        Message::IncarnationKnown { incarnation: Some(Incarnation(2)) },
        Message::Recover { incarnation: Incarnation(1), genesis },
        Message::Recovery {
            incarnation: Incarnation(1),
            promised: ballot,
            accepted: vec![(Slot(0), accepted)],
            chosen_next: Slot(0),
            incarnations: vec![],
        },
        Message::CatchUp { from_slot: Slot(0) },
        Message::UnknownGroup,
        Message::Post { messages: vec![Posted { seq: 0, ciphertext: b"not really mls".to_vec() }] },
        Message::PostAck { seqs: vec![0, 1] },
        Message::PostRefused { seq: 0, reason: PostRefusal::StaleEpoch { current: 2 } },
        Message::Fetch { after: Cursor { incarnation: Incarnation(1), position: 4 } },
        Message::Page {
            after: Cursor { incarnation: Incarnation(1), position: 0 },
            messages: vec![(
                1,
                StoredMessage { id: UpdateId { sender: NodeId::from_index(10), seq: 0 }, ciphertext: vec![1, 2] },
            )],
            more: true,
        },
        Message::FetchIds { after: Cursor { incarnation: Incarnation(1), position: 4 } },
        Message::Ids {
            after: Cursor { incarnation: Incarnation(1), position: 0 },
            ids: vec![StoredId { position: 1, id: UpdateId { sender: NodeId::from_index(10), seq: 0 }, epoch: 2 }],
            more: false,
        },
        Message::MailboxUnknown { mailbox },
        Message::GroupRefused { reason: GroupRefusal::Full },
    ];
    messages.into_iter().map(|message| encode(&Envelope { group, message }, 1 << 20).expect("small")).collect()
}

fn write_seeds() {
    let frames = seeds();
    for (i, frame) in frames.iter().enumerate() {
        std::fs::write(corpus("decode_message").join(format!("seed-{i:02}")), frame).expect("write");
    }
    // One input for handle_frames: every frame, separated by 0xff.
    let joined: Vec<u8> = frames.join(&0xffu8);
    std::fs::write(corpus("handle_frames").join("seed-all-kinds"), joined).expect("write");
    std::fs::write(corpus("document_frames").join("seed-all-kinds"), fuzzing::document_seed()).expect("write");
    for (i, message) in fuzzing::mls_seeds().iter().enumerate() {
        std::fs::write(corpus("mls_messages").join(format!("seed-{i:02}")), message).expect("write");
    }
    std::fs::create_dir_all(corpus("loro_updates")).expect("create");
    for (i, input) in fuzzing::loro_seeds().iter().enumerate() {
        std::fs::write(corpus("loro_updates").join(format!("seed-{i:02}")), input).expect("write");
    }
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let mut count = 0;
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(corpus(target)).expect("corpus exists").map(|e| e.expect("entry").path()).collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).expect("readable");
        run(&bytes);
        // Every prefix too: truncation is the most common corruption.
        for cut in (0..bytes.len()).step_by(7) {
            run(&bytes[..cut]);
        }
        count += 1;
    }
    count
}

#[test]
fn corpus_replays_without_panics() {
    if std::env::var_os("PLAIT_WRITE_CORPUS").is_some() {
        write_seeds();
    }
    assert!(replay("decode_message", fuzzing::decode_message) >= 13, "the seed corpus is checked in");
    assert!(replay("handle_frames", fuzzing::handle_frames) >= 1);
    assert!(replay("mls_messages", fuzzing::mls_messages) >= 6);
    assert!(replay("document_frames", fuzzing::document_frames) >= 1);
    assert!(replay("loro_updates", fuzzing::loro_updates) >= 3);
}
