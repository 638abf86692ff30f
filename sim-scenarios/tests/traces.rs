//! Real editing traces through the whole kernel path in the simulator, under a seed's network
//! faults: every device ends with the trace's `endContent`.

use std::path::PathBuf;

use plait_sim_scenarios::editing_trace::Trace;
use plait_sim_scenarios::trace_replay::replay;

fn load(name: &str) -> Trace {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kernel/tests/data/editing-traces").join(name);
    Trace::load(&path).expect("the trace loads")
}

fn assert_every_device_ends_with_the_trace(trace: &Trace, devices: usize, seed: u64) {
    let replayed = replay(trace, devices, seed, |_, _| {});
    assert_eq!(replayed.failure, None);
    assert_eq!(replayed.texts.len(), devices);
    for (device, text) in replayed.texts.iter().enumerate() {
        assert!(*text == trace.end, "device {device} ended with {} characters, not the trace's {}", text.len(), trace.end.len());
    }
}

#[test]
fn the_concurrent_friendsforever_trace_converges_on_two_devices() {
    assert_every_device_ends_with_the_trace(&load("friendsforever.json.gz"), 2, 7);
}

#[test]
fn the_automerge_paper_trace_split_across_three_devices_ends_with_its_text() {
    assert_every_device_ends_with_the_trace(&load("automerge-paper.json.gz"), 3, 11);
}
