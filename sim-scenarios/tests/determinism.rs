//! The same seed gives the same trace, byte for byte; a different seed gives another.

use plait_sim_scenarios::{RunOptions, all};

#[test]
fn every_scenario_replays_byte_for_byte() {
    for scenario in all() {
        for seed in [0, 1, 77] {
            let first = (scenario.run)(&RunOptions::new(seed));
            let second = (scenario.run)(&RunOptions::new(seed));
            assert_eq!(first.trace_hash, second.trace_hash, "{} seed {seed} is not deterministic", scenario.name);
            assert_eq!(first.events, second.events);
            assert!(first.violation.is_none(), "{} seed {seed}: {:?}", scenario.name, first.violation);
        }
        let other = (scenario.run)(&RunOptions::new(2));
        let first = (scenario.run)(&RunOptions::new(0));
        assert_ne!(first.trace_hash, other.trace_hash, "{}: the seed must matter", scenario.name);
    }
}

#[test]
fn keeping_the_text_trace_does_not_change_the_run() {
    let scenario = all().into_iter().find(|s| s.name.contains("random-swarm")).expect("exists");
    let plain = (scenario.run)(&RunOptions::new(5));
    let mut options = RunOptions::new(5);
    options.keep_trace_text = true;
    let traced = (scenario.run)(&options);
    assert_eq!(plain.trace_hash, traced.trace_hash);
    assert!(traced.trace_text.is_some_and(|lines| lines.len() > 100));
}
