//! Real crashes: a child process writes numbered batches as fast as it can and reports each one
//! only after `Store::apply` returned; the parent kills it with SIGKILL at seeded random moments
//! and checks that the database holds exactly a prefix of the batches, including every reported
//! one. The child is this test binary, re-run with an environment variable.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use plait_kernel::ids::{NodeId, Slot};
use plait_kernel::log::{AcceptorSet, Entry, GroupGenesis};
use plait_kernel::rng::NodeRng;
use plait_kernel::storage::{Record, Restored, WriteBatch};
use plait_store_sqlite::Store;

/// Set in the child: the database it writes to.
const CHILD_DATABASE_ENV: &str = "PLAIT_STORE_KILL_CHILD_DATABASE";
/// Replays a run: the seed that picks the kill moments.
const SEED_ENV: &str = "PLAIT_STORE_KILL_SEED";
const SEED_DEFAULT: u64 = 0x5eed_0006;
/// Kills per run.
const KILLS: u64 = 300;
/// Half the kills come at a random moment up to this long after the spawn, so many land while
/// the child is starting, creating or opening the database.
const KILL_AFTER_SPAWN_US_MAX: u64 = 20_000;
/// The other half come up to this long after the child's first acknowledgement, so they land
/// among commits.
const KILL_AFTER_FIRST_ACKNOWLEDGEMENT_US_MAX: u64 = 5_000;
/// Batches per `apply` call in the child at most: it uses group commits of 1..=this.
const BATCHES_PER_APPLY_MAX: u64 = 3;
/// The line the child prints for each durable batch.
const ACKNOWLEDGED_PREFIX: &str = "durable ";
const NODE: NodeId = NodeId([3; 32]);

fn genesis() -> GroupGenesis {
    let acceptors = AcceptorSet::new(vec![NODE], 8).expect("one acceptor");
    GroupGenesis { nonce: 6, acceptors, proposers: vec![NODE], group_info: None }
}

/// Sizes vary from empty to a few KiB so batches cross page boundaries at different places.
fn payload(number: u64) -> Vec<u8> {
    let len_bytes = (number * 397 % 3000) as usize;
    number.to_le_bytes().iter().copied().cycle().take(len_bytes).collect()
}

/// Batch `number`: the log entry for slot `number` and a round floor of `number + 1`, so a torn
/// batch shows as a floor that disagrees with the log. Batch 0 also creates the group.
fn batch(number: u64) -> WriteBatch {
    let group = genesis().group_id();
    let mut batch = WriteBatch::default();
    if number == 0 {
        batch.push(Record::Group { group, genesis: genesis() });
    }
    batch.push(Record::Chosen { group, slot: Slot(number), entry: Entry::Value(payload(number)) });
    batch.push(Record::RoundFloor { group, round: number + 1 });
    batch
}

/// How many batches the database holds, failing unless they are exactly batches `0..count`.
fn durable_prefix(restored: &Restored) -> u64 {
    let Some(state) = restored.groups.get(&genesis().group_id()) else {
        assert!(restored.groups.is_empty(), "unexpected groups: {:?}", restored.groups.keys());
        return 0;
    };
    let count = state.chosen.len() as u64;
    for (expected, (slot, entry)) in (0..count).zip(&state.chosen) {
        assert_eq!(*slot, Slot(expected), "the log has a gap before slot {slot:?}");
        assert_eq!(entry, &Entry::Value(payload(expected)), "slot {expected} holds the wrong entry");
    }
    assert_eq!(state.round_floor, count, "a batch was torn: the floor disagrees with the log");
    assert!(count >= 1, "the group exists, so batch 0 is durable");
    count
}

/// The child: continue the numbered sequence from what is durable, forever.
fn run_child(path: &Path) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let mut store = Store::open(path, NODE).await.expect("child opens the store");
        let mut next = durable_prefix(&store.load().await.expect("child loads"));
        let mut stdout = std::io::stdout().lock();
        loop {
            let batches_per_apply = 1 + next % BATCHES_PER_APPLY_MAX;
            let batches: Vec<_> = (next..next + batches_per_apply).map(batch).collect();
            store.apply(&batches).await.expect("child applies");
            for number in next..next + batches_per_apply {
                writeln!(stdout, "{ACKNOWLEDGED_PREFIX}{number}").expect("child reports");
            }
            stdout.flush().expect("child reports");
            next += batches_per_apply;
        }
    })
}

/// Proves that SIGKILL at any moment, even mid-open or mid-commit, leaves exactly a prefix of
/// the batches written, including every batch whose `apply` returned.
#[test]
fn sigkill_at_random_moments_keeps_a_prefix_including_every_acknowledged_batch() {
    if let Some(path) = std::env::var_os(CHILD_DATABASE_ENV) {
        run_child(Path::new(&path));
    }
    let seed = std::env::var(SEED_ENV).ok().and_then(|seed| seed.parse().ok()).unwrap_or(SEED_DEFAULT);
    eprintln!("kill test: seed {seed} (set {SEED_ENV} to replay), {KILLS} kills");
    let mut rng = NodeRng::from_seed(seed);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("node.sqlite");
    let child_errors = directory.path().join("child-stderr.txt");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let (mut durable_before, mut acknowledged_total, mut kills_before_any_acknowledgement) = (0, 0, 0);

    for kill in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
            .args([
                "sigkill_at_random_moments_keeps_a_prefix_including_every_acknowledged_batch",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DATABASE_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&child_errors).expect("a file for the child's errors"))
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (acknowledgements, acknowledged) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines {
                if let Some(number) = line.strip_prefix(ACKNOWLEDGED_PREFIX) {
                    let number = number.parse::<u64>().expect("the child prints numbers");
                    let _ = acknowledgements.send(number);
                }
            }
        });
        let aims_among_commits = rng.next_u64().is_multiple_of(2);
        let mut acknowledged_max = None;
        let delay_us = if aims_among_commits {
            acknowledged_max = acknowledged.recv().ok(); // Err: the child died; caught below.
            rng.next_u64() % KILL_AFTER_FIRST_ACKNOWLEDGEMENT_US_MAX
        } else {
            rng.next_u64() % KILL_AFTER_SPAWN_US_MAX
        };
        std::thread::sleep(Duration::from_micros(delay_us));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        reader.join().expect("the reader thread");
        acknowledged_max = acknowledged_max.max(acknowledged.iter().max());
        let errors = std::fs::read_to_string(&child_errors).unwrap_or_default();
        assert_eq!(status.signal(), Some(9), "kill {kill}: the child ended by itself: {status}\n{errors}");

        let restored = runtime.block_on(async {
            let mut store = Store::open(&path, NODE).await.expect("reopen after SIGKILL");
            let restored = store.load().await.expect("load after SIGKILL");
            store.close().await.expect("close");
            restored
        });
        let durable = durable_prefix(&restored);
        assert!(durable >= durable_before, "kill {kill} (delay {delay_us} µs): {durable} < {durable_before} batches");
        if let Some(acknowledged) = acknowledged_max {
            assert!(
                durable > acknowledged,
                "kill {kill} (delay {delay_us} µs): batch {acknowledged} was acknowledged but only {durable} are durable"
            );
            acknowledged_total += acknowledged + 1 - durable_before;
        } else {
            kills_before_any_acknowledgement += 1;
        }
        durable_before = durable;
    }
    eprintln!(
        "kill test: {durable_before} batches durable, {acknowledged_total} acknowledged across \
         kills, {kills_before_any_acknowledgement} kills before the child acknowledged anything"
    );
    assert!(acknowledged_total > 0, "no child ever acknowledged a batch: the test exercised nothing");
}
