//! A burst travels as one frame per hop: a device posts the batches closed since its last
//! `Input::Flush` as one `Post` to each acceptor, and an acceptor acknowledges the posts it
//! stored since its last flush in one `PostAck` per sender and pushes them as one `Page` per
//! member (one per run of consecutive positions), never more than a page at a time.

use crate::support;

use plait_kernel::updates::{Cursor, StoredMessage, UpdateId};
use plait_kernel::wire::{Envelope, Message, decode, encode};
use plait_kernel::{Command, Config, GroupId, Input, NodeId};

use support::Net;
use support::groups::*;

fn edit(net: &mut Net, device: NodeId, group: GroupId, insert: &str) {
    net.command(device, Command::Edit { group, position: 0, delete: 0, insert: insert.into() });
}

fn acceptor_ids() -> Vec<NodeId> {
    (1..=3).map(NodeId::from_index).collect()
}

/// Takes the queued frames `from` sent, decoded, leaving the others queued.
fn take_sent(net: &mut Net, from: NodeId) -> Vec<(NodeId, Message)> {
    let (sent, kept) = std::mem::take(&mut net.queue).into_iter().partition(|(sender, _, _)| *sender == from);
    net.queue = kept;
    sent.into_iter().map(|(_, to, frame)| (to, decode(&frame, usize::MAX).expect("valid").message)).collect()
}

fn deliver(net: &mut Net, from: NodeId, to: NodeId, message: Message, group: GroupId) {
    let frame = encode(&Envelope { group, message }, usize::MAX).expect("encodes");
    net.input(to, Input::Received { from, frame });
}

/// The sequence numbers of a post, an acknowledgement, or a page's ids.
fn seqs(message: &Message) -> Vec<u64> {
    match message {
        Message::Post { messages } => messages.iter().map(|posted| posted.seq).collect(),
        Message::PostAck { seqs } => seqs.clone(),
        Message::Page { messages, .. } => messages.iter().map(|(_, stored)| stored.id.seq).collect(),
        other => panic!("not a post, acknowledgement or page: {other:?}"),
    }
}

/// Three members whose every edit is a batch of its own (it closes at once).
fn group_of_three_with(config: Config) -> (Net, GroupId, [NodeId; 3]) {
    let config = Config { flush_bytes: 1, ..config }.validate().expect("valid");
    group_of_three_in(support::net_with(3, config).0)
}

fn text(net: &Net, device: NodeId, group: GroupId) -> String {
    net.device(device).group(group).and_then(|g| g.text()).expect("an MLS group has a document")
}

#[test]
fn a_burst_of_edits_leaves_as_one_post_per_acceptor_and_arrives_as_one_page_per_member() {
    let (mut net, group, [admin, second, third]) = group_of_three_with(Config::default());
    net.hold_flushes = true;
    for insert in ["a", "b", "c"] {
        edit(&mut net, admin, group, insert);
    }
    edit(&mut net, second, group, "x");
    assert!(net.queue.is_empty(), "closed batches wait for the flush");
    assert_eq!(net.flushes_wanted, vec![admin, second]);
    net.flush(admin);
    net.flush(second);
    let posts = take_sent(&mut net, admin);
    assert_eq!(posts.iter().map(|(to, _)| *to).collect::<Vec<_>>(), acceptor_ids(), "one post to each acceptor");
    assert!(posts.iter().all(|(_, post)| seqs(post).len() == 3), "each holding the three batches: {posts:?}");
    for (to, post) in posts {
        deliver(&mut net, admin, to, post, group);
    }
    net.deliver_all(100);
    assert!(net.queue.is_empty(), "acceptors hold acknowledgements and pushes until their flush");
    for acceptor in acceptor_ids() {
        net.flush(acceptor);
        let mut sent = take_sent(&mut net, acceptor);
        sent.sort_by_key(|(to, message)| (*to, matches!(message, Message::Page { .. })));
        let shape: Vec<(NodeId, bool, usize)> =
            sent.iter().map(|(to, message)| (*to, matches!(message, Message::Page { .. }), seqs(message).len())).collect();
        // Each writer: one acknowledgement of its posts, one page of the other's messages; the
        // reader: one page of all four.
        let expected = vec![(admin, false, 3), (admin, true, 1), (second, false, 1), (second, true, 3), (third, true, 4)];
        assert_eq!(shape, expected, "{acceptor}: {sent:?}");
        let logged = net.log.len();
        for (to, message) in sent {
            deliver(&mut net, acceptor, to, message, group);
        }
        if acceptor == acceptor_ids()[0] {
            // The reader's page of four: first the four announcements (its app need not wait
            // for the write, see `Event::waits_for_writes`), then one batch with the four
            // updates and the advanced ratchet (and its cursor).
            let reader: Vec<&String> = net.log[logged..].iter().filter(|line| line.starts_with(&format!("{third} "))).collect();
            let persist = reader.iter().position(|line| line.contains(" persist ")).expect("the reader wrote");
            assert!(reader[persist].matches("Update {").count() == 4, "{reader:#?}");
            assert!(reader[persist].contains("MlsState {"), "{}", reader[persist]);
            let announced: Vec<usize> =
                (0..reader.len()).filter(|&line| reader[line].contains("notify DocumentChanged")).collect();
            assert_eq!(announced, (0..4).collect::<Vec<_>>(), "{reader:#?}");
            assert_eq!(persist, 4, "{reader:#?}");
        }
    }
    net.hold_flushes = false;
    settle(&mut net);
    let expected = text(&net, admin, group);
    assert_eq!(expected.len(), 4);
    assert_eq!(text(&net, second, group), expected);
    assert_eq!(text(&net, third, group), expected);
    for device in [admin, second] {
        assert_eq!(net.device(device).group(group).map(|g| g.unsafe_messages()), Some(0), "{device}'s edits are safe");
    }
}

#[test]
fn a_burst_over_a_page_goes_out_a_page_at_a_time() {
    let (mut net, group, [admin, _, third]) = group_of_three_with(Config { page_messages_max: 2, ..Config::default() });
    net.hold_flushes = true;
    for insert in ["a", "b", "c"] {
        edit(&mut net, admin, group, insert);
    }
    cov_mark::check!(device_posts_a_full_frame_and_starts_another);
    net.flush(admin);
    let posts = take_sent(&mut net, admin);
    let to_first: Vec<Vec<u64>> = posts.iter().filter(|(to, _)| *to == acceptor_ids()[0]).map(|(_, m)| seqs(m)).collect();
    assert_eq!(to_first.len(), 2, "three batches are two posts of at most two: {to_first:?}");
    assert_eq!(to_first.concat().len(), 3);
    let acceptor = acceptor_ids()[0];
    cov_mark::check!(acceptor_sends_a_full_page_before_the_flush);
    for (_, post) in posts.into_iter().filter(|(to, _)| *to == acceptor) {
        deliver(&mut net, admin, acceptor, post, group);
    }
    let early: Vec<usize> =
        take_sent(&mut net, acceptor).iter().filter(|(to, _)| *to == third).map(|(_, m)| seqs(m).len()).collect();
    assert_eq!(early, vec![2], "a full page goes before the flush");
    net.flush(acceptor);
    let rest: Vec<usize> =
        take_sent(&mut net, acceptor).iter().filter(|(to, _)| *to == third).map(|(_, m)| seqs(m).len()).collect();
    assert_eq!(rest, vec![1], "the rest at the flush");
}

#[test]
fn a_peer_copy_between_two_posts_splits_the_push_into_runs() {
    let (mut net, group, [admin, second, third]) = group_of_three_with(Config::default());
    let (first, peer) = (acceptor_ids()[0], acceptor_ids()[1]);
    net.hold_flushes = true;
    for (device, insert) in [(admin, "a"), (second, "x"), (third, "t")] {
        edit(&mut net, device, group, insert);
        net.flush(device);
    }
    let post_to = |net: &mut Net, device: NodeId, acceptor: NodeId| {
        take_sent(net, device).into_iter().find(|(to, _)| *to == acceptor).expect("posted to every acceptor").1
    };
    let (from_admin, from_second, from_third) =
        (post_to(&mut net, admin, first), post_to(&mut net, second, peer), post_to(&mut net, third, first));
    let held = net.acceptor(first).group(group).expect("hosts").stored_messages().0 as u64;
    deliver(&mut net, admin, first, from_admin, group);
    // The second member's message reaches the first acceptor as a copy from its peer.
    let Message::Post { messages } = from_second else { panic!("a post") };
    let copy =
        StoredMessage { id: UpdateId { sender: second, seq: messages[0].seq }, ciphertext: messages[0].ciphertext.clone() };
    let incarnation = net.acceptor(peer).group(group).expect("hosts").incarnation();
    let page = Message::Page { after: Cursor { incarnation, position: 1_000 }, messages: vec![(1_001, copy)], more: false };
    deliver(&mut net, peer, first, page, group);
    deliver(&mut net, third, first, from_third, group);
    let positions: Vec<u64> = net.acceptor(first).group(group).expect("hosts").messages().map(|(p, _)| p).collect();
    assert_eq!(positions.len() as u64, held + 3, "two posts and a copy stored");
    let [.., by_admin, copied, by_third] = positions[..] else { panic!("three new positions") };
    assert_eq!((copied, by_third), (by_admin + 1, by_admin + 2));
    net.flush(first);
    let pages_to = |sent: &[(NodeId, Message)], reader: NodeId| -> Vec<(u64, Vec<u64>)> {
        sent.iter()
            .filter_map(|(to, message)| match message {
                Message::Page { after, messages, .. } if *to == reader => {
                    Some((after.position, messages.iter().map(|(position, _)| *position).collect()))
                }
                _ => None,
            })
            .collect()
    };
    let sent = take_sent(&mut net, first);
    // The copy is not pushed: the run of the admin's message ends before it, the third's starts
    // after it. A reader's own message is left out (an empty run sends nothing).
    assert_eq!(pages_to(&sent, second), vec![(by_admin - 1, vec![by_admin]), (copied, vec![by_third])]);
    assert_eq!(pages_to(&sent, admin), vec![(copied, vec![by_third])]);
    assert_eq!(pages_to(&sent, third), vec![(by_admin - 1, vec![by_admin])]);
}
