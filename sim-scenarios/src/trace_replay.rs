//! `plait-sim trace`: replays an editing trace through the simulator, under the seed's network
//! faults (loss, duplication, reordering and delay drawn from the seed), and checks that every
//! device ends with the trace's text.
//!
//! Devices do not crash here: an edit whose `Persist` a crash cut off never happened, and the
//! text could not match the trace. Crashes between an edit and its send have their own scenario.

use plait_io_sim::{Cluster, SimRng};
use plait_kernel::{Command, GroupId};

use crate::RunOptions;
use crate::editing_trace::Trace;
use crate::outline::LIVENESS_MS_MAX;
use crate::scenarios::mls::{found, lossy};

/// Transactions a device types in a row before the next device takes over (sequential traces).
pub const TURN_TRANSACTIONS: usize = 1_000;

/// Simulated time between two transactions of one device: typing at a thousand keys a second.
pub const TYPING_INTERVAL_MS: u64 = 1;

/// What a replay did.
#[derive(Debug)]
pub struct Replayed {
    /// Each device's final text.
    pub texts: Vec<String>,
    /// BLAKE3 of the first device's text (hex).
    pub text_hash: String,
    /// The first broken invariant or failure, if any.
    pub failure: Option<String>,
    /// Document messages made safe, over all devices.
    pub messages: u64,
    /// Simulated events.
    pub events: u64,
    /// Simulated time at the end (ms).
    pub simulated_ms: u64,
}

/// Replays `trace` across `devices` devices for `seed`. Each concurrent agent types on device
/// `agent % devices`; a sequential trace goes round the devices in turns. `progress` is called
/// with (transactions done, transactions in all).
pub fn replay(trace: &Trace, devices: usize, seed: u64, mut progress: impl FnMut(usize, usize)) -> Replayed {
    let mut rng = SimRng::new(seed);
    let profile = lossy(&mut rng);
    let options = RunOptions::new(seed);
    let mut cluster = Cluster::new(seed, 3, devices, options.kernel_config(), profile, false);
    let group = match found(&mut cluster, seed, 0, 3, devices) {
        Ok(genesis) => genesis.group_id(),
        Err(failure) => return finish(&cluster, None, Some(failure)),
    };
    let ids = cluster.devices();
    cluster.start_faults();
    let total = trace.transactions.len();
    let mut current: Option<usize> = None;
    for (index, transaction) in trace.transactions.iter().enumerate() {
        let device = match trace.agents {
            1 => ids[(index / TURN_TRANSACTIONS) % devices],
            _ => ids[transaction.agent % devices],
        };
        if current != Some(device) {
            // A device takes over only once it holds everything typed before.
            let deadline = cluster.now().plus_ms(LIVENESS_MS_MAX);
            if !cluster.run_until_condition(deadline, |c| c.documents_settled(group)) {
                let failure = format!("devices did not agree before transaction {index} within {LIVENESS_MS_MAX}ms");
                return finish(&cluster, Some(group), Some(failure));
            }
            cluster.check_documents_agree(group);
            current = Some(device);
            progress(index, total);
        }
        for patch in &transaction.patches {
            let edit = Command::Edit { group, position: patch.position, delete: patch.delete, insert: patch.insert.clone() };
            cluster.command(device, edit);
        }
        let next = cluster.now().plus_ms(TYPING_INTERVAL_MS);
        cluster.run_until(next);
    }
    cluster.stop_faults_and_heal();
    let deadline = cluster.now().plus_ms(LIVENESS_MS_MAX);
    let failure = if cluster.run_until_condition(deadline, |c| c.documents_settled(group)) {
        None
    } else {
        Some(format!("devices did not agree within {LIVENESS_MS_MAX}ms of the last edit"))
    };
    progress(total, total);
    finish(&cluster, Some(group), failure)
}

fn finish(cluster: &Cluster, group: Option<GroupId>, failure: Option<String>) -> Replayed {
    let texts: Vec<String> = match group {
        Some(group) => cluster
            .devices()
            .into_iter()
            .map(|d| cluster.device(d).and_then(|d| d.group(group)?.text()).unwrap_or_default())
            .collect(),
        None => Vec::new(),
    };
    let text_hash = texts.first().map(|t| blake3::hash(t.as_bytes()).to_hex().to_string()).unwrap_or_default();
    let failure = failure.or_else(|| cluster.checker.violation().map(|v| format!("invariant={} {}", v.invariant, v.detail)));
    Replayed {
        texts,
        text_hash,
        failure,
        messages: cluster.stats.updates_safe,
        events: cluster.stats.events,
        simulated_ms: cluster.now().0,
    }
}
