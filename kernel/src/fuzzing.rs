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
    use crate::mls::{Identity, Joining, PublicView};
    thread_local! {
        // Built once per thread (MLS setup is slow); only validly signed input changes it.
        static FIXTURE: std::cell::RefCell<Option<MlsFixture>> = const { std::cell::RefCell::new(None) };
    }
    FIXTURE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fixture = slot.get_or_insert_with(mls_fixture);
        let member_took = fixture.member.apply_commit(bytes).is_ok();
        let _ = fixture.member.decrypt(bytes);
        let _ = fixture.view.check_application(bytes, 2);
        let view_would = fixture.view.check_commit(bytes).is_ok();
        let view_took = fixture.view.apply_commit(bytes).is_ok();
        assert_eq!(view_would, view_took, "checking and applying a commit disagree");
        assert_eq!(member_took, view_took, "a member and an acceptor disagree about a commit");
        assert_eq!(fixture.member.epoch(), fixture.view.epoch());
    });
    let _ = PublicView::from_group_info(bytes);
    if let Ok(joining) = Joining::new([5; 32], &Identity::from_seed([6; 32], b"joiner")) {
        let _ = joining.join(bytes, 2);
    }
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
