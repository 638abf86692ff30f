//! MLS figures for `plait-sim bench`, with anchors measured in the same run: raw openmls on its
//! stock provider and raw Ed25519. Medians of five rounds.

use std::time::Instant;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use plait_kernel::mls::{Identity, Joining, Member};

/// Application messages per round.
const MESSAGES: u32 = 500;

fn median_us(mut round: impl FnMut() -> f64) -> f64 {
    let mut samples: Vec<f64> = (0..5).map(|_| round()).collect();
    samples.sort_by(f64::total_cmp);
    samples[2]
}

/// Prints every MLS figure.
pub fn run() {
    let ed25519 = ed25519_anchor();
    println!("anchor: raw Ed25519 sign {:.1} µs, verify {:.1} µs", ed25519.0, ed25519.1);
    println!("anchor: raw openmls (stock provider) application message encrypt+decrypt: {:.1} µs", raw_openmls_round_trip_us());
    let (encrypt, decrypt) = plait_round_trip_us();
    println!("plait: application message encrypt {encrypt:.1} µs, decrypt {decrypt:.1} µs (deterministic provider)");
    for size in [10u8, 100] {
        let (commit_ms, converge_ms) = add_member_ms(size);
        println!(
            "plait: add-member to a {size}-member group: commit {commit_ms:.2} ms, every member applies it: {converge_ms:.2} ms in total"
        );
    }
    let (first, later) = commit_latency_in_delays();
    println!(
        "plait: MLS commit latency in the simulator, uncontended, counted in one-way message delays: first commit {first:.1} (phase 1 + 2), later commits median {later:.1} (one round trip)"
    );
}

/// One-way latency of the simulated network for the latency figure.
const DELAY_MS: u64 = 10;

/// Simulated time from a `RotateKeys` command to the proposer's new epoch, in message delays:
/// the first commit of a fresh proposer (it must prepare first) and the median of later ones.
fn commit_latency_in_delays() -> (f64, f64) {
    use plait_io_sim::{Cluster, FaultProfile, Latency};
    use plait_kernel::{AcceptorSet, Command, Event};
    let profile = FaultProfile { latency: Latency { min_ms: DELAY_MS, ..FaultProfile::calm().latency }, ..FaultProfile::calm() };
    let config = plait_kernel::Config::default();
    let mut cluster = Cluster::new(1, 3, 1, config, profile, false);
    let device = cluster.devices()[0];
    let acceptors = AcceptorSet::new(cluster.acceptors().iter().map(|a| cluster.id(*a)).collect(), 16).expect("three");
    cluster.command(device, Command::CreateGroup { acceptors, nonce: 1, rotation_interval_ms: 0 });
    let deadline = cluster.now().plus_ms(10_000);
    cluster.run_until_condition(deadline, |c| c.notices.iter().any(|(_, e)| matches!(e, Event::GroupCreated { .. })));
    let genesis = cluster.notices.iter().find_map(|(_, e)| match e {
        Event::GroupCreated { genesis, .. } => Some(genesis.clone()),
        _ => None,
    });
    let genesis = genesis.expect("the group was created");
    cluster.know_group(&genesis);
    let group = genesis.group_id();
    // Let the acceptors recover for the new group before timing anything.
    let settle = cluster.now().plus_ms(3_000);
    cluster.run_until(settle);
    let mut delays = Vec::new();
    for _ in 0..11 {
        let epoch = |c: &Cluster| c.device(device).and_then(|d| d.group(group)?.epoch()).unwrap_or(0);
        let before = epoch(&cluster);
        let started = cluster.now();
        cluster.command(device, Command::RotateKeys { group });
        let deadline = started.plus_ms(10_000);
        cluster.run_until_condition(deadline, |c| epoch(c) > before);
        delays.push(cluster.now().since(started) as f64 / DELAY_MS as f64);
    }
    let first = delays.remove(0);
    delays.sort_by(f64::total_cmp);
    (first, delays[delays.len() / 2])
}

fn ed25519_anchor() -> (f64, f64) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = [3u8; 200];
    let sign = median_us(|| {
        let started = Instant::now();
        for _ in 0..MESSAGES {
            std::hint::black_box(key.sign(std::hint::black_box(&message)));
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES)
    });
    let signature = key.sign(&message);
    let verifying = key.verifying_key();
    let verify = median_us(|| {
        let started = Instant::now();
        for _ in 0..MESSAGES {
            std::hint::black_box(verifying.verify(std::hint::black_box(&message), &signature).is_ok());
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES)
    });
    (sign, verify)
}

pub(crate) fn raw_openmls_round_trip_us() -> f64 {
    let suite = plait_kernel::mls::CIPHERSUITE;
    let provider = OpenMlsRustCrypto::default();
    let make = |name: &str| {
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).expect("key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(name.into()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        (signer, credential)
    };
    let (alice_signer, alice) = make("alice");
    let (bob_signer, bob) = make("bob");
    let bob_provider = OpenMlsRustCrypto::default();
    let bob_package = KeyPackage::builder().build(suite, &bob_provider, &bob_signer, bob).expect("key package");
    let config = MlsGroupCreateConfig::builder().ciphersuite(suite).use_ratchet_tree_extension(true).build();
    let mut alice_group = MlsGroup::new(&provider, &alice_signer, &config, alice).expect("group");
    let (_, welcome, _) = alice_group.add_members(&provider, &alice_signer, &[bob_package.key_package().clone()]).expect("add");
    alice_group.merge_pending_commit(&provider).expect("merge");
    let MlsMessageBodyOut::Welcome(welcome) = welcome.body() else { panic!("a welcome") };
    let join = MlsGroupJoinConfig::builder().use_ratchet_tree_extension(true).build();
    let mut bob_group = StagedWelcome::new_from_welcome(&bob_provider, &join, welcome.clone(), None)
        .expect("staged")
        .into_group(&bob_provider)
        .expect("joined");
    median_us(|| {
        let started = Instant::now();
        for _ in 0..MESSAGES {
            let message =
                alice_group.create_message(&provider, &alice_signer, b"a typical batched edit of some size").expect("encrypt");
            let protocol = MlsMessageIn::from(message).try_into_protocol_message().expect("protocol");
            std::hint::black_box(bob_group.process_message(&bob_provider, protocol).expect("decrypt"));
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES)
    })
}

fn identities(count: u8) -> Vec<Identity> {
    (0..count).map(|n| Identity::from_seed([n; 32], format!("device-{n}").as_bytes())).collect()
}

fn group(identities: &[Identity]) -> Vec<Member> {
    let mut members = vec![Member::create([200; 32], &identities[0], b"bench", 4, 0).expect("create")];
    for (n, identity) in identities.iter().enumerate().skip(1) {
        let joining = Joining::new([n as u8; 32], identity).expect("key package");
        let commit = members[0].commit_add(&identities[0], &joining.key_package).expect("add");
        members[0].merge_own_commit().expect("merge");
        for member in members.iter_mut().skip(1) {
            member.apply_commit(&commit.commit).expect("apply");
        }
        members.push(joining.join(&commit.welcome.expect("welcome"), 4).expect("join"));
    }
    members
}

fn plait_round_trip_us() -> (f64, f64) {
    let identities = identities(2);
    let mut members = group(&identities);
    let mut rounds: Vec<(f64, f64)> = Vec::new();
    for _ in 0..5 {
        // Each round decrypts what it encrypted, so the receiver never falls far behind.
        let started = Instant::now();
        let sealed: Vec<Vec<u8>> = (0..MESSAGES)
            .map(|_| members[0].encrypt(&identities[0], b"a typical batched edit of some size").expect("encrypt"))
            .collect();
        let encrypt = started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES);
        let started = Instant::now();
        for message in &sealed {
            std::hint::black_box(members[1].decrypt(message).expect("decrypt"));
        }
        rounds.push((encrypt, started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES)));
    }
    let mut encrypts: Vec<f64> = rounds.iter().map(|r| r.0).collect();
    let mut decrypts: Vec<f64> = rounds.iter().map(|r| r.1).collect();
    encrypts.sort_by(f64::total_cmp);
    decrypts.sort_by(f64::total_cmp);
    (encrypts[2], decrypts[2])
}

fn add_member_ms(size: u8) -> (f64, f64) {
    let identities = identities(size + 1);
    let mut members = group(&identities[..size as usize]);
    let joining = Joining::new([250; 32], &identities[size as usize]).expect("key package");
    let started = Instant::now();
    let commit = members[0].commit_add(&identities[0], &joining.key_package).expect("add");
    let commit_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    members[0].merge_own_commit().expect("merge");
    for member in members.iter_mut().skip(1) {
        member.apply_commit(&commit.commit).expect("apply");
    }
    joining.join(&commit.welcome.expect("welcome"), 4).expect("join");
    (commit_ms, started.elapsed().as_secs_f64() * 1e3)
}
