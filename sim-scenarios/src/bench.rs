//! `plait-sim bench`: simulated events per second per core and seeds per second per family,
//! with anchors measured in the same run so numbers from noisy machines can be compared.

use std::time::Instant;

use plait_kernel::wire::{Envelope, Message, decode, encode};
use plait_kernel::{Ballot, GroupId, NodeId, Slot};

use crate::{RunOptions, Scenario};

/// Runs `seeds` seeds of every scenario on one thread and prints the figures.
pub fn run(scenarios: &[Scenario], seeds: u64) {
    println!("anchor: postcard encode+decode of a Prepare frame: {:.0} ns (median of 5 rounds)", codec_anchor_ns());
    println!("anchor: blake3 of 1 KiB: {:.0} ns", blake3_anchor_ns());
    let mut families: Vec<&str> = scenarios.iter().map(|s| s.name.split('/').next().unwrap_or("")).collect();
    families.dedup();
    for family in families {
        let mut events = 0u64;
        let mut per_seed_ms: Vec<f64> = Vec::new();
        let started = Instant::now();
        for scenario in scenarios.iter().filter(|s| s.name.starts_with(family)) {
            for seed in 0..seeds {
                let one = Instant::now();
                let outcome = (scenario.run)(&RunOptions::new(seed));
                per_seed_ms.push(one.elapsed().as_secs_f64() * 1e3);
                events += outcome.events;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        per_seed_ms.sort_by(f64::total_cmp);
        let median = per_seed_ms[per_seed_ms.len() / 2];
        let p90 = per_seed_ms[per_seed_ms.len() * 9 / 10];
        println!(
            "family {family}: {} runs, {events} events in {elapsed:.2}s on one core: {:.0} events/s/core, {:.1} seeds/s, seed median {median:.1} ms, p90 {p90:.1} ms",
            per_seed_ms.len(),
            events as f64 / elapsed,
            per_seed_ms.len() as f64 / elapsed,
        );
    }
}

pub(crate) fn median_of_rounds(mut round: impl FnMut() -> f64) -> f64 {
    let mut samples: Vec<f64> = (0..5).map(|_| round()).collect();
    samples.sort_by(f64::total_cmp);
    samples[2]
}

pub(crate) fn codec_anchor_ns() -> f64 {
    let envelope = Envelope {
        group: GroupId([7; 16]),
        message: Message::Prepare { ballot: Ballot { round: 12, proposer: NodeId::from_index(3) }, from_slot: Slot(40) },
    };
    median_of_rounds(|| {
        let iterations = 100_000;
        let started = Instant::now();
        for _ in 0..iterations {
            let frame = encode(std::hint::black_box(&envelope), 1 << 20).expect("small");
            std::hint::black_box(decode(&frame, 1 << 20).expect("valid"));
        }
        started.elapsed().as_nanos() as f64 / iterations as f64
    })
}

fn blake3_anchor_ns() -> f64 {
    let data = vec![5u8; 1024];
    median_of_rounds(|| {
        let iterations = 100_000;
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(blake3::hash(std::hint::black_box(&data)));
        }
        started.elapsed().as_nanos() as f64 / iterations as f64
    })
}
