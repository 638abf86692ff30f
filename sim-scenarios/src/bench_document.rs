//! Document figures for `plait-sim bench`: CRDT operations per second through the whole kernel
//! path in the simulator (edit, durable outbox, MLS, acceptors, decrypt, apply at every device)
//! and operations carried per MLS message, with raw Loro and raw openmls as anchors measured in
//! the same run.

use std::time::Instant;

use loro::{ExportMode, LoroDoc};

use crate::editing_trace::Trace;
use crate::trace_replay::{TYPING_INTERVAL_MS, replay};

/// Transactions of the automerge-paper trace the figures use (the first ones).
const TRANSACTIONS: usize = 60_000;

/// Prints the figures; `trace` is the automerge-paper trace.
pub fn run(trace: &Trace) {
    let mut trace = trace.clone();
    trace.transactions.truncate(TRANSACTIONS);
    let ops = trace.patch_count();
    let (local_per_s, import_per_s) = raw_loro_ops_per_s(&trace);
    println!(
        "anchor: raw Loro on the first {ops} operations of automerge-paper: local edits {local_per_s:.0} ops/s, import in 20-operation updates {import_per_s:.0} ops/s"
    );
    println!("anchor: raw openmls encrypt+decrypt of one message: {:.1} µs", crate::bench_mls::raw_openmls_round_trip_us());
    let mut samples = Vec::new();
    let mut per_message = 0.0;
    for seed in 0..3 {
        let started = Instant::now();
        let replayed = replay(&trace, 3, seed, |_, _| {});
        let elapsed = started.elapsed().as_secs_f64();
        assert!(replayed.failure.is_none(), "the benchmark's replay failed: {:?}", replayed.failure);
        samples.push(elapsed);
        per_message = ops as f64 / replayed.messages.max(1) as f64;
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[1];
    // Each operation is made on one device and applied at the two others.
    println!(
        "document: {ops} operations typed at one per {TYPING_INTERVAL_MS} ms on 3 devices through the kernel path (edit -> durable outbox -> MLS -> 3 acceptors -> decrypt -> apply at every device), simulator on one core: median {median:.2} s = {:.0} ops/s end to end ({:.2}x raw Loro import)",
        ops as f64 / median,
        (ops as f64 / median) / import_per_s
    );
    println!("document: {per_message:.1} CRDT operations per MLS message under typing load (target >= 10)");
}

/// Raw Loro: the trace's edits on one document, then imported elsewhere in 20-operation updates.
fn raw_loro_ops_per_s(trace: &Trace) -> (f64, f64) {
    let ops = trace.patch_count() as f64;
    let mut local = Vec::new();
    let mut import = Vec::new();
    for _ in 0..3 {
        let doc = LoroDoc::new();
        doc.set_peer_id(1).expect("peer");
        let text = doc.get_text("text");
        let mut updates = Vec::new();
        let mut version = doc.oplog_vv();
        let started = Instant::now();
        for (index, patch) in trace.transactions.iter().flat_map(|t| &t.patches).enumerate() {
            text.splice(patch.position, patch.delete, &patch.insert).expect("in range");
            if index % 20 == 19 {
                doc.commit();
                updates.push(doc.export(ExportMode::updates(&version)).expect("export"));
                version = doc.oplog_vv();
            }
        }
        doc.commit();
        updates.push(doc.export(ExportMode::updates(&version)).expect("export"));
        local.push(ops / started.elapsed().as_secs_f64());
        let other = LoroDoc::new();
        let started = Instant::now();
        for update in &updates {
            other.import(update).expect("import");
        }
        import.push(ops / started.elapsed().as_secs_f64());
    }
    local.sort_by(f64::total_cmp);
    import.sort_by(f64::total_cmp);
    (local[1], import[1])
}
