//! MLS on the deterministic provider: the whole flow works, the same seeds give the same bytes,
//! a member rebuilt from its journaled storage carries on, and removal locks a member out.

use std::collections::BTreeMap;

use plait_kernel::mls::{Identity, Joining, Member, MlsError};

/// Past epochs whose secrets members keep.
const PAST: usize = 2;

fn seed(tag: u8, n: u8) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[0] = tag;
    seed[1] = n;
    seed
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(seed(1, n), format!("device-{n}").as_bytes())
}

/// Admin 0 creates, adds `count - 1` members one commit each; returns everyone and every byte
/// that went over the wire.
fn group_of(count: u8) -> (Vec<Identity>, Vec<Member>, Vec<Vec<u8>>) {
    let identities: Vec<Identity> = (0..count).map(identity).collect();
    let mut wire = Vec::new();
    let mut members = vec![Member::create(seed(2, 0), &identities[0], b"group-one", PAST, 0).expect("create")];
    for n in 1..count {
        let joining = Joining::new(seed(3, n), &identities[n as usize]).expect("key package");
        wire.push(joining.key_package.clone());
        let commit = members[0].commit_add(&identities[0], &joining.key_package).expect("add");
        members[0].merge_own_commit().expect("merge");
        for other in members.iter_mut().skip(1) {
            other.apply_commit(&commit.commit).expect("existing members apply the add");
        }
        let welcome = commit.welcome.clone().expect("an add has a welcome");
        members.push(joining.join(&welcome, PAST).expect("join"));
        wire.push(commit.commit);
        wire.push(welcome);
    }
    (identities, members, wire)
}

#[test]
fn three_devices_agree_on_every_epoch_and_read_each_other() {
    let (identities, mut members, _) = group_of(3);
    let epochs: Vec<u64> = members.iter().map(Member::epoch).collect();
    assert_eq!(epochs, vec![2, 2, 2]);
    let authenticators: Vec<Vec<u8>> = members.iter().map(Member::epoch_authenticator).collect();
    assert!(authenticators.windows(2).all(|w| w[0] == w[1]), "no fork");
    let sealed = members[1].encrypt(&identities[1], b"hello from 1").expect("encrypt");
    assert!(!sealed.windows(12).any(|w| w == b"hello from 1"), "application data leaves encrypted");
    for n in [0, 2] {
        let plait_kernel::mls::Decrypted { sender, data: plaintext, .. } = members[n].decrypt(&sealed).expect("decrypt");
        assert_eq!((sender.as_slice(), plaintext.as_slice()), (b"device-1".as_slice(), b"hello from 1".as_slice()));
    }
    let update = members[2].commit_update(&identities[2]).expect("update");
    members[2].merge_own_commit().expect("merge");
    members[0].apply_commit(&update.commit).expect("apply");
    members[1].apply_commit(&update.commit).expect("apply");
    assert!(members.iter().all(|m| m.epoch() == 3));
    assert_eq!(members[0].members().len(), 3);
}

#[test]
fn the_same_seeds_give_the_same_bytes_even_through_parallel_path_encryption() {
    let run = || {
        let (identities, mut members, mut wire) = group_of(24);
        // A self-update in a large group encrypts the path to many subtrees (in parallel).
        let update = members[5].commit_update(&identities[5]).expect("update");
        wire.push(update.commit);
        wire.push(members[7].encrypt(&identities[7], b"payload").expect("encrypt"));
        wire
    };
    let (first, second) = (run(), run());
    assert_eq!(first.len(), second.len());
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        assert_eq!(a, b, "wire message {i} differs between two runs of the same seeds");
    }
}

#[test]
fn a_member_rebuilt_from_its_persisted_storage_carries_on() {
    let (identities, mut members, _) = group_of(2);
    let mut durable: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let persist = |member: &mut Member, durable: &mut BTreeMap<Vec<u8>, Vec<u8>>| {
        for (key, value) in member.changes() {
            match value {
                Some(value) => durable.insert(key, value),
                None => durable.remove(&key),
            };
        }
    };
    persist(&mut members[1], &mut durable);
    let update = members[0].commit_update(&identities[0]).expect("update");
    members[0].merge_own_commit().expect("merge");
    members[1].apply_commit(&update.commit).expect("apply");
    persist(&mut members[1], &mut durable);
    assert!(members[1].changes().is_empty(), "nothing changed since the last persist");
    let mut rebuilt = Member::restore(seed(9, 9), durable, b"group-one").expect("restore");
    assert_eq!(rebuilt.epoch(), members[1].epoch());
    assert_eq!(rebuilt.epoch_authenticator(), members[0].epoch_authenticator());
    let sealed = members[0].encrypt(&identities[0], b"after restart").expect("encrypt");
    assert_eq!(rebuilt.decrypt(&sealed).expect("decrypt").data, b"after restart");
}

/// openmls writes its message secrets after every message it reads; Plait's storage defers those
/// writes to the next `changes()` (`mls/storage.rs`). What is persisted must still be the state
/// after the last message: a member rebuilt from it has used up the keys of the messages it
/// read (a replay of one is refused), and reads the next.
#[test]
fn a_member_persisted_once_after_several_messages_is_rebuilt_with_their_keys_used_up() {
    let (identities, mut members, _) = group_of(2);
    let mut durable: BTreeMap<Vec<u8>, Vec<u8>> = members[1].changes().into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    let sealed: Vec<Vec<u8>> =
        (0..3).map(|n| members[0].encrypt(&identities[0], format!("message {n}").as_bytes()).expect("encrypt")).collect();
    for message in &sealed {
        members[1].decrypt(message).expect("decrypt");
    }
    for (key, value) in members[1].changes() {
        match value {
            Some(value) => durable.insert(key, value),
            None => durable.remove(&key),
        };
    }
    let mut rebuilt = Member::restore(seed(9, 9), durable, b"group-one").expect("restore");
    assert!(rebuilt.decrypt(&sealed[1]).is_err(), "a key used before the restart is gone after it");
    let next = members[0].encrypt(&identities[0], b"next").expect("encrypt");
    assert_eq!(rebuilt.decrypt(&next).expect("decrypt").data, b"next");
}

#[test]
fn a_removed_member_cannot_read_later_epochs() {
    let (identities, mut members, _) = group_of(3);
    let removal = members[0].commit_remove(&identities[0], b"device-2").expect("remove");
    members[0].merge_own_commit().expect("merge");
    members[1].apply_commit(&removal.commit).expect("apply");
    let _ = members[2].apply_commit(&removal.commit);
    let sealed = members[1].encrypt(&identities[1], b"secret after removal").expect("encrypt");
    assert!(members[2].decrypt(&sealed).is_err(), "the removed member cannot decrypt");
    assert_eq!(members[0].decrypt(&sealed).expect("decrypt").data, b"secret after removal");
}

#[test]
fn garbage_and_wrong_kinds_are_refused_without_panics() {
    let (identities, mut members, wire) = group_of(2);
    assert_eq!(members[0].apply_commit(&[]), Err(MlsError::Malformed));
    assert_eq!(members[0].apply_commit(&[0xff; 40]), Err(MlsError::Malformed));
    assert_eq!(members[0].decrypt(b"not mls at all"), Err(MlsError::Malformed));
    assert!(members[0].commit_add(&identities[0], &[1, 2, 3]).is_err());
    // A key package is not a commit, and a commit is not application data.
    assert!(members[0].apply_commit(&wire[0]).is_err());
    let update = members[1].commit_update(&identities[1]).expect("update");
    assert!(members[0].decrypt(&update.commit).is_err());
    for cut in 0..wire[1].len() {
        let _ = members[0].apply_commit(&wire[1][..cut]);
    }
}

mod acceptor_view {
    use super::*;
    use plait_kernel::mls::PublicView;

    #[test]
    fn an_acceptor_follows_the_group_and_refuses_what_a_member_would_refuse() {
        let identities: Vec<Identity> = (0..3).map(identity).collect();
        let mut admin = Member::create(seed(2, 0), &identities[0], b"group-one", PAST, 0).expect("create");
        let mut view = PublicView::from_group_info(&admin.group_info(&identities[0]).expect("info")).expect("view");
        assert_eq!(view.epoch(), 0);

        let joining = Joining::new(seed(3, 1), &identities[1]).expect("key package");
        let add = admin.commit_add(&identities[0], &joining.key_package).expect("add");
        let checked = view.check_commit(&add.commit).expect("a valid commit");
        assert_eq!(checked.summary.committer, b"device-0");
        assert_eq!(checked.summary.adds, vec![b"device-1".to_vec()]);
        assert_eq!(view.epoch(), 0, "checking does not apply");
        view.apply_commit(&add.commit).expect("apply");
        admin.merge_own_commit().expect("merge");
        assert_eq!((view.epoch(), admin.epoch()), (1, 1));
        assert_eq!(view.members(), admin.members());

        assert!(view.check_commit(&add.commit).is_err(), "a replayed commit is for a past epoch");
        let mut stranger = Member::create(seed(2, 7), &identities[2], b"group-two", PAST, 0).expect("create");
        let foreign = stranger.commit_update(&identities[2]).expect("update");
        assert!(view.check_commit(&foreign.commit).is_err(), "a commit of another group");
        let mut member = joining.join(&add.welcome.expect("welcome"), PAST).expect("join");
        let data = member.encrypt(&identities[1], b"app data").expect("encrypt");
        assert!(view.check_commit(&data).is_err(), "application data is not a commit");
        assert_eq!(view.check_commit(&[7; 30]), Err(MlsError::Malformed));

        let removal = admin.commit_remove(&identities[0], b"device-1").expect("remove");
        assert_eq!(view.check_commit(&removal.commit).expect("valid").summary.removes, vec![b"device-1".to_vec()]);
    }

    #[test]
    fn an_acceptor_view_rebuilt_from_its_storage_carries_on() {
        let identities: Vec<Identity> = (0..2).map(identity).collect();
        let mut admin = Member::create(seed(2, 0), &identities[0], b"group-one", PAST, 0).expect("create");
        let mut view = PublicView::from_group_info(&admin.group_info(&identities[0]).expect("info")).expect("view");
        let update = admin.commit_update(&identities[0]).expect("update");
        view.apply_commit(&update.commit).expect("apply");
        admin.merge_own_commit().expect("merge");
        let durable = view.changes().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        let rebuilt = PublicView::restore(durable, b"group-one").expect("restore");
        assert_eq!(rebuilt.epoch(), 1);
        let next = admin.commit_update(&identities[0]).expect("update");
        rebuilt.check_commit(&next.commit).expect("the rebuilt view checks the next epoch's commit");
    }
}

mod roles {
    use super::*;
    use plait_kernel::mls::{PublicView, Role};

    #[test]
    fn only_admins_change_membership_everywhere_and_roles_travel_in_commits() {
        let (identities, mut members, _) = group_of(3);
        let mut view = PublicView::from_group_info(&members[0].group_info(&identities[0]).expect("info")).expect("view");
        assert_eq!(members[1].roles().expect("roles").of(b"device-0"), Role::Admin);
        assert_eq!(members[1].roles().expect("roles").of(b"device-1"), Role::Writer);

        // A writer's removal is refused by the acceptor view and by every other member alike.
        let by_writer = members[1].commit_remove(&identities[1], b"device-2").expect("openmls builds it");
        assert!(view.check_commit(&by_writer.commit).is_err(), "the acceptor refuses");
        assert!(members[0].apply_commit(&by_writer.commit).is_err(), "the admin refuses");
        assert!(members[2].apply_commit(&by_writer.commit).is_err(), "the target refuses");
        cov_mark::check!(own_unauthorised_commit_is_discarded);
        assert!(members[1].merge_own_commit().is_err(), "and so does the writer, if it were chosen");
        assert!(members.iter().all(|m| m.epoch() == 2), "nobody moved");

        // The admin promotes device-1; then device-1 may remove device-2.
        let roles = members[0].roles().expect("roles").with(b"device-1", Role::Admin).with(b"device-2", Role::Reader);
        let promote = members[0].commit_roles(&identities[0], &roles).expect("roles commit");
        assert!(view.apply_commit(&promote.commit).expect("an admin may").summary.changes_context);
        members[0].merge_own_commit().expect("merge");
        members[1].apply_commit(&promote.commit).expect("apply");
        members[2].apply_commit(&promote.commit).expect("apply");
        assert_eq!(members[2].roles().expect("roles").of(b"device-2"), Role::Reader);

        let update = members[2].commit_update(&identities[2]).expect("openmls builds it");
        assert!(view.check_commit(&update.commit).is_err(), "a reader commits nothing, not even a key rotation");
        assert!(members[0].apply_commit(&update.commit).is_err(), "and members agree");
        members[2].discard_own_commit().expect("discard");
        let removal = members[1].commit_remove(&identities[1], b"device-2").expect("remove");
        view.apply_commit(&removal.commit).expect("device-1 is an admin now");
        members[0].apply_commit(&removal.commit).expect("apply");
        assert_eq!(view.members(), members[0].members());
    }
}

mod forks {
    use super::*;
    use plait_kernel::mls::DigestCheck;

    #[test]
    fn members_that_took_different_commits_for_one_epoch_detect_the_fork() {
        let (identities, mut members, _) = group_of(3);
        // Two different commits for epoch 2; device-1 gets one, device-2 the other.
        let first = members[0].commit_update(&identities[0]).expect("update");
        members[0].discard_own_commit().expect("discard");
        let second = members[0].commit_update(&identities[0]).expect("update");
        members[0].merge_own_commit().expect("merge");
        members[1].apply_commit(&first.commit).expect("apply");
        members[2].apply_commit(&second.commit).expect("apply");
        assert!(members.iter().all(|m| m.epoch() == 3));

        let from_admin = members[0].epoch_digest(&identities[0]).expect("digest");
        assert_eq!(members[2].check_digest(&from_admin), DigestCheck::Agree);
        let DigestCheck::Fork(evidence) = members[1].check_digest(&from_admin) else { panic!("device-1 must see the fork") };
        assert_eq!(evidence.epoch, 3);
        assert_eq!(evidence.theirs, from_admin);

        let mut forged = from_admin.clone();
        forged.authenticator_hash[0] ^= 1;
        assert_eq!(members[2].check_digest(&forged), DigestCheck::Invalid, "a bad signature is not evidence");
        let mut foreign = from_admin.clone();
        foreign.signer = b"stranger".to_vec();
        assert_eq!(members[2].check_digest(&foreign), DigestCheck::Invalid, "not a member");
        let mut future = from_admin;
        future.epoch = 40;
        assert_eq!(members[2].check_digest(&future), DigestCheck::Invalid, "the signature covers the epoch too");
    }
}

mod application_messages {
    use super::*;
    use plait_kernel::mls::Role;

    /// Everyone rotates through `n` epochs driven by the admin.
    fn advance(identities: &[Identity], members: &mut [Member], n: usize) {
        for _ in 0..n {
            let update = members[0].commit_update(&identities[0]).expect("update");
            members[0].merge_own_commit().expect("merge");
            for member in members.iter_mut().skip(1) {
                member.apply_commit(&update.commit).expect("apply");
            }
        }
    }

    #[test]
    fn late_messages_decrypt_within_the_kept_epochs_and_not_beyond() {
        let (identities, mut members, _) = group_of(2);
        let recent = members[1].encrypt(&identities[1], b"recent").expect("encrypt");
        let old = members[1].encrypt(&identities[1], b"old").expect("encrypt");
        advance(&identities, &mut members, PAST);
        assert_eq!(members[0].decrypt(&recent).expect("within the kept epochs").data, b"recent");
        advance(&identities, &mut members, 1);
        assert!(matches!(members[0].decrypt(&old), Err(MlsError::TooOld(_))), "its epoch's secrets are gone");
    }

    #[test]
    fn messages_from_a_future_epoch_are_reported_for_buffering_then_read() {
        let (identities, mut members, _) = group_of(3);
        let update = members[0].commit_update(&identities[0]).expect("update");
        members[0].merge_own_commit().expect("merge");
        members[1].apply_commit(&update.commit).expect("apply");
        let ahead = members[1].encrypt(&identities[1], b"from the next epoch").expect("encrypt");
        assert_eq!(members[2].decrypt(&ahead), Err(MlsError::FutureEpoch(3)));
        members[2].apply_commit(&update.commit).expect("apply");
        assert_eq!(members[2].decrypt(&ahead).expect("now readable").data, b"from the next epoch");
    }

    /// A reader's application data is marked: the device refuses all of it but a compaction
    /// request (`kernel/tests/integration/compaction.rs` checks that part).
    #[test]
    fn application_data_from_readers_is_marked() {
        let (identities, mut members, _) = group_of(3);
        let roles = members[0].roles().expect("roles").with(b"device-2", Role::Reader);
        let change = members[0].commit_roles(&identities[0], &roles).expect("roles");
        members[0].merge_own_commit().expect("merge");
        members[1].apply_commit(&change.commit).expect("apply");
        members[2].apply_commit(&change.commit).expect("apply");
        let from_reader = members[2].encrypt(&identities[2], b"an edit").expect("openmls encrypts it");
        assert!(members[0].decrypt(&from_reader).expect("decrypts").from_reader);
        let from_writer = members[1].encrypt(&identities[1], b"an edit").expect("encrypt");
        let decrypted = members[0].decrypt(&from_writer).expect("writers may");
        assert_eq!(decrypted.data, b"an edit");
        assert!(!decrypted.from_reader);
    }
}

/// A panic inside openmls while a member reads a message (injected after openmls advanced the
/// ratchet, so its state is half written) breaks the member: it refuses every later call that
/// reads or changes that state and hands over no change, so nothing of it becomes durable and
/// nothing sealed with it leaves. Built again from what was durable, it reads the next message.
#[test]
fn a_member_whose_library_panicked_writes_nothing_and_is_rebuilt_from_storage() {
    use plait_kernel::faults;
    let (identities, mut members, _) = group_of(2);
    let durable: BTreeMap<Vec<u8>, Vec<u8>> = members[1].changes().into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    faults::panic_in_mls_on_messages_containing(b"MLS-POISON-member");
    let poisoned = members[0].encrypt(&identities[0], b"MLS-POISON-member").expect("encrypt");
    let refused = members[1].decrypt(&poisoned);
    faults::stop_panicking(faults::Library::Mls);
    assert!(matches!(refused, Err(MlsError::Panicked)), "contained: {refused:?}");
    assert!(members[1].is_broken());
    assert!(members[1].changes().is_empty(), "the half-written state is not handed over");
    assert!(matches!(members[1].encrypt(&identities[1], b"sealed with it"), Err(MlsError::Panicked)));
    let next = members[0].encrypt(&identities[0], b"next").expect("encrypt");
    assert!(matches!(members[1].decrypt(&next), Err(MlsError::Panicked)));
    assert!(matches!(members[1].commit_update(&identities[1]), Err(MlsError::Panicked)));

    let mut rebuilt = Member::restore(seed(9, 9), durable, b"group-one").expect("restore");
    assert!(!rebuilt.is_broken());
    assert_eq!(rebuilt.decrypt(&next).expect("decrypt").data, b"next");
}
