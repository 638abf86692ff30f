//! Fuzzing entry points. The cargo-fuzz targets in `fuzz/` are one-line wrappers over these, and
//! `cargo test` replays the checked-in corpus through them on stable Rust.

use crate::config::Config;
use crate::ids::NodeId;
use crate::io::{Input, Node};
use crate::log::{AcceptorSet, GroupGenesis};
use crate::storage::Restored;
use crate::time::Time;
use crate::wire::{decode, encode};
use crate::{Acceptor, Device};

/// Decodes arbitrary bytes; anything that decodes must re-encode to the same bytes.
pub fn decode_message(bytes: &[u8]) {
    let limit = Config::default().message_bytes_max;
    if let Ok(envelope) = decode(bytes, limit) {
        let again = encode(&envelope, limit).expect("a decoded message re-encodes within the limit");
        assert_eq!(decode(&again, limit).as_ref(), Ok(&envelope), "decode(encode(m)) == m");
    }
}

/// A member and an acceptor's view of a two-member group, built once per process (MLS setup is
/// too slow to repeat per input).
struct MlsFixture {
    member: crate::mls::Member,
    view: crate::mls::PublicView,
}

fn mls_fixture() -> MlsFixture {
    use crate::mls::{Identity, Joining, Member, PublicView};
    let admin = Identity::from_seed([1; 32], b"admin");
    let other = Identity::from_seed([2; 32], b"other");
    let mut founder = Member::create([3; 32], &admin, b"fuzz", 2, 0).expect("create");
    let view_info = founder.group_info(&admin).expect("group info");
    let joining = Joining::new([4; 32], &other).expect("key package");
    let add = founder.commit_add(&admin, &joining.key_package).expect("add");
    founder.merge_own_commit().expect("merge");
    let member = joining.join(&add.welcome.expect("welcome"), 2).expect("join");
    let mut view = PublicView::from_group_info(&view_info).expect("view");
    view.apply_commit(&add.commit).expect("apply");
    MlsFixture { member, view }
}

/// Feeds arbitrary bytes to every MLS entry point that takes bytes from peers: applying a
/// commit, decrypting, checking a commit or application data at an acceptor, starting a view,
/// joining. Nothing may
/// panic, and a member and an acceptor's view accept exactly the same commits, so their epochs
/// stay equal (the seeds include a valid commit, which moves both).
pub fn mls_messages(bytes: &[u8]) {
    use crate::mls::{Identity, Joining, MlsError, PublicView};
    thread_local! {
        // Built once per thread (MLS setup is slow); only validly signed input changes it.
        static FIXTURE: std::cell::RefCell<Option<MlsFixture>> = const { std::cell::RefCell::new(None) };
    }
    FIXTURE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fixture = slot.get_or_insert_with(mls_fixture);
        // A contained panic (`MlsError::Panicked`) is still a panic the fuzzer must report.
        let unpanicked = |result: Result<_, MlsError>| {
            assert!(!matches!(result, Err(MlsError::Panicked)), "openmls panicked (contained)");
            result.is_ok()
        };
        let member_took = unpanicked(fixture.member.apply_commit(bytes));
        unpanicked(fixture.member.decrypt(bytes).map(drop));
        unpanicked(fixture.view.check_application(bytes, 2).map(drop));
        let view_would = unpanicked(fixture.view.check_commit(bytes).map(drop));
        let view_took = unpanicked(fixture.view.apply_commit(bytes).map(drop));
        assert_eq!(view_would, view_took, "checking and applying a commit disagree");
        assert_eq!(member_took, view_took, "a member and an acceptor disagree about a commit");
        assert_eq!(fixture.member.epoch(), fixture.view.epoch());
    });
    assert!(!matches!(PublicView::from_group_info(bytes), Err(MlsError::Panicked)), "openmls panicked (contained)");
    if let Ok(joining) = Joining::new([5; 32], &Identity::from_seed([6; 32], b"joiner")) {
        let joined = joining.join(bytes, 2);
        assert!(!matches!(joined.as_ref().map_err(|failed| &failed.1), Err(MlsError::Panicked)), "openmls panicked (contained)");
    }
}

/// A device that founded an MLS group and typed into its document (its acceptors never
/// answered, so its edits are unsafe), as durable state: each input restarts a device from it.
struct DocumentFixture {
    restored: Restored,
    group: crate::GroupId,
}

/// The founder's id and identity seed.
const DOCUMENT_FOUNDER: u64 = 10;

thread_local! {
    /// Built once per thread (MLS setup is slow).
    static DOCUMENT: std::cell::OnceCell<DocumentFixture> = const { std::cell::OnceCell::new() };
}

fn with_document<R>(f: impl FnOnce(&DocumentFixture) -> R) -> R {
    DOCUMENT.with(|cell| f(cell.get_or_init(document_fixture)))
}

fn document_fixture() -> DocumentFixture {
    use crate::io::Command;
    let config = Config::default().validate().expect("default config is valid");
    let me = NodeId::from_index(DOCUMENT_FOUNDER);
    let (mut device, _) = Device::new(config, me, [10; 32], 1, Restored::empty());
    let mut restored = Restored::empty();
    let mut group = None;
    let acceptors = AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three acceptors");
    let create = Command::CreateGroup { acceptors, nonce: 1, rotation_interval_ms: 0 };
    drive(&mut device, Time(0), Input::Command(create), &mut restored, &mut group);
    let group = group.expect("the group is created");
    for (at, text) in [(10, "hello "), (20, "fuzzy "), (30, "world")] {
        let edit = Command::Edit { group, position: 0, delete: 0, insert: text.into() };
        drive(&mut device, Time(at), Input::Command(edit), &mut restored, &mut None);
    }
    DocumentFixture { restored, group }
}

/// Hands `input` to `device`, then `Input::Flush` if it asks for one; what it persists goes to
/// `restored`, the id of a group it created to `created`.
fn drive(device: &mut Device, now: Time, input: Input, restored: &mut Restored, created: &mut Option<crate::GroupId>) {
    use crate::io::{Effect, Event};
    let outputs = device.handle(now, input);
    // A contained panic (the node asks to be rebuilt) is still a panic the fuzzer must report.
    assert!(!outputs.rebuild_from_storage, "a library panicked inside the device (contained)");
    for effect in outputs.effects {
        match effect {
            Effect::Persist(batch) => restored.apply(&batch),
            Effect::Notify(Event::GroupCreated { group, .. }) => *created = Some(group),
            _ => {}
        }
    }
    if outputs.wants_flush {
        drive(device, now, Input::Flush, restored, created);
    }
}

/// The frames of a [`document_frames`] input: each a 2-byte little-endian length and that many
/// bytes (the last one may be cut short). Lengths, not a separator: a group id may hold any byte.
fn length_prefixed(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (length, rest) = bytes.split_first_chunk::<2>()?;
        let (frame, rest) = rest.split_at(rest.len().min(usize::from(u16::from_le_bytes(*length))));
        bytes = rest;
        Some(frame)
    })
}

/// Feeds arbitrary frames from the group's three acceptors to a device that holds a document in
/// an MLS group (restarted from [`DocumentFixture`] each time), with timers and flushes between
/// them. Nothing may panic.
pub fn document_frames(bytes: &[u8]) {
    run_document_frames(bytes);
}

fn run_document_frames(bytes: &[u8]) -> Device {
    let restored = with_document(|fixture| fixture.restored.clone());
    let config = Config::default().validate().expect("default config is valid");
    let me = NodeId::from_index(DOCUMENT_FOUNDER);
    let (mut device, _) = Device::new(config, me, [10; 32], 2, restored);
    let mut sink = Restored::empty();
    for (i, frame) in length_prefixed(bytes).enumerate() {
        let now = Time(1_000 + 50 * i as u64);
        let from = NodeId::from_index((i % 3) as u64 + 1);
        drive(&mut device, now, Input::Received { from, frame: frame.to_vec() }, &mut sink, &mut None);
        if i % 4 == 3 {
            drive(&mut device, now, Input::Timer, &mut sink, &mut None);
        }
    }
    device
}

/// A document snapshot the simulator made (seed 87 of a compaction scenario: three peers, ~500
/// operations each), which [`loro_updates`] starts from.
const LORO_START: &[u8] = include_bytes!("../tests/data/overlapping-snapshot-a.loro");
/// A later snapshot of the same document, whose operations overlap the first's.
const LORO_LATER: &[u8] = include_bytes!("../tests/data/overlapping-snapshot-b.loro");

/// Feeds arbitrary updates (each a 2-byte length and its bytes) to a document with history,
/// as another member's messages reach it (`Document::merge`), with a local edit after every
/// fourth. Nothing may panic: Loro panics on some overlapping operations (`loro_blob.rs`). A
/// panic inside Loro is contained (the document is `Broken` and the device rebuilt), which
/// would hide it from the fuzzer, so a broken document fails here as the panic did.
pub fn loro_updates(bytes: &[u8]) {
    use crate::document::{Document, DocumentError, LoroDocument};
    let Ok(mut doc) = LoroDocument::new(7) else { return };
    if doc.merge_snapshot(LORO_START).is_err() {
        return;
    }
    for (i, update) in length_prefixed(bytes).enumerate() {
        let merged = doc.merge(update);
        assert_ne!(merged, Err(DocumentError::Broken), "Loro panicked on an update that merge let through");
        if i % 4 == 3 {
            let _ = doc.splice(0, 0, "x");
            let _ = doc.take_local_update();
        }
    }
    let _ = doc.text();
}

/// Inputs for [`loro_updates`]: the later snapshot's operations as updates, one peer at a
/// time, over the whole run (overlapping what the document holds) and over what it lacks.
pub fn loro_seeds() -> Vec<Vec<u8>> {
    use loro::{ExportMode, IdSpan, LoroDoc};
    let (start, later) = (LoroDoc::new(), LoroDoc::new());
    if start.import(LORO_START).is_err() || later.import(LORO_LATER).is_err() {
        return Vec::new();
    }
    let held = start.oplog_vv();
    let mut seeds = Vec::new();
    for (peer, end) in later.oplog_vv().iter() {
        let from_held = held.get(peer).copied().unwrap_or(0);
        let mut input = Vec::new();
        for from in [0, from_held] {
            let Ok(update) = later.export(ExportMode::updates_in_range(&[IdSpan::new(*peer, from, *end)][..])) else { continue };
            let Ok(length) = u16::try_from(update.len()) else { continue };
            input.extend_from_slice(&length.to_le_bytes());
            input.extend_from_slice(&update);
        }
        seeds.push(input);
    }
    seeds.sort();
    seeds
}

/// One input for [`document_frames`]: a valid frame of each kind a device's document takes
/// from acceptors, for the fixture's group.
pub fn document_seed() -> Vec<u8> {
    use crate::snapshot::SnapshotHash;
    use crate::updates::{Cursor, PostRefusal, StoredMessage, UpdateId};
    use crate::wire::{Envelope, Message};
    let group = with_document(|fixture| fixture.group);
    let cursor = Cursor { incarnation: crate::Incarnation(1), position: 0 };
    let ours = UpdateId { sender: NodeId::from_index(DOCUMENT_FOUNDER), seq: 0 };
    let theirs = UpdateId { sender: NodeId::from_index(11), seq: 3 };
    let hash = SnapshotHash([7; 32]);
    let messages = [
        Message::PostAck { seqs: vec![0, 1, 2] },
        Message::PostRefused { seq: 1, reason: PostRefusal::StaleEpoch { current: 3 } },
        Message::Page {
            after: cursor,
            messages: vec![
                (1, StoredMessage { id: ours, ciphertext: vec![1, 2, 3] }),
                (2, StoredMessage { id: theirs, ciphertext: vec![4, 5, 6] }),
            ],
            more: true,
        },
        Message::SnapshotStored { hash },
        Message::SnapshotChunk { hash, index: 0, count: 2, bytes: vec![8; 16] },
        Message::SnapshotConfirmed { hash },
        Message::Entries { entries: Vec::new(), chosen_next: crate::Slot(1), accepted_pending: true },
        Message::UnknownGroup,
        Message::GroupRefused { reason: crate::wire::GroupRefusal::Full },
    ];
    let mut input = Vec::new();
    for message in messages {
        let frame = encode(&Envelope { group, message }, 1 << 20).expect("small");
        let length = u16::try_from(frame.len()).expect("a seed frame is small");
        input.extend_from_slice(&length.to_le_bytes());
        input.extend_from_slice(&frame);
    }
    input
}

/// Valid MLS messages of every kind the entry points take, as fuzzing seeds.
pub fn mls_seeds() -> Vec<Vec<u8>> {
    use crate::mls::{Identity, Joining, Member};
    let admin = Identity::from_seed([1; 32], b"admin");
    let other = Identity::from_seed([2; 32], b"other");
    let mut founder = Member::create([3; 32], &admin, b"fuzz", 2, 0).expect("create");
    let info = founder.group_info(&admin).expect("group info");
    let joining = Joining::new([4; 32], &other).expect("key package");
    let key_package = joining.key_package.clone();
    let add = founder.commit_add(&admin, &joining.key_package).expect("add");
    founder.merge_own_commit().expect("merge");
    let welcome = add.welcome.clone().expect("welcome");
    let update = founder.commit_update(&admin).expect("update");
    founder.discard_own_commit().expect("discard");
    let data = founder.encrypt(&admin, b"seed data").expect("encrypt");
    vec![info, key_package, add.commit, welcome, update.commit, data]
}

/// Feeds arbitrary frames, split on `0xff 0xff`, to an acceptor and a device that host a group.
/// Nothing may panic.
pub fn handle_frames(bytes: &[u8]) {
    let config = Config::default().validate().expect("default config is valid");
    let acceptors = AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three acceptors");
    let genesis = GroupGenesis { nonce: 0, acceptors, proposers: vec![NodeId::from_index(10)], group_info: None };
    let (mut acceptor, _) = Acceptor::new(config.clone(), NodeId::from_index(1), 1, Restored::empty());
    let (mut device, _) = Device::new(config, NodeId::from_index(10), [10; 32], 2, Restored::empty());
    device.handle(Time(0), Input::Command(crate::Command::OpenGroup { genesis }));
    for (i, frame) in bytes.split(|b| *b == 0xff).enumerate() {
        let from = NodeId::from_index((i % 4) as u64 + 1);
        let now = Time(i as u64);
        if acceptor.handle(now, Input::Received { from, frame: frame.to_vec() }).wants_flush {
            acceptor.handle(now, Input::Flush);
        }
        device.handle(now, Input::Received { from, frame: frame.to_vec() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Rejection;

    #[test]
    fn the_document_seed_reaches_the_devices_group() {
        let device = run_document_frames(&document_seed());
        let counters = device.counters();
        assert_eq!(counters.of(Rejection::Malformed), 0, "every seed frame decodes");
        assert_eq!(counters.of(Rejection::UnknownGroup), 0, "every seed frame is for the fixture's group");
        let text = device.groups().next().and_then(|group| group.text());
        assert_eq!(text.as_deref(), Some("worldfuzzy hello "), "the device restarted with its document");
    }
}
