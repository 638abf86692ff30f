//! Document sync between three members through three acceptors: edits are durable before they
//! leave, become safe once a write quorum stored them, survive restarts, and bad pages or
//! mislabelled messages change nothing but counters.

use crate::support;

use plait_kernel::updates::{Cursor, IDS_PER_PAGE_MAX, StoredId, StoredMessage, UpdateId};
use plait_kernel::wire::{Envelope, Message, encode};
use plait_kernel::{Command, CommandError, Event, GroupId, Input, NodeId, Rejection};

use support::Net;
use support::groups::*;

fn edit(net: &mut Net, device: NodeId, group: GroupId, position: usize, insert: &str) {
    net.command(device, Command::Edit { group, position, delete: 0, insert: insert.into() });
}

fn text(net: &Net, device: NodeId, group: GroupId) -> String {
    net.device(device).group(group).and_then(|g| g.text()).expect("an MLS group has a document")
}

fn acceptor_ids() -> Vec<NodeId> {
    (1..=3).map(NodeId::from_index).collect()
}

/// Hands `device` a page as if `from` had sent it.
fn page(net: &mut Net, from: NodeId, device: NodeId, group: GroupId, messages: Vec<(u64, StoredMessage)>) {
    let message = Message::Page { after: Cursor::default(), messages, more: false };
    let frame = encode(&Envelope { group, message }, usize::MAX).expect("encodes");
    net.input(device, Input::Received { from, frame });
}

#[test]
fn edits_reach_every_member_and_become_safe() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    edit(&mut net, admin, group, 0, "hello");
    edit(&mut net, second, group, 0, "world ");
    assert_eq!(text(&net, admin, group), "hello", "an edit applies locally at once");
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(1));
    settle(&mut net);
    let expected = text(&net, admin, group);
    assert!(expected.contains("hello") && expected.contains("world "));
    assert_eq!(text(&net, second, group), expected);
    assert_eq!(text(&net, third, group), expected);
    let safe =
        |device| net.events.iter().any(|(id, e)| *id == device && matches!(e, Event::DocumentSafe { unsafe_messages: 0, .. }));
    assert!(safe(admin) && safe(second), "both writers were told their edit is safe");
    for acceptor in acceptor_ids() {
        let held = net.acceptor(acceptor).group(group).map(|g| g.stored_messages().0);
        assert_eq!(held, Some(2), "every acceptor stores both messages (by post or by copying a peer)");
    }
}

#[test]
fn edits_made_while_cut_off_survive_a_restart_and_are_sent_after_it() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    net.unreachable = acceptor_ids();
    edit(&mut net, admin, group, 0, "offline edit");
    settle(&mut net);
    net.restart(admin, 99, false);
    assert_eq!(text(&net, admin, group), "offline edit", "the edit was durable before the command returned");
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(1));
    net.unreachable.clear();
    settle(&mut net);
    assert_eq!(text(&net, second, group), "offline edit");
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(0));
}

/// Which of its edits are safe is written lazily: with the device's next write, or alone once
/// `safe_below_write_ms` passed; a crash before that only makes the device post copies again.
#[test]
fn which_edits_are_safe_is_written_with_the_next_write_or_alone_once_due() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    let durable_safe_below = |net: &Net| {
        let member = net.members.iter().find(|member| member.id == admin).expect("a member");
        member.durable.groups[&group].safe_below
    };
    let mark_written = |net: &Net| net.device(admin).group(group).is_some_and(|g| g.is_safe_mark_written());
    // Each edit is posted once its batch closes (`flush_after_ms`), then acknowledged.
    edit(&mut net, admin, group, 0, "a");
    net.tick(50);
    net.deliver_all(10_000);
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(0), "acknowledged by a write quorum");
    assert_eq!(durable_safe_below(&net), 0, "but not written on its own");
    assert!(!mark_written(&net));

    edit(&mut net, admin, group, 1, "b");
    assert_eq!(durable_safe_below(&net), 1, "the next edit's write carries it");
    net.tick(50);
    net.deliver_all(10_000);
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(0));
    assert_eq!(durable_safe_below(&net), 1);

    net.restart(admin, 7, false);
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(1), "the second edit is unsafe again");
    cov_mark::check!(device_writes_its_safe_mark_alone_once_due);
    settle(&mut net);
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(0), "acknowledged again");
    assert_eq!(durable_safe_below(&net), 2, "written alone, with nothing else to write");
    assert!(mark_written(&net));
    assert_eq!(text(&net, second, group), "ab");
    for acceptor in acceptor_ids() {
        let held = net.acceptor(acceptor).group(group).map(|g| g.stored_messages().0);
        assert_eq!(held, Some(2), "the copy posted again is not stored twice");
    }
}

/// A device records its pending MLS commit when it changes (a membership change), not with
/// every message it writes or reads: edits persist no record of it at either end.
#[test]
fn edits_do_not_rewrite_the_pending_commit_record() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    let key = format!("{:?}", b"\xffplait/pending-commit".to_vec());
    let records_of = |net: &Net| net.log.iter().filter(|line| line.contains(" persist ") && line.contains(&key)).count();
    net.log.clear();
    for (position, insert) in ["a", "b", "c"].into_iter().enumerate() {
        edit(&mut net, admin, group, position, insert);
        settle(&mut net);
    }
    assert_eq!(text(&net, second, group), "abc");
    assert_eq!(records_of(&net), 0, "three edits written and read without it");

    net.command(second, Command::RotateKeys { group });
    settle(&mut net);
    assert_eq!(records_of(&net), 2, "the rotation's commit recorded while pending, then cleared once chosen");
    net.restart(second, 5, false);
    edit(&mut net, second, group, 0, "d");
    settle(&mut net);
    assert_eq!(records_of(&net), 2, "nor after a restart, which reads it back");
    assert_eq!(text(&net, admin, group), "dabc");
}

/// A device edits as one Loro peer across restarts: a fresh peer id per boot made each restart a
/// new peer (one per command for a device driven by the command line), and Loro's version
/// vectors and imports grow with peers. Nothing is lost or doubled on the way.
#[test]
fn a_device_edits_as_one_loro_peer_across_restarts() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    for (position, letter) in ["a", "b", "c"].into_iter().enumerate() {
        edit(&mut net, admin, group, position, letter);
        settle(&mut net);
        net.restart(admin, 20 + position as u64, false);
    }
    edit(&mut net, admin, group, 3, "d");
    settle(&mut net);
    assert_eq!(text(&net, admin, group), "abcd");
    assert_eq!(text(&net, second, group), "abcd");
    let snapshot = net.device(second).group(group).and_then(|g| g.snapshot()).expect("a snapshot");
    let doc = loro::LoroDoc::new();
    doc.import(&snapshot).expect("imports");
    assert_eq!(doc.oplog_vv().iter().count(), 1, "the admin's four edits under one peer");
}

/// A group of three whose devices write a checkpoint every 4 updates.
fn group_checkpointing_often() -> (Net, GroupId, [NodeId; 3]) {
    let config = plait_kernel::Config { checkpoint_after_updates: 4, ..plait_kernel::Config::default() };
    group_of_three_in(support::net_with(3, config.validate().expect("valid")).0)
}

/// A device's durable updates and whether it has a durable snapshot.
fn stored_at(net: &Net, device: NodeId, group: GroupId) -> (usize, bool) {
    let member = net.members.iter().find(|member| member.id == device).expect("a member");
    let durable = &member.durable.groups[&group];
    (durable.updates.len(), durable.imported.is_some())
}

/// A device keeps a snapshot of its document in place of the updates it holds: its disk holds
/// fewer than `checkpoint_after_updates` updates, and after a restart it has every edit, numbers
/// its next update after its last (another member applies it), and edits as the same Loro peer.
#[test]
fn a_device_restarts_from_its_checkpoint_with_every_edit() {
    let (mut net, group, [admin, second, _]) = group_checkpointing_often();
    for round in 0..5 {
        edit(&mut net, admin, group, 0, "a");
        settle(&mut net);
        edit(&mut net, second, group, 0, &format!("{round}"));
        settle(&mut net);
    }
    let (updates, has_snapshot) = stored_at(&net, admin, group);
    assert!(has_snapshot && updates < 4, "ten updates applied, {updates} on disk");
    let before = text(&net, admin, group);

    net.restart(admin, 77, false);
    assert_eq!(text(&net, admin, group), before);
    edit(&mut net, admin, group, 0, "z");
    settle(&mut net);
    assert_eq!(text(&net, second, group), format!("z{before}"), "the update after the restart is new to others");
    let snapshot = net.device(second).group(group).and_then(|g| g.snapshot()).expect("a snapshot");
    let doc = loro::LoroDoc::new();
    doc.import(&snapshot).expect("imports");
    assert_eq!(doc.oplog_vv().iter().count(), 2, "each writer's edits under one peer");
}

/// A checkpoint never deletes a device's own updates that are not safe yet: written while cut
/// off from every acceptor, they are posted after a restart. The checkpoint is written at the
/// fourth edit, whose batch is still open; the fifth goes into that batch after it, and is
/// restored from the batch's update on disk, not lost behind the snapshot.
#[test]
fn a_checkpoint_keeps_the_updates_not_safe_yet() {
    let (mut net, group, [admin, second, _]) = group_checkpointing_often();
    net.unreachable = acceptor_ids();
    for position in 0..3 {
        edit(&mut net, admin, group, position, "x");
        net.tick(100); // Each edit in a batch of its own.
    }
    edit(&mut net, admin, group, 3, "y");
    edit(&mut net, admin, group, 4, "z");
    let (updates, has_snapshot) = stored_at(&net, admin, group);
    assert!(has_snapshot && updates == 4, "a checkpoint was written and the four unsafe updates kept: {updates}");
    cov_mark::check!(device_restores_an_update_its_snapshot_holds_without_importing_it);
    net.restart(admin, 78, false);
    assert_eq!(text(&net, admin, group), "xxxyz");
    net.unreachable.clear();
    settle(&mut net);
    assert_eq!(text(&net, second, group), "xxxyz");
    assert_eq!(net.device(admin).group(group).map(|g| g.unsafe_messages()), Some(0));
}

/// The messages carried in full from one acceptor to another in the log so far.
fn copied_between_acceptors(net: &Net) -> usize {
    let acceptors = acceptor_ids();
    let between =
        |line: &String| acceptors.iter().any(|from| acceptors.iter().any(|to| line.starts_with(&format!("{from} -> {to} Page"))));
    net.log.iter().filter(|line| between(line)).map(|line| line.matches("StoredMessage {").count()).sum()
}

/// Acceptors copy each other's stores by comparing ids first. An acceptor that restarts copies
/// from the start of each peer's store again (its cursors are in memory), yet of four messages
/// it missed one, and only that one comes in full.
#[test]
fn an_acceptor_copies_in_full_only_the_messages_it_lacks() {
    let (mut net, group, [admin, _, _]) = group_of_three();
    let [first, _, last] = [1, 2, 3].map(NodeId::from_index);
    let held = |net: &Net, acceptor| net.acceptor(acceptor).group(group).map(|g| g.stored_messages().0);
    for (position, letter) in ["a", "b", "c"].into_iter().enumerate() {
        edit(&mut net, admin, group, position, letter);
        settle(&mut net);
    }
    net.unreachable = vec![last];
    edit(&mut net, admin, group, 3, "d");
    settle(&mut net);
    assert_eq!((held(&net, first), held(&net, last)), (Some(4), Some(3)), "the last acceptor missed the fourth edit");

    net.restart(last, 5, false);
    net.unreachable.clear();
    net.log.clear();
    cov_mark::check!(acceptor_fetches_in_full_from_the_first_message_it_lacks);
    settle(&mut net);
    assert_eq!(held(&net, last), Some(4));
    assert_eq!(copied_between_acceptors(&net), 2, "the fourth edit, once from each peer; the other three went as ids");
    net.log.clear();
    settle(&mut net);
    assert_eq!(copied_between_acceptors(&net), 0, "acceptors that hold the same messages exchange only ids");
}

/// Ids from a device, out of order, or too many at once change nothing but counters.
#[test]
fn bad_id_pages_change_nothing_but_counters() {
    let (mut net, group, [admin, _, _]) = group_of_three();
    let [first, second, _] = [1, 2, 3].map(NodeId::from_index);
    edit(&mut net, admin, group, 0, "a");
    settle(&mut net);
    let stored = |position| StoredId { position, id: UpdateId { sender: admin, seq: 9 }, epoch: 0 };
    let send = |net: &mut Net, from, ids: Vec<StoredId>| {
        let message = Message::Ids { after: Cursor::default(), ids, more: true };
        let frame = encode(&Envelope { group, message }, usize::MAX).expect("encodes");
        net.input(first, Input::Received { from, frame });
    };
    let counters = |net: &Net| {
        let counters = net.acceptor(first).counters();
        [Rejection::Unauthorised, Rejection::Invalid, Rejection::OverLimit].map(|rejection| counters.of(rejection))
    };
    let before = counters(&net);
    send(&mut net, admin, vec![stored(1)]);
    send(&mut net, second, vec![stored(2), stored(1)]);
    send(&mut net, second, (1..=IDS_PER_PAGE_MAX as u64 + 1).map(stored).collect());
    assert_eq!(counters(&net), [before[0] + 1, before[1] + 1, before[2] + 1]);
    assert!(net.queue.is_empty(), "nothing was fetched");
    assert_eq!(net.acceptor(first).group(group).map(|g| g.stored_messages().0), Some(1));
}

#[test]
fn presence_reaches_online_members_and_is_never_stored() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    net.command(admin, Command::SetPresence { group, state: b"cursor at 3".to_vec() });
    settle(&mut net);
    let seen = net.events.iter().any(|(id, e)| {
        *id == second && matches!(e, Event::Presence { sender, state, .. } if *sender == admin && state == b"cursor at 3")
    });
    assert!(seen);
    for acceptor in acceptor_ids() {
        assert_eq!(net.acceptor(acceptor).group(group).map(|g| g.stored_messages().0), Some(0));
    }
}

#[test]
fn readers_and_oversized_edits_are_refused_with_typed_errors() {
    let (mut net, group, [admin, second, _]) = group_of_three();
    net.command(admin, Command::SetRole { group, member: second, role: plait_kernel::mls::Role::Reader });
    settle(&mut net);
    edit(&mut net, second, group, 0, "not allowed");
    assert!(failed_with(&net, second, &CommandError::ReadOnly(group)));
    assert_eq!(text(&net, second, group), "");
    let limit = support::config().update_bytes_max / 2;
    edit(&mut net, admin, group, 0, &"x".repeat(limit + 1));
    assert!(failed_with(&net, admin, &CommandError::ValueTooLarge { size: limit + 1, limit }));
    net.command(admin, Command::Edit { group, position: 5, delete: 0, insert: "x".into() });
    assert!(
        net.events.iter().any(|(id, e)| *id == admin && matches!(e, Event::CommandFailed { error: CommandError::Document(_) }))
    );
}

#[test]
fn bad_pages_and_mislabelled_messages_change_nothing_but_counters() {
    let (mut net, group, [admin, second, third]) = group_of_three();
    // The third member misses the live pushes; it is handed pages by hand below.
    net.unreachable = vec![third];
    edit(&mut net, admin, group, 0, "abc");
    settle(&mut net);
    let acceptor = acceptor_ids()[0];
    let stored: Vec<(u64, StoredMessage)> =
        net.acceptor(acceptor).group(group).expect("hosts the group").messages().map(|(p, m)| (p, m.clone())).collect();
    assert_eq!(stored.len(), 1);
    net.unreachable.clear();
    let invalid = |net: &Net| net.device(third).counters().of(Rejection::Invalid);

    let before = invalid(&net);
    cov_mark::check!(device_refuses_a_page_with_forged_positions);
    page(&mut net, acceptor, third, group, vec![stored[0].clone(), stored[0].clone()]);
    assert_eq!(invalid(&net), before + 1, "positions must increase");

    let garbage = StoredMessage { id: UpdateId { sender: second, seq: 0 }, ciphertext: vec![7; 40] };
    page(&mut net, acceptor, third, group, vec![(1, garbage)]);
    assert_eq!(text(&net, third, group), "", "garbage changes nothing");

    let mut relabelled = stored[0].1.clone();
    relabelled.id.seq = 41;
    cov_mark::check!(device_reads_a_mislabelled_update_under_its_true_id);
    page(&mut net, acceptor, third, group, vec![(1, relabelled)]);
    assert_eq!(text(&net, third, group), "abc", "read under its true id, which MLS authenticated");
    assert!(net.device(third).group(group).is_some_and(|g| g.has_applied(&UpdateId { sender: admin, seq: 0 })));

    let duplicates = net.device(third).counters().of(Rejection::Duplicate);
    page(&mut net, acceptor, third, group, stored.clone());
    assert_eq!(net.device(third).counters().of(Rejection::Duplicate), duplicates + 1, "a replay is dropped by id");
    assert_eq!(text(&net, third, group), "abc");

    let outsider = NodeId::from_index(77);
    let unauthorised = net.device(third).counters().of(Rejection::Unauthorised);
    page(&mut net, outsider, third, group, stored);
    assert_eq!(net.device(third).counters().of(Rejection::Unauthorised), unauthorised + 1, "only the group's acceptors");
}
