//! Compaction between three members through three acceptors: history is snapshotted once it
//! grows, acceptors keep the snapshot and drop what it covers once a member other than its
//! committer confirmed it, a device added later starts from the snapshot, and bad chunks or a
//! compaction naming messages nobody stored change nothing but counters. A compaction whose key
//! is wrong deletes nothing and is replaced by one the members can open.

use crate::support;

use std::collections::BTreeMap;

use plait_kernel::mls::{Identity, Member};
use plait_kernel::snapshot::{Compaction, ContentKey, Covered, CoveredSender, SnapshotHash, split};
use plait_kernel::wire::{Envelope, Message, RejectReason, accept_signed_bytes, encode};
use plait_kernel::{Ballot, Command, Config, Entry, Event, GroupId, Input, NodeId, Rejection, Slot};

use support::groups::*;
use support::{Net, identity_seed};

fn config() -> plait_kernel::ValidConfig {
    Config { compact_after_messages: 6, compaction_takeover_ms: 200, snapshot_chunk_bytes: 256, ..Config::default() }
        .validate()
        .expect("valid")
}

fn text(net: &Net, device: NodeId, group: GroupId) -> String {
    net.device(device).group(group).and_then(|g| g.text()).expect("an MLS group has a document")
}

fn acceptor_ids() -> Vec<NodeId> {
    (1..=3).map(NodeId::from_index).collect()
}

/// Each of the three members types `rounds` edits, settling after each round.
fn type_rounds(net: &mut Net, group: GroupId, members: &[NodeId], rounds: usize) {
    for round in 0..rounds {
        for member in members {
            let insert = format!("{member}:{round} ");
            net.command(*member, Command::Edit { group, position: 0, delete: 0, insert });
            settle(net);
        }
    }
}

fn send(net: &mut Net, from: NodeId, to: NodeId, group: GroupId, message: Message) {
    let frame = encode(&Envelope { group, message }, usize::MAX).expect("encodes");
    net.input(to, Input::Received { from, frame });
}

#[test]
fn members_compact_history_and_acceptors_keep_only_the_snapshot_and_its_tail() {
    let (net, _) = support::net_with(3, config());
    let (mut net, group, members) = group_of_three_in(net);
    type_rounds(&mut net, group, &members, 6);
    settle(&mut net);
    let expected = text(&net, members[0], group);
    for member in &members[1..] {
        assert_eq!(text(&net, *member, group), expected);
    }
    for acceptor in acceptor_ids() {
        let view = net.acceptor(acceptor).group(group).expect("hosts the group");
        let compaction = view.compaction().expect("history passed the threshold, so a compaction is in force");
        assert_eq!(view.confirmed(), Some(compaction), "a member other than its committer confirmed it");
        assert!(view.holds_snapshot(&compaction.hash));
        assert!(compaction.chunks > 1, "small chunks split every snapshot");
        let covered_held = view.messages().filter(|(_, m)| compaction.covered.contains(&m.id)).count();
        assert_eq!(covered_held, 0, "{acceptor} deleted every message the snapshot covers");
        assert!(compaction.covered.count() >= 6);
    }
}

#[test]
fn a_device_added_after_compaction_starts_from_the_snapshot_and_reads_what_was_typed_before() {
    let (net, _) = support::net_with(4, config());
    let (mut net, group, members) = group_of_three_in(net);
    type_rounds(&mut net, group, &members, 6);
    settle(&mut net);
    let genesis = created(&net);
    let joiner = NodeId::from_index(104);
    cov_mark::check!(joiner_starts_from_the_welcomed_snapshot);
    add(&mut net, members[0], joiner, &genesis);
    settle(&mut net);
    let imported = net.events.iter().any(|(id, e)| *id == joiner && matches!(e, Event::SnapshotImported { .. }));
    assert!(imported, "the joiner imported the snapshot its Welcome named");
    let expected = text(&net, members[0], group);
    assert!(expected.contains("n101:0 "), "edits from before the join");
    assert_eq!(text(&net, joiner, group), expected);
    net.command(joiner, Command::Edit { group, position: 0, delete: 0, insert: "joined ".into() });
    settle(&mut net);
    assert!(text(&net, members[1], group).starts_with("joined "));
}

#[test]
fn a_snapshot_whose_chunks_do_not_match_its_name_is_dropped_and_never_acknowledged() {
    let (net, _) = support::net_with(3, config());
    let (mut net, group, [admin, ..]) = group_of_three_in(net);
    let acceptor = acceptor_ids()[0];
    let ciphertext: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let hash = SnapshotHash::of(&ciphertext);
    let chunks = split(&ciphertext, 256);
    let invalid = |net: &Net| net.acceptor(acceptor).counters().of(Rejection::Invalid);

    // A truncated chunk: every chunk arrives, but together they are not the named snapshot.
    let before = invalid(&net);
    cov_mark::check!(acceptor_drops_a_snapshot_that_does_not_match_its_hash);
    for (index, bytes) in chunks.iter().enumerate() {
        let bytes = if index == 1 { bytes[..100].to_vec() } else { bytes.clone() };
        let message = Message::SnapshotChunk { hash, index: index as u32, count: chunks.len() as u32, bytes };
        send(&mut net, admin, acceptor, group, message);
    }
    assert_eq!(invalid(&net), before + 1);
    // A whole snapshot under someone else's name.
    let wrong = SnapshotHash([9; 32]);
    for (index, bytes) in chunks.iter().enumerate() {
        let message =
            Message::SnapshotChunk { hash: wrong, index: index as u32, count: chunks.len() as u32, bytes: bytes.clone() };
        send(&mut net, admin, acceptor, group, message);
    }
    assert_eq!(invalid(&net), before + 2);
    let view = net.acceptor(acceptor).group(group).expect("hosts the group");
    assert!(!view.holds_snapshot(&hash) && !view.holds_snapshot(&wrong));
    assert_eq!(view.snapshot_bytes(), 0, "nothing of either is kept");
    net.deliver_all(100);
    let acknowledged = net.log.iter().any(|line| line.contains("SnapshotStored"));
    assert!(!acknowledged, "no acknowledgement for a snapshot that is not what it claims");
}

/// The founder's MLS state, rebuilt from its durable image: a twin that can sign commits.
fn twin_of(net: &Net, device: NodeId, group: GroupId) -> (Member, Identity) {
    let durable = &net.members.iter().find(|m| m.id == device).expect("known").durable;
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = durable.groups[&group].mls.clone();
    let id = state.remove(&b"\xffplait/mls-group-id"[..]).expect("the group id is kept");
    state.remove(&b"\xffplait/pending-commit"[..]);
    let member = Member::restore([9; 32], state, &id).expect("restores");
    (member, Identity::from_seed(identity_seed(device), &device.0))
}

#[test]
fn a_compaction_naming_messages_nobody_stored_is_refused_and_deletes_nothing() {
    let (net, _) = support::net_with(3, Config::default().validate().expect("valid"));
    let (mut net, group, [admin, second, _]) = group_of_three_in(net);
    net.command(admin, Command::Edit { group, position: 0, delete: 0, insert: "kept".into() });
    settle(&mut net);
    let acceptor = acceptor_ids()[0];
    let stored_before = net.acceptor(acceptor).group(group).expect("hosts").stored_messages();

    // A real snapshot, stored whole at the acceptor, so only the covered messages are wrong.
    let ciphertext = vec![5u8; 300];
    let hash = SnapshotHash::of(&ciphertext);
    let chunks = split(&ciphertext, 256);
    for (index, bytes) in chunks.iter().enumerate() {
        let message = Message::SnapshotChunk { hash, index: index as u32, count: chunks.len() as u32, bytes: bytes.clone() };
        send(&mut net, admin, acceptor, group, message);
    }
    assert!(net.acceptor(acceptor).group(group).expect("hosts").holds_snapshot(&hash));

    // The commit claims messages 0..1000 of the second member, who wrote none.
    let covered = Covered { senders: vec![CoveredSender { sender: second, below: 1_000, beyond: vec![] }] };
    let compaction = Compaction { hash, size: 300, chunks: chunks.len() as u32, covered, wrapped_key: vec![0; 48] };
    let (mut twin, identity) = twin_of(&net, admin, group);
    let commit = twin.commit_update_with_aad(&identity, compaction.to_aad()).expect("commits");
    let entry = Entry::Value(commit.commit);
    let ballot = Ballot { round: 1_000, proposer: admin };
    let slot = net.acceptor(acceptor).group(group).expect("hosts").chosen_next();
    send(&mut net, admin, acceptor, group, Message::Prepare { ballot, from_slot: slot });
    let incarnation = net.acceptor(acceptor).group(group).expect("hosts").incarnation();
    let value_hash = entry.hash();
    let proof = twin.sign(&identity, &accept_signed_bytes(group, ballot, slot, &value_hash)).expect("signs");
    let not_ready = net.acceptor(acceptor).counters().of(Rejection::NotReady);
    cov_mark::check!(acceptor_refuses_a_compaction_covering_messages_it_lacks);
    let accept = Message::Accept { ballot, slot, entry, value_hash, promised_by: vec![(acceptor, incarnation)], proof };
    send(&mut net, admin, acceptor, group, accept);
    assert_eq!(net.acceptor(acceptor).counters().of(Rejection::NotReady), not_ready + 1);
    let refused = net.log.iter().rev().find(|line| line.starts_with(&format!("{acceptor} -> {admin}")));
    let reason = format!("{:?}", RejectReason::NotReady);
    assert!(refused.is_some_and(|line| line.contains("Rejected") && line.contains(&reason)), "{refused:?}");
    let view = net.acceptor(acceptor).group(group).expect("hosts");
    assert!(view.compaction().is_none());
    assert_eq!(view.stored_messages(), stored_before, "nothing was deleted");
    assert_eq!(view.chosen_next(), Slot(slot.0));
}

#[test]
fn a_device_added_below_every_threshold_still_gets_what_was_typed_before() {
    let (mut net, genesis) = support::net(2);
    let (admin, joiner) = (NodeId::from_index(101), NodeId::from_index(102));
    net.command(admin, Command::CreateGroup { acceptors: acceptors(), nonce: 1, rotation_interval_ms: 0 });
    settle(&mut net);
    let _ = genesis;
    let genesis = created(&net);
    let group = genesis.group_id();
    net.command(admin, Command::Edit { group, position: 0, delete: 0, insert: "before ".into() });
    settle(&mut net);
    net.restart(admin, 7, false);
    settle(&mut net);
    add(&mut net, admin, joiner, &genesis);
    for _ in 0..5 {
        settle(&mut net);
    }
    net.command(admin, Command::Edit { group, position: 7, delete: 0, insert: "after".into() });
    for _ in 0..5 {
        settle(&mut net);
    }
    assert_eq!(text(&net, joiner, group), "before after");
}

/// How a forged compaction's key is wrong.
#[derive(Clone, Copy)]
enum WrongKey {
    /// Wrapped under the exporter for another snapshot's name: no member can unwrap it.
    WrappedForAnotherHash,
    /// Unwraps, but is the key of another snapshot: the named one does not open with it.
    OfAnotherSnapshot,
}

/// `second`'s twin commits a compaction of what the acceptors hold of the admin's messages,
/// with a snapshot stored whole at every acceptor but a wrong key; it is chosen. Then the
/// admin removes `second` (whose real device cannot follow its twin's commit). Acceptors must
/// delete nothing on the strength of that compaction, members must count it, and a compaction
/// they can open must replace it and be the one that deletes.
fn a_compaction_with_a_wrong_key(wrong: WrongKey) {
    let config = Config { compaction_takeover_ms: 200, snapshot_chunk_bytes: 256, ..Config::default() };
    let (net, _) = support::net_with(3, config.validate().expect("valid"));
    let (mut net, group, [admin, second, third]) = group_of_three_in(net);
    type_rounds(&mut net, group, &[admin], 3);
    let acceptors = acceptor_ids();
    let held = |net: &Net, acceptor: NodeId| net.acceptor(acceptor).group(group).expect("hosts").stored_messages();
    let stored_before: Vec<(usize, usize)> = acceptors.iter().map(|a| held(&net, *a)).collect();
    let admin_messages =
        net.acceptor(acceptors[0]).group(group).expect("hosts").messages().filter(|(_, m)| m.id.sender == admin).count();
    assert_eq!(admin_messages, 3);

    let (mut twin, identity) = twin_of(&net, second, group);
    let ciphertext = plait_kernel::snapshot::seal(&ContentKey([1; 32]), b"a snapshot nobody can check");
    let other = plait_kernel::snapshot::seal(&ContentKey([2; 32]), b"another snapshot");
    let (hash, other_hash) = (SnapshotHash::of(&ciphertext), SnapshotHash::of(&other));
    let wrapped_for = match wrong {
        WrongKey::WrappedForAnotherHash => other_hash,
        WrongKey::OfAnotherSnapshot => hash,
    };
    let (label, context) = Compaction::exporter_context(&wrapped_for);
    let wrapping = ContentKey(twin.export_secret(label, &context).expect("exports"));
    let chunks = split(&ciphertext, 256);
    for acceptor in &acceptors {
        for (index, bytes) in chunks.iter().enumerate() {
            let message = Message::SnapshotChunk { hash, index: index as u32, count: chunks.len() as u32, bytes: bytes.clone() };
            send(&mut net, second, *acceptor, group, message);
        }
    }
    let covered = Covered { senders: vec![CoveredSender { sender: admin, below: 3, beyond: vec![] }] };
    let wrapped_key = plait_kernel::snapshot::seal(&wrapping, &[2; 32]);
    let bad = Compaction { hash, size: ciphertext.len() as u64, chunks: chunks.len() as u32, covered, wrapped_key };
    let commit = twin.commit_update_with_aad(&identity, bad.to_aad()).expect("commits");

    // The twin runs the ballot itself, then tells the acceptors the value was chosen.
    net.offline = vec![second];
    let entry = Entry::Value(commit.commit);
    let ballot = Ballot { round: 1_000, proposer: second };
    let slot = net.acceptor(acceptors[0]).group(group).expect("hosts").chosen_next();
    let value_hash = entry.hash();
    let proof = twin.sign(&identity, &accept_signed_bytes(group, ballot, slot, &value_hash)).expect("signs");
    for acceptor in &acceptors {
        send(&mut net, second, *acceptor, group, Message::Prepare { ballot, from_slot: slot });
    }
    let promised_by: Vec<_> =
        acceptors.iter().map(|a| (*a, net.acceptor(*a).group(group).expect("hosts").incarnation())).collect();
    for acceptor in &acceptors {
        let accept = Message::Accept {
            ballot,
            slot,
            entry: entry.clone(),
            value_hash,
            promised_by: promised_by.clone(),
            proof: proof.clone(),
        };
        send(&mut net, second, *acceptor, group, accept);
    }
    for acceptor in &acceptors {
        send(&mut net, second, *acceptor, group, Message::Chosen { slot, entry: entry.clone() });
    }
    // No timer fires: the members learn the commit, and those chosen to confirm it fetch and
    // try to open the snapshot, but nobody replaces it yet.
    let invalid = |net: &Net| [admin, third].map(|d| net.device(d).counters().of(Rejection::Invalid)).iter().sum::<u64>();
    let invalid_before = invalid(&net);
    net.deliver_all(10_000);
    for (acceptor, before) in acceptors.iter().zip(&stored_before) {
        let view = net.acceptor(*acceptor).group(group).expect("hosts");
        assert_eq!(view.compaction(), Some(&bad), "{acceptor}: the forged compaction is in force");
        assert_eq!(view.confirmed(), None, "{acceptor}: nobody confirmed it");
        assert_eq!(view.stored_messages(), *before, "{acceptor}: nothing was deleted on its strength");
    }
    assert!(invalid(&net) > invalid_before, "the members that tried the key counted it");
    assert!(text(&net, admin, group).contains(&format!("{admin}:2")), "and kept their documents");

    // A compaction the members can open replaces it, and only that one deletes.
    net.command(admin, Command::RemoveMember { group, member: second });
    for _ in 0..5 {
        settle(&mut net);
    }
    for acceptor in &acceptors {
        let view = net.acceptor(*acceptor).group(group).expect("hosts");
        let confirmed = view.confirmed().expect("a compaction was confirmed");
        assert_ne!(confirmed.hash, hash, "{acceptor}: the forged one never was");
        assert!(confirmed.covered.includes(&bad.covered));
        assert_eq!(view.messages().filter(|(_, m)| confirmed.covered.contains(&m.id)).count(), 0, "{acceptor} deleted");
    }
    let text = text(&net, admin, group);
    assert_eq!(text, self::text(&net, third, group));
}

#[test]
fn a_compaction_whose_key_does_not_unwrap_deletes_nothing_and_is_replaced() {
    cov_mark::check!(device_replaces_a_compaction_whose_key_does_not_unwrap);
    a_compaction_with_a_wrong_key(WrongKey::WrappedForAnotherHash);
}

#[test]
fn a_compaction_whose_key_opens_another_snapshot_deletes_nothing_and_is_replaced() {
    cov_mark::check!(device_refuses_a_snapshot_its_key_does_not_open);
    a_compaction_with_a_wrong_key(WrongKey::OfAnotherSnapshot);
}

/// Acceptors relay a reader's application messages because a reader may ask for a compaction;
/// members refuse anything else a reader sends that way.
#[test]
fn members_refuse_a_readers_relayed_message_other_than_a_compaction_request() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    net.command(admin, Command::SetRole { group, member: second, role: plait_kernel::mls::Role::Reader });
    settle(&mut net);
    assert_eq!(net.device(second).group(group).and_then(|g| g.role()), Some(plait_kernel::mls::Role::Reader));

    let (mut twin, identity) = twin_of(&net, second, group);
    let payload = plait_kernel::updates::Payload::Message(b"a reader talking".to_vec());
    let message = twin.encrypt(&identity, &payload.encode()).expect("encrypts");
    let refused_before = net.device(third).counters().of(Rejection::Unauthorised);
    cov_mark::check!(device_refuses_a_relayed_message_a_reader_may_not_send);
    send(&mut net, second, acceptor_ids()[0], group, Message::Application { sender: second, message });
    net.deliver_all(1_000);
    assert!(net.device(third).counters().of(Rejection::Unauthorised) > refused_before);
    let heard = net.events.iter().any(|(id, e)| *id == third && matches!(e, Event::Message { sender, .. } if *sender == second));
    assert!(!heard, "the reader's message reached no app");
}

/// A group of three with compaction thresholds no run reaches, whose third member (`away`) missed
/// six epochs of the admin's typing and the writer's key rotations (more than it keeps) and then
/// caught up while the others hear nothing (they send, but nothing reaches them): it could not
/// decrypt the oldest messages, and its requests for a compaction reached nobody.
fn back_from_six_epochs_away() -> (Net, GroupId, [NodeId; 3]) {
    let config = Config { compact_after_messages: 1_000_000, compact_after_bytes: u64::MAX, ..Config::default() }
        .validate()
        .expect("valid");
    let (mut net, group, [admin, writer, away]) = group_of_three_in(support::net_with(3, config).0);
    net.offline = vec![away];
    for round in 0..6 {
        net.command(admin, Command::Edit { group, position: 0, delete: 0, insert: format!("a{round} ") });
        settle(&mut net);
        net.command(writer, Command::RotateKeys { group });
        settle(&mut net);
    }
    net.offline = Vec::new();
    net.unreachable = vec![admin, writer];
    settle(&mut net);
    assert!(net.device(away).counters().of(Rejection::Expired) > 0, "it could not read what was sealed while it was away");
    (net, group, [admin, writer, away])
}

fn durable(net: &Net, node: NodeId) -> &plait_kernel::storage::Restored {
    &net.members.iter().find(|member| member.id == node).expect("a member").durable
}

/// A page's writes go in one batch, before its cursor: the notes of the messages it carried that
/// are too old to decrypt too, with the keys the page used (or, when a note makes a request for
/// a compaction due, with the keys that sealed the request), not in a batch each.
#[test]
fn a_page_notes_the_messages_it_cannot_decrypt_in_the_write_of_its_keys() {
    let (net, _, [_, _, away]) = back_from_six_epochs_away();
    let writes = net.log.iter().filter(|line| line.starts_with(&format!("{away} persist")));
    let notes: Vec<&String> = writes.filter(|line| line.contains("Undecryptable {")).collect();
    assert!(!notes.is_empty(), "it noted what it could not decrypt");
    for write in notes {
        assert!(write.contains("MlsState {"), "a note is written with the page's keys: {write}");
    }
}

/// The member reads a newer message, which makes its cursors durable past the ones it cannot
/// decrypt, and restarts: it never meets those again, so it must go on asking from what it wrote
/// down. With thresholds no run reaches, only its asking brings the compaction that gives it the
/// text.
#[test]
fn a_member_that_restarts_while_asking_for_a_compaction_goes_on_asking() {
    let (mut net, group, [admin, writer, away]) = back_from_six_epochs_away();
    net.command(writer, Command::Edit { group, position: 0, delete: 0, insert: "w ".into() });
    settle(&mut net);
    let updates = &durable(&net, away).groups[&group].updates;
    assert!(updates.keys().any(|id| id.sender == writer), "it read the newer message");
    cov_mark::check!(device_restarts_still_wanting_a_compaction);
    net.restart(away, 9, false);
    net.unreachable = Vec::new();
    // Idle members sync every few seconds at most (`idle_sync_interval_max_ms`).
    for _ in 0..10 {
        settle(&mut net);
    }
    assert_eq!(text(&net, away, group), text(&net, admin, group));
}

/// A page can hold a message the member reads and, after it, one it cannot decrypt (a copy
/// from a peer keeps its older epoch at a later position). Asking for a compaction then seals
/// a message in the middle of the page, and the write of the keys the page used so far must
/// carry the updates they opened: written apart, a crash between the two writes kept the used
/// keys and lost the updates for good (a key is used once). Found at seed 931 of
/// `document/a-device-crashing-between-an-edit-and-its-send-loses-nothing`.
#[test]
fn a_request_sealed_in_the_middle_of_a_page_is_written_with_the_updates_read_before_it() {
    let (mut net, group, [admin, _, away]) = back_from_six_epochs_away();
    net.unreachable = vec![admin, away];
    net.command(admin, Command::Edit { group, position: 0, delete: 0, insert: "new ".into() });
    settle(&mut net);
    let acceptor = NodeId::from_index(1);
    let stored = &durable(&net, acceptor).groups[&group].stored;
    let (oldest, newest) = (stored.values().next().expect("stored").clone(), stored.values().last().expect("stored").clone());
    // The member meets the old message as if for the first time (a copy of one it never noted):
    // one it knows it cannot read is skipped before decryption, and asks for nothing.
    let member = net.members.iter_mut().find(|member| member.id == away).expect("a member");
    let noted = member.durable.groups.get_mut(&group).expect("the group").undecryptable.remove(&oldest.id);
    assert!(noted.is_some(), "it had noted the old message");
    net.restart(away, 9, false);
    let after = plait_kernel::updates::Cursor { position: 1_000, ..durable(&net, away).groups[&group].cursors[&acceptor] };
    let messages = vec![(1_001, newest.clone()), (1_002, oldest)];
    // A request is due again (at most one per sync interval), and no timer has sent it yet.
    net.now = net.now.plus_ms(net.config.sync_interval_ms);
    let first_line = net.log.len();
    cov_mark::check!(device_seals_a_message_while_reading_a_page);
    send(&mut net, acceptor, away, group, Message::Page { after, messages, more: false });
    let writes: Vec<&String> = net.log[first_line..].iter().filter(|line| line.starts_with(&format!("{away} persist"))).collect();
    let keys_used = writes.iter().position(|line| line.contains("MlsState {")).expect("the page's keys are written");
    let update = format!("Update {{ group: {group:?}, id: {:?}", newest.id);
    assert!(writes[keys_used].contains(&update), "the keys are written with the update they opened: {writes:#?}");
}

/// The turn a member waits for to confirm a compaction (after the first two in line, who stay
/// silent here: one is offline, the other committed it) is kept on disk: a member that
/// restarts while waiting takes its turn after it, and the acceptors delete what the
/// compaction covers. Before, only the first two kept theirs, and nobody ever confirmed this
/// one.
#[test]
fn a_member_that_restarts_while_waiting_its_turn_to_confirm_still_confirms() {
    cov_mark::check!(device_takes_its_turn_to_confirm_again_after_a_restart);
    let config = Config { compact_after_messages: 6, compaction_takeover_ms: 10_000, ..Config::default() };
    let (net, _) = support::net_with(3, config.validate().expect("valid"));
    let (mut net, group, [admin, writer, third]) = group_of_three_in(net);
    net.offline = vec![third];
    type_rounds(&mut net, group, &[admin, writer], 5);
    let acceptor = acceptor_ids()[0];
    let in_force = |net: &Net| net.acceptor(acceptor).group(group).and_then(|view| view.compaction().cloned());
    // Making a compaction takes turns too: the offline member's may come first.
    let mut waited = 0;
    while in_force(&net).is_none() {
        assert!(waited < 60, "a compaction is chosen");
        net.tick(500);
        net.deliver_all(10_000);
        waited += 1;
    }
    let chosen = in_force(&net).expect("in force");
    let turn = durable(&net, admin).groups[&group].mls.get(b"\xffplait/confirm-duty".as_slice()).cloned();
    let turn: Option<(SnapshotHash, u64)> = turn.map(|bytes| postcard::from_bytes(&bytes).expect("a turn"));
    // This setup's snapshot puts the writer (who committed it) and the offline member first.
    assert_eq!(turn, Some((chosen.hash, 2)), "the admin waits its turn, third in line");
    assert_eq!(net.acceptor(acceptor).group(group).and_then(|view| view.confirmed().cloned()), None);

    net.restart(admin, 9, false);
    for _ in 0..7 {
        settle(&mut net);
    }
    for acceptor in acceptor_ids() {
        let view = net.acceptor(acceptor).group(group).expect("hosts");
        assert_eq!(view.confirmed(), Some(&chosen), "{acceptor}: the admin confirmed it in its turn");
    }
}
