//! The real driver over turmoil's simulated network: seeded runs with message loss, partitions,
//! host crashes and a rogue peer, proving the async layer (reconnects, backoff, frame handling,
//! persist ordering) under faults. Each scenario is one `Cluster` of three acceptors and two
//! devices on virtual time; its name says what Plait survives, and the same seed replays it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use plait_io_iroh::clock::Clock;
use plait_io_iroh::links::{LinkStats, Links};
use plait_io_iroh::storage::MemoryStorage;
use plait_io_iroh::{Driver, LinkErrorKind, Rebuild, Timers};
use plait_kernel::log::GroupGenesis;
use plait_kernel::storage::{Record, WriteBatch};
use plait_kernel::updates::UpdateId;
use plait_kernel::wire::{self, Envelope, Message, kind};
use plait_kernel::{Command, Effect, Event, Input, Node, Outputs, Restored, Time};
use plait_kernel::{GroupId, NodeId, Rejection};
use tokio::io::AsyncWriteExt;
use turmoil::net::TcpStream;

use support::turmoil_net::{PORT, Tap, TurmoilNetwork, TurmoilOptions, chunk};
use support::{Cluster, Options, Script, Sent, SlowDisk, acceptor, device, link_limits, rogue};

/// Virtual milliseconds a scenario gives the devices to converge after its faults heal.
const CONVERGE_MS: u64 = 30_000;
/// The chance that sending a segment breaks its link in the lossy runs.
const LOSSY_FAIL_RATE: f64 = 0.05;

fn errors(stats: &LinkStats) -> u64 {
    stats.errors.iter().sum()
}

fn errors_of(stats: &LinkStats, kind: LinkErrorKind) -> u64 {
    stats.errors[LinkErrorKind::ALL.iter().position(|k| *k == kind).expect("every kind listed")]
}

/// The ids of the document messages an acceptor stores for `group`.
async fn stored(script: &Script, node: NodeId, group: GroupId) -> turmoil::Result<BTreeSet<UpdateId>> {
    let booted = script.acceptor(node).await;
    let ids = booted.handle.inspect(move |a| a.group(group).map(|g| g.messages().map(|(_, m)| m.id).collect())).await?;
    Ok(ids.unwrap_or_default())
}

/// The founder creates a group and invites the second device.
async fn group_of_two(script: &Script) -> turmoil::Result<GroupId> {
    let group = script.create_group(device(1)).await?;
    script.invite(device(1), device(2), group).await?;
    Ok(group)
}

/// What a lossy run ends with: the devices' text, and every node's link counters and driver
/// status (devices first).
#[derive(Debug)]
struct LossyOutcome {
    text: String,
    links: Vec<LinkStats>,
    status: Vec<String>,
    elapsed_ms: u64,
}

/// Two devices edit in turns with up to 40 ms latency; `fail_rate` is the chance that a send
/// breaks its link (dropping what was in flight), and a broken link heals on 30% of later sends.
fn edit_in_turns(seed: u64, fail_rate: f64) -> (LossyOutcome, Vec<String>) {
    let mut options = Options::new(seed);
    options.latency_ms_max = 40;
    options.fail_rate = fail_rate;
    options.repair_rate = 0.3;
    Cluster::new(options).run(|script| async move {
        let group = group_of_two(&script).await?;
        let mut snippets = Vec::new();
        for round in 0..5 {
            for index in [1, 2] {
                let snippet = format!("d{index}r{round} ");
                script.edit(device(index), group, &snippet).await?;
                snippets.push(snippet);
            }
            script.sleep_ms(300).await;
        }
        let snippets: Vec<&str> = snippets.iter().map(String::as_str).collect();
        let text = script.converge(&[device(1), device(2)], group, &snippets, CONVERGE_MS).await?;
        let mut links = Vec::new();
        let mut status = Vec::new();
        for index in [1, 2] {
            let handle = script.device(device(index)).await;
            links.push(handle.link_stats());
            status.push(format!("{:?}", handle.status()));
        }
        for index in 1..=3 {
            let handle = script.acceptor(acceptor(index)).await.handle;
            links.push(handle.link_stats());
            status.push(format!("{:?}", handle.status()));
        }
        Ok(LossyOutcome { text, links, status, elapsed_ms: script.now_ms() })
    })
}

/// Links break and heal at random (5% of sends break one) under both devices' edits: every
/// edit reaches both devices and ends stored by a write quorum. On the way dials were refused
/// or timed out and the devices opened links again, none of which the same run on a calm
/// network shows (there each device opens one link per acceptor and keeps it).
#[test]
fn edits_reach_every_device_over_a_lossy_network() {
    let seed = support::seed(7);
    let (calm, _) = edit_in_turns(seed, 0.0);
    let (lossy, _) = edit_in_turns(seed, LOSSY_FAIL_RATE);
    for outcome in [&calm, &lossy] {
        assert_eq!(outcome.text.split_whitespace().count(), 10, "all ten edits: {:?}", outcome.text);
    }
    let lost = |outcome: &LossyOutcome| {
        outcome
            .links
            .iter()
            .map(|links| errors_of(links, LinkErrorKind::Refused) + errors_of(links, LinkErrorKind::Timeout))
            .sum::<u64>()
    };
    let devices_calm = calm.links[..2].iter().all(|links| errors(links) == 0 && links.links_opened == 3);
    assert!(devices_calm && lost(&calm) == 0, "a calm network breaks no device link: {:#?}", calm.links);
    assert!(lost(&lossy) > 0, "the lossy network refused dials or timed links out: {:#?}", lossy.links);
    assert!(lossy.links[..2].iter().any(|links| links.links_opened > 3), "devices reconnected: {:#?}", lossy.links);
}

/// An acceptor cut off from everyone mid-edits: the other two keep a write quorum, the
/// devices' dials to it fail and back off (exponentially, so only a few in the partition), and
/// after repair they reconnect and it catches up on every message it missed.
#[test]
fn a_partitioned_acceptor_reconnects_after_repair_with_backoff() {
    const PARTITION_MS: u64 = 8_000;
    let ((), _) = Cluster::new(Options::new(support::seed(11))).run(|script| async move {
        let (first, second, cut) = (device(1), device(2), acceptor(3));
        let group = group_of_two(&script).await?;
        script.edit(first, group, "before ").await?;
        script.converge(&[first, second], group, &["before "], CONVERGE_MS).await?;
        let before = script.device_links(first).await;
        assert_eq!(errors(&before), 0, "a calm network breaks no link: {before:?}");

        script.isolate(cut);
        let cut_at = script.now_ms();
        for round in 0..PARTITION_MS / 500 {
            script.edit(first, group, &format!("cut{round} ")).await?;
            script.sleep_ms(250).await;
            script.edit(second, group, &format!("off{round} ")).await?;
            script.sleep_ms(250).await;
        }
        script.converge(&[first, second], group, &["cut0 ", "off0 "], CONVERGE_MS).await?;
        let during = script.device_links(first).await;
        let partitioned_ms = script.now_ms() - cut_at;
        let peer = during.peers.get(&cut).cloned().unwrap_or_default();
        assert!(!peer.connected && peer.failures >= 2, "dials to the cut acceptor fail again and again: {during:?}");
        let dials_max = dials_max_within(partitioned_ms);
        assert!(peer.failures <= dials_max, "{} failed dials in {partitioned_ms} ms, backoff allows {dials_max}", peer.failures);

        script.heal(cut);
        script.edit(first, group, "after ").await?;
        let text = script.converge(&[first, second], group, &["after "], CONVERGE_MS).await?;
        let script = &script;
        script
            .until("the healed acceptor catches up", CONVERGE_MS, || async move {
                Ok(stored(script, cut, group).await? == stored(script, acceptor(1), group).await?)
            })
            .await?;
        script
            .until("both devices reconnect to the healed acceptor", CONVERGE_MS, || async move {
                for node in [first, second] {
                    let links = script.device_links(node).await;
                    if !links.peers.get(&cut).is_some_and(|peer| peer.connected && peer.failures == 0) {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
            .await?;
        let after = script.device_links(first).await;
        assert!(after.links_opened > before.links_opened, "a new link came up after repair: {after:?}");
        assert!(errors(&after) > errors(&before), "the partition showed as link errors: {after:?}");
        assert!(text.contains("before ") && text.contains("cut0 "));
        Ok(())
    });
}

/// The most dials that can fail within `window_ms` under the test link limits: after the
/// `n`-th failure the next dial waits at least half of `min · 2^n`, capped at the max.
fn dials_max_within(window_ms: u64) -> u32 {
    let limits = link_limits();
    let (mut dials, mut spent_ms) = (1, 0);
    loop {
        let base = limits.backoff_ms_min.saturating_mul(1 << dials.min(20)).min(limits.backoff_ms_max);
        spent_ms += base / 2;
        if spent_ms > window_ms {
            return dials;
        }
        dials += 1;
    }
}

/// An idle device's link to an acceptor that restarts comes back up at once, though the device
/// has nothing to send (its syncs are 8 s apart while idle): it dials again because the link it
/// opened died, so the acceptor (which keeps its subscribers) can push to it again, and the
/// device syncs with it as soon as the link is up (`Input::LinkUp`). Virtual time: with
/// `redials_max` 0 this seed's link is not back within the 2 s (only the device's next round brings it).
#[test]
fn a_device_dials_again_an_acceptor_whose_link_died() {
    let ((), _) = Cluster::new(Options::new(support::seed(29))).run(|script| async move {
        let (first, second, restarted) = (device(1), device(2), acceptor(2));
        let group = group_of_two(&script).await?;
        script.edit(first, group, "before ").await?;
        script.converge(&[first, second], group, &["before "], CONVERGE_MS).await?;
        // Idle long enough that syncs are at the ceiling's pace.
        script.sleep_ms(60_000).await;
        script.crash(restarted).await;
        script.sleep_ms(1_000).await;
        script.restart(restarted).await;
        let script = &script;
        script
            .until("the device's link to the restarted acceptor is up again", 2_000, || async move {
                Ok(script.device_links(second).await.peers.get(&restarted).is_some_and(|peer| peer.connected))
            })
            .await?;
        Ok(())
    });
}

/// Edits made safe by exactly two acceptors survive one of them crashing: it restarts from its
/// disk, and the third acceptor (cut off until then) can only learn those edits from the
/// restarted one. Edits typed while no quorum was up become safe once one is back.
#[test]
fn an_acceptor_crash_and_restart_loses_no_safe_edit() {
    let ((), _) = Cluster::new(Options::new(support::seed(23))).run(|script| async move {
        let (first, second) = (device(1), device(2));
        let (crashed, kept, late) = (acceptor(1), acceptor(2), acceptor(3));
        let group = group_of_two(&script).await?;
        script.isolate(late);
        script.edit(first, group, "alpha ").await?;
        script.edit(second, group, "beta ").await?;
        script.converge(&[first, second], group, &["alpha ", "beta "], CONVERGE_MS).await?;
        // The messages the cut-off acceptor lacks (the founder may have posted one before the cut).
        let before_cut = stored(&script, late, group).await?;
        let safe: BTreeSet<UpdateId> = stored(&script, kept, group).await?.difference(&before_cut).copied().collect();
        let senders: BTreeSet<NodeId> = safe.iter().map(|id| id.sender).collect();
        assert_eq!(senders, BTreeSet::from([first, second]), "both edits are safe without the cut-off acceptor: {safe:?}");

        script.crash(crashed).await;
        script.edit(first, group, "gamma ").await?;
        script.sleep_ms(1_000).await;
        let (_, unsafe_messages) = script.document(first, group).await?;
        assert_eq!(unsafe_messages, 1, "one acceptor up is no write quorum");

        script.restart(crashed).await;
        script.isolate(kept);
        script.heal(late);
        let text = script.converge(&[first, second], group, &["alpha ", "beta ", "gamma "], CONVERGE_MS).await?;
        let (script, safe) = (&script, &safe);
        script
            .until("the late acceptor learns the safe edits from the restarted one", CONVERGE_MS, || async move {
                Ok(safe.is_subset(&stored(script, late, group).await?))
            })
            .await?;
        assert!(safe.is_subset(&stored(script, crashed, group).await?), "the restarted acceptor kept its disk");

        script.heal(kept);
        let mut all = BTreeSet::new();
        for node in [crashed, kept, late] {
            all.extend(stored(script, node, group).await?);
        }
        let all = &all;
        script
            .until("every acceptor holds every message", CONVERGE_MS, || async move {
                for node in [crashed, kept, late] {
                    if stored(script, node, group).await? != *all {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
            .await?;
        assert_eq!(script.acceptor(crashed).await.boots, 2);
        assert!(text.contains("gamma "));
        Ok(())
    });
}

/// A rogue connects to an acceptor with a short hello, then with valid hellos followed by a
/// frame of unknown tag, a header announcing a frame over the limit, and kernel frames of
/// garbage. The first three close only their own link; garbage kernel frames are the kernel's
/// to reject (the link stays up). The acceptor keeps serving: with the third acceptor cut off,
/// no edit could become safe without it.
#[test]
fn garbage_and_oversized_frames_close_only_that_link() {
    let mut options = Options::new(support::seed(58));
    options.rogue = true;
    let mut cluster = Cluster::new(options);
    cluster.client("rogue", async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let announced = link_limits().frame_bytes_max as u32 + 2;
        let hello = rogue().0;
        // After its hello a peer writes chunks (see `turmoil_net`); the link frames are inside.
        let with_hello = |frame: &[u8]| [&hello[..], &chunk(frame)].concat();
        let garbage_frame = [0, 0, 0, 4, 0, wire::PROTOCOL_VERSION, 0xde, 0xad];
        let short = rogue_link("a short hello", hello[..5].to_vec()).await?;
        let unknown_tag = rogue_link("an unknown tag", with_hello(&[0, 0, 0, 3, 7, 1, 2])).await?;
        let oversized = rogue_link("an oversized frame", with_hello(&announced.to_be_bytes())).await?;
        let mut garbage = rogue_link("a garbage kernel frame", with_hello(&garbage_frame)).await?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let again = chunk(&garbage_frame);
        garbage.write_all(&again).await.map_err(|error| format!("a second garbage kernel frame: {error}"))?;
        tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
        drop((short, unknown_tag, oversized, garbage));
        Ok(())
    });
    let ((), _) = cluster.run(|script| async move {
        let (first, second) = (device(1), device(2));
        let group = group_of_two(&script).await?;
        script.isolate(acceptor(3));
        script.sleep_ms(1_000).await;
        for round in 0..4 {
            script.edit(first, group, &format!("a{round} ")).await?;
            script.edit(second, group, &format!("b{round} ")).await?;
            script.sleep_ms(200).await;
        }
        script.converge(&[first, second], group, &["a3 ", "b3 "], CONVERGE_MS).await?;

        let target = acceptor(1);
        let booted = script.acceptor(target).await;
        let stats = booted.handle.link_stats();
        assert_eq!(stats.links_refused, 0, "three links are within links_per_peer_max: {stats:?}");
        assert_eq!(errors_of(&stats, LinkErrorKind::Protocol), 2, "the unknown tag and the oversized frame: {stats:?}");
        let bad_hellos = booted.network.counters().bad_hellos.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(bad_hellos, 1, "the short hello");
        let malformed = booted.handle.inspect(|a| a.counters().of(Rejection::Malformed)).await?;
        assert_eq!(malformed, 2, "both garbage kernel frames reached the kernel over one link that stayed up");
        for node in [first, second] {
            let links = script.device_links(node).await;
            let to_target = links.peers.get(&target).cloned().unwrap_or_default();
            assert!(to_target.connected && to_target.last_error.is_none(), "{node}'s link to {target} never broke: {links:?}");
        }
        Ok(())
    });
}

/// Opens a link to acceptor n1 and writes `bytes` on it.
async fn rogue_link(what: &str, bytes: Vec<u8>) -> turmoil::Result<TcpStream> {
    let mut stream = TcpStream::connect(("acceptor-1", PORT)).await.map_err(|error| format!("{what}: {error}"))?;
    stream.write_all(&bytes).await.map_err(|error| format!("{what}: {error}"))?;
    Ok(stream)
}

/// Counts of what the persist check saw, and what it caught.
#[derive(Debug, Default)]
struct PersistCheck {
    prepares: u64,
    promises: u64,
    accepted: u64,
    violations: Vec<String>,
}

impl PersistCheck {
    /// The simulator's `no-send-before-its-persist` rule, judged as the frame leaves: a promise
    /// or an acknowledged accept must be on the sender's disk, and a prepare's round too.
    fn check(&mut self, sent: Sent<'_>) {
        let inspected = [kind::PREPARE, kind::PROMISE, kind::ACCEPTED];
        if wire::peek(sent.frame).is_none_or(|(_, kind)| !inspected.contains(&kind)) {
            return;
        }
        let Ok(Envelope { group, message }) = wire::decode(sent.frame, usize::MAX) else {
            return self.violations.push(format!("{} sent an undecodable frame", sent.from));
        };
        let durable = sent.durable.restored();
        let state = durable.groups.get(&group);
        let (from, to) = (sent.from, sent.to);
        match message {
            Message::Prepare { ballot, .. } => {
                self.prepares += 1;
                if ballot.round > state.map_or(0, |s| s.round_floor) {
                    self.violations.push(format!("{from} prepared {ballot:?} to {to} before its round was durable"));
                }
            }
            Message::Promise { ballot, .. } => {
                self.promises += 1;
                if state.is_none_or(|s| s.promised < ballot) {
                    self.violations.push(format!("{from} promised {ballot:?} to {to} before the promise was durable"));
                }
            }
            Message::Accepted { ballot, slot, value_hash } => {
                self.accepted += 1;
                let accepted =
                    state.and_then(|s| s.accepted.get(&slot)).is_some_and(|a| a.ballot == ballot && a.value_hash == value_hash);
                let chosen = state.is_some_and(|s| s.chosen.contains_key(&slot));
                if !accepted && !chosen {
                    self.violations
                        .push(format!("{from} acknowledged {ballot:?} at slot {} to {to} before it was durable", slot.0));
                }
            }
            _ => {}
        }
    }
}

/// Every Paxos promise and acknowledged accept an acceptor sends, and every prepare a device
/// sends, is already on its sender's disk when the frame leaves, although every commit takes
/// 5 ms of virtual time: the driver waits for each persist before the sends that depend on it.
#[test]
fn persist_happens_before_dependent_sends() {
    let check = Arc::new(Mutex::new(PersistCheck::default()));
    let mut options = Options::new(support::seed(43));
    options.apply_delay_ms = 5;
    let tap = check.clone();
    options.tap = Some(Arc::new(move |sent| tap.lock().expect("check lock").check(sent)));
    let ((), _) = Cluster::new(options).run(|script| async move {
        let (first, second) = (device(1), device(2));
        let group = group_of_two(&script).await?;
        for round in 0..3 {
            script.edit(first, group, &format!("x{round} ")).await?;
            let handle = script.device(second).await;
            handle.command(plait_kernel::Command::RotateKeys { group }).await?;
            script.sleep_ms(300).await;
        }
        script.converge(&[first, second], group, &["x2 "], CONVERGE_MS).await?;
        Ok(())
    });
    let check = check.lock().expect("check lock");
    assert!(check.violations.is_empty(), "sent before durable: {:#?}", check.violations);
    assert!(check.prepares > 0 && check.promises > 0 && check.accepted > 0, "the check saw Paxos traffic: {check:?}");
}

/// The two nodes of the single-driver tests, and their address book.
fn writer_and_peer() -> (NodeId, NodeId, Arc<BTreeMap<NodeId, String>>) {
    let (writer, peer) = (device(1), device(2));
    let book = Arc::new([(writer, "writer".to_owned()), (peer, "peer".to_owned())].into_iter().collect());
    (writer, peer, book)
}

/// Whether the group those tests' nodes write is on `disk`.
fn group_is_durable(disk: &MemoryStorage) -> bool {
    disk.restored().groups.contains_key(&group_genesis().group_id())
}

/// Host "peer": `peer`'s links, taking every frame and doing nothing with it.
fn sink_peer(sim: &mut turmoil::Sim<'_>, peer: NodeId, book: &Arc<BTreeMap<NodeId, String>>) {
    let book = Arc::clone(book);
    sim.host("peer", move || {
        let book = Arc::clone(&book);
        async move {
            let network = TurmoilNetwork::bind(peer, book, TurmoilOptions::default(), None).await?;
            let (_links, mut inbound) = Links::start(network, link_limits(), 2);
            while inbound.recv().await.is_some() {}
            Ok(())
        }
    });
}

/// A node whose first command writes a group and sends, and whose next commands only send:
/// those sends depend on the write, as a repeated Promise depends on the promise's.
struct WriteThenResend {
    peer: NodeId,
    commands: u8,
}

impl Node for WriteThenResend {
    fn handle(&mut self, _now: Time, input: Input) -> Outputs {
        let mut effects = Vec::new();
        if let Input::Command(_) = input {
            self.commands += 1;
            if self.commands == 1 {
                effects.push(Effect::Persist(WriteBatch {
                    records: vec![Record::Group { group: group_genesis().group_id(), genesis: group_genesis() }],
                }));
            }
            effects.push(Effect::Send { to: self.peer, frame: vec![self.commands] });
        }
        Outputs { effects, wake_at: None, wants_flush: false, rebuild_from_storage: false }
    }
}

fn group_genesis() -> GroupGenesis {
    GroupGenesis { nonce: 9, acceptors: support::acceptor_set(), proposers: vec![device(1)], group_info: None }
}

/// The pipelined driver goes on handling inputs while a commit is in flight, and a send of a
/// round that wrote nothing still waits for that commit: each frame leaves only once the
/// group written before it is on the sender's (slow) disk.
#[test]
fn a_send_of_a_round_without_writes_waits_for_the_commit_in_flight() {
    let (writer, peer, book) = writer_and_peer();
    let disk = MemoryStorage::default();
    let seen: Arc<Mutex<Vec<(u8, bool)>>> = Arc::default();
    let mut sim = turmoil::Builder::new().rng_seed(support::seed(11)).build();
    sink_peer(&mut sim, peer, &book);
    let (tap_disk, tap_seen) = (disk.clone(), Arc::clone(&seen));
    let tap: Tap = Arc::new(move |_, _, frame| {
        let durable = group_is_durable(&tap_disk);
        tap_seen.lock().expect("seen lock").push((frame[0], durable));
    });
    sim.client("writer", async move {
        let network = TurmoilNetwork::bind(writer, book, TurmoilOptions::default(), Some(tap)).await?;
        let node = WriteThenResend { peer, commands: 0 };
        let (handle, _links, _task) =
            Driver::start(node, Outputs::default(), Clock::starting_at(0), network, SlowDisk::new(disk, 50), link_limits(), 1);
        let command = || Command::RotateKeys { group: group_genesis().group_id() };
        // Each next command arrives while the first round's commit (50 ms) is in flight.
        for _ in 0..3 {
            handle.command(command()).await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        Ok(())
    });
    sim.run().expect("the run ends");
    let seen = seen.lock().expect("seen lock");
    assert_eq!(seen.iter().map(|(frame, _)| *frame).collect::<Vec<_>>(), vec![1, 2, 3], "every frame left, in order");
    assert!(seen.iter().all(|(_, durable)| *durable), "a frame left before the write it depends on was durable: {seen:?}");
}

/// A node whose command writes, then tells its app of another member's update and of a slot
/// chosen, then sends.
struct WriteThenTell {
    peer: NodeId,
}

impl Node for WriteThenTell {
    fn handle(&mut self, _now: Time, input: Input) -> Outputs {
        let mut effects = Vec::new();
        if let Input::Command(_) = input {
            let group = group_genesis().group_id();
            effects.push(Effect::Persist(WriteBatch { records: vec![Record::Group { group, genesis: group_genesis() }] }));
            let id = UpdateId { sender: self.peer, seq: 1 };
            effects.push(Effect::Notify(Event::DocumentChanged { group, id }));
            effects.push(Effect::Notify(Event::Committed { group, slot: plait_kernel::ids::Slot(1) }));
            effects.push(Effect::Send { to: self.peer, frame: vec![1] });
        }
        Outputs { effects, wake_at: None, wants_flush: false, rebuild_from_storage: false }
    }
}

/// The app hears of another member's update while the write before it is still on its way to
/// the (slow) disk: an acceptor holds that update already. Every other event, and every send,
/// waits for the write.
#[test]
fn another_members_update_reaches_the_app_before_the_write_before_it_is_durable() {
    let (writer, peer, book) = writer_and_peer();
    let disk = MemoryStorage::default();
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let durable = {
        let disk = disk.clone();
        move || group_is_durable(&disk)
    };
    let mut sim = turmoil::Builder::new().rng_seed(support::seed(13)).build();
    sink_peer(&mut sim, peer, &book);
    let (tap_durable, tap_seen) = (durable.clone(), Arc::clone(&seen));
    let tap: Tap = Arc::new(move |_, _, _| tap_seen.lock().expect("seen lock").push(("send".to_owned(), tap_durable())));
    let app_seen = Arc::clone(&seen);
    sim.client("writer", async move {
        let network = TurmoilNetwork::bind(writer, book, TurmoilOptions::default(), Some(tap)).await?;
        let node = WriteThenTell { peer };
        let (handle, _links, _task) =
            Driver::start(node, Outputs::default(), Clock::starting_at(0), network, SlowDisk::new(disk, 50), link_limits(), 1);
        let mut events = handle.subscribe();
        let app = tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                let name = format!("{event:?}").split_whitespace().next().unwrap_or_default().to_owned();
                app_seen.lock().expect("seen lock").push((name, durable()));
            }
        });
        handle.command(Command::RotateKeys { group: group_genesis().group_id() }).await?;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        app.abort();
        Ok(())
    });
    sim.run().expect("the run ends");
    let seen = seen.lock().expect("seen lock");
    let expected = [("DocumentChanged", false), ("Committed", true), ("send", true)];
    assert_eq!(*seen, expected.map(|(what, durable)| (what.to_owned(), durable)), "what left when");
}

/// A node that gathers: each command asks for a flush, and a flush sends one frame with the
/// number of commands since the last one.
struct Gatherer {
    peer: NodeId,
    gathered: u8,
}

impl Node for Gatherer {
    fn handle(&mut self, _now: Time, input: Input) -> Outputs {
        let mut effects = Vec::new();
        match input {
            Input::Command(_) => self.gathered += 1,
            Input::Flush => effects.push(Effect::Send { to: self.peer, frame: vec![std::mem::take(&mut self.gathered)] }),
            _ => {}
        }
        Outputs { effects, wake_at: None, wants_flush: self.gathered > 0, rebuild_from_storage: false }
    }
}

/// The driver delivers `Input::Flush` once it handled the inputs that were waiting, not after
/// each one, and again for inputs that come later.
#[test]
fn a_node_that_gathers_sends_is_flushed_once_the_waiting_inputs_are_handled() {
    let (writer, peer, book) = writer_and_peer();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let mut sim = turmoil::Builder::new().rng_seed(support::seed(12)).build();
    sink_peer(&mut sim, peer, &book);
    let tap_seen = Arc::clone(&seen);
    let tap: Tap = Arc::new(move |_, _, frame| tap_seen.lock().expect("seen lock").push(frame[0]));
    sim.client("writer", async move {
        let network = TurmoilNetwork::bind(writer, book, TurmoilOptions::default(), Some(tap)).await?;
        let node = Gatherer { peer, gathered: 0 };
        let (handle, _links, _task) =
            Driver::start(node, Outputs::default(), Clock::starting_at(0), network, MemoryStorage::default(), link_limits(), 1);
        let command = || Command::RotateKeys { group: group_genesis().group_id() };
        // Three commands wait together (the driver's task has not run yet), a fourth comes alone.
        for _ in 0..3 {
            handle.command(command()).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.command(command()).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    });
    sim.run().expect("the run ends");
    assert_eq!(*seen.lock().expect("seen lock"), vec![3, 1]);
}

/// A node that wants its timer at once and a flush after each command, and sends a frame at
/// each: 0 for a timer, 1 for a flush.
struct Eager {
    peer: NodeId,
}

impl Node for Eager {
    fn handle(&mut self, now: Time, input: Input) -> Outputs {
        let frame = match input {
            Input::Timer => Some(0),
            Input::Flush => Some(1),
            _ => None,
        };
        let effects = frame.map(|byte| Effect::Send { to: self.peer, frame: vec![byte] }).into_iter().collect();
        Outputs { effects, wake_at: Some(now), wants_flush: matches!(input, Input::Command(_)), rebuild_from_storage: false }
    }
}

/// The frames an [`Eager`] node sent in 300 ms with two commands, driven with `timers`, and how
/// many inputs it handled.
fn eager_run(timers: Timers) -> (Vec<u8>, u64) {
    let (writer, peer, book) = writer_and_peer();
    let seen: Arc<Mutex<(Vec<u8>, u64)>> = Arc::default();
    let mut sim = turmoil::Builder::new().rng_seed(support::seed(13)).build();
    sink_peer(&mut sim, peer, &book);
    let tap_seen = Arc::clone(&seen);
    let tap: Tap = Arc::new(move |_, _, frame| tap_seen.lock().expect("seen lock").0.push(frame[0]));
    let inputs = Arc::clone(&seen);
    sim.client("writer", async move {
        let network = TurmoilNetwork::bind(writer, book, TurmoilOptions::default(), Some(tap)).await?;
        let parts = (Clock::starting_at(0), network, MemoryStorage::default());
        let (handle, _links, _task) =
            Driver::start_with(Eager { peer }, Outputs::default(), parts, link_limits(), 1, (timers, None));
        for _ in 0..2 {
            handle.command(Command::RotateKeys { group: group_genesis().group_id() }).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        inputs.lock().expect("seen lock").1 = handle.status().inputs;
        Ok(())
    });
    sim.run().expect("the run ends");
    std::mem::take(&mut *seen.lock().expect("seen lock"))
}

/// A driver holding timers (a device opened offline for one local command) feeds the node only
/// what the host gives it: no timer and no flush, so nothing of the node's own leaves.
#[test]
fn a_driver_holding_timers_feeds_the_node_only_the_hosts_inputs() {
    let (fed, fed_inputs) = eager_run(Timers::Fed);
    assert!(fed.contains(&0) && fed.contains(&1) && fed_inputs > 2, "fed: timers and flushes ({fed:?})");
    assert_eq!(eager_run(Timers::Held), (vec![], 2), "held: the two commands alone");
}

/// Nothing in a run reads the wall clock or OS randomness: the same seed gives the same trace
/// of events, the same counters and the same end, and another seed a different run.
#[test]
fn the_same_seed_gives_the_same_run() {
    let seed = support::seed(5);
    let (first, first_trace) = edit_in_turns(seed, LOSSY_FAIL_RATE);
    let (again, again_trace) = edit_in_turns(seed, LOSSY_FAIL_RATE);
    assert_eq!(first_trace, again_trace);
    assert_eq!(first.text, again.text);
    assert_eq!(format!("{:?}", first.links), format!("{:?}", again.links));
    assert_eq!(first.status, again.status);
    assert_eq!(first.elapsed_ms, again.elapsed_ms);
    let (_, other_trace) = edit_in_turns(seed + 1, LOSSY_FAIL_RATE);
    assert_ne!(first_trace, other_trace, "the seed drives the run");
}

/// A node whose every command tells its app of `updates` other members' updates and one
/// snapshot imported.
struct TellMany {
    updates: u64,
}

impl Node for TellMany {
    fn handle(&mut self, _now: Time, input: Input) -> Outputs {
        let mut effects = Vec::new();
        if let Input::Command(_) = input {
            let group = group_genesis().group_id();
            for seq in 1..=self.updates {
                let id = UpdateId { sender: NodeId([7; 32]), seq };
                effects.push(Effect::Notify(Event::DocumentChanged { group, id }));
            }
            effects.push(Effect::Notify(Event::SnapshotImported { group, covered_messages: 0 }));
        }
        Outputs { effects, wake_at: None, wants_flush: false, rebuild_from_storage: false }
    }
}

/// A subscriber that falls further behind than the driver buffers events for misses some; the
/// driver's own counts of applied updates and imported snapshots miss none (the benchmark
/// counts with them: counting events, it once waited forever).
#[test]
fn the_driver_counts_every_update_told_though_a_subscriber_falls_behind() {
    let (writer, peer, book) = writer_and_peer();
    let updates = plait_io_iroh::driver::EVENTS_BUFFERED_MAX as u64 + 100;
    let mut sim = turmoil::Builder::new().rng_seed(support::seed(17)).build();
    sink_peer(&mut sim, peer, &book);
    sim.client("writer", async move {
        let network = TurmoilNetwork::bind(writer, book, TurmoilOptions::default(), None).await?;
        let (handle, _links, _task) = Driver::start(
            TellMany { updates },
            Outputs::default(),
            Clock::starting_at(0),
            network,
            MemoryStorage::default(),
            link_limits(),
            1,
        );
        let mut events = handle.subscribe();
        handle.command(Command::RotateKeys { group: group_genesis().group_id() }).await?;
        handle.durable().await?;
        let status = handle.status();
        assert_eq!((status.updates_applied, status.snapshots_imported), (updates, 1), "the driver's counts");
        let first = events.recv().await;
        assert!(
            matches!(first, Err(tokio::sync::broadcast::error::RecvError::Lagged(_))),
            "the subscriber fell behind: {first:?}"
        );
        Ok(())
    });
    sim.run().expect("the run ends");
}

/// A node that, at a command, writes a group and a frame to send after it, and asks to be built
/// again from storage, as a device whose document library panicked does.
struct Fragile {
    peer: NodeId,
}

impl Node for Fragile {
    fn handle(&mut self, _now: Time, input: Input) -> Outputs {
        let Input::Command(_) = input else { return Outputs::default() };
        let group = group_genesis().group_id();
        let effects = vec![
            Effect::Persist(WriteBatch { records: vec![Record::Group { group, genesis: group_genesis() }] }),
            Effect::Send { to: self.peer, frame: vec![7] },
        ];
        Outputs { effects, wake_at: None, wants_flush: false, rebuild_from_storage: true }
    }
}

/// What a [`Fragile`] node's driver did with one command, given a way to build the node again
/// or not.
struct FragileRun {
    /// For each node built again, how many groups storage handed it.
    built: Vec<usize>,
    /// The frames it sent.
    sent: Vec<u8>,
    rebuilds: u64,
    /// Why the driver stopped, if it did.
    stopped: Option<String>,
}

fn fragile_run(can_rebuild: bool) -> FragileRun {
    let (writer, peer, book) = writer_and_peer();
    let sent: Arc<Mutex<Vec<u8>>> = Arc::default();
    let built: Arc<Mutex<Vec<usize>>> = Arc::default();
    let outcome: Arc<Mutex<(u64, Option<String>)>> = Arc::default();
    let mut sim = turmoil::Builder::new().rng_seed(support::seed(17)).build();
    sink_peer(&mut sim, peer, &book);
    let tap_sent = Arc::clone(&sent);
    let tap: Tap = Arc::new(move |_, _, frame| tap_sent.lock().expect("sent lock").push(frame[0]));
    let (made, result) = (Arc::clone(&built), Arc::clone(&outcome));
    sim.client("writer", async move {
        let network = TurmoilNetwork::bind(writer, book, TurmoilOptions::default(), Some(tap)).await?;
        let parts = (Clock::starting_at(0), network, MemoryStorage::default());
        let rebuild: Option<Rebuild<Fragile>> = can_rebuild.then(|| {
            Box::new(move |restored: Restored| {
                made.lock().expect("built lock").push(restored.groups.len());
                (Fragile { peer }, Outputs::default())
            }) as Rebuild<Fragile>
        });
        let (handle, _links, task) =
            Driver::start_with(Fragile { peer }, Outputs::default(), parts, link_limits(), 1, (Timers::Fed, rebuild));
        handle.command(Command::RotateKeys { group: group_genesis().group_id() }).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rebuilds = handle.status().rebuilds;
        let stopped =
            if task.is_finished() { task.await.expect("the driver task ends").err().map(|e| e.to_string()) } else { None };
        *result.lock().expect("outcome lock") = (rebuilds, stopped);
        Ok(())
    });
    sim.run().expect("the run ends");
    let (rebuilds, stopped) = std::mem::take(&mut *outcome.lock().expect("outcome lock"));
    let built = std::mem::take(&mut *built.lock().expect("built lock"));
    let sent = std::mem::take(&mut *sent.lock().expect("sent lock"));
    FragileRun { built, sent, rebuilds, stopped }
}

/// A node that asks is built again from what it made durable, once its writes are durable
/// and what they held back went out.
#[test]
fn a_node_that_asks_is_built_again_from_storage_after_its_writes() {
    let run = fragile_run(true);
    assert_eq!(run.built, vec![1], "built again once, from the group it wrote");
    assert_eq!(run.sent.first(), Some(&7), "what the write held back went out");
    assert_eq!((run.rebuilds, run.stopped), (1, None));
}

/// A driver started without a way to build the node again stops, and says why.
#[test]
fn a_driver_that_cannot_build_the_node_again_stops_with_a_typed_error() {
    let run = fragile_run(false);
    assert!(run.built.is_empty() && run.rebuilds == 0);
    assert_eq!(run.sent.first(), Some(&7), "the node's last writes and sends were carried out first");
    let stopped = run.stopped.expect("the driver stopped");
    assert!(stopped.contains("cannot build one"), "{stopped}");
}
