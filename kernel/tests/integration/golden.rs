//! Golden traces of kernel decisions: a script of inputs and every effect it produced, rendered
//! as text and compared with `tests/golden/NAME.txt`. Review changes as a diff; regenerate with
//! `PLAIT_UPDATE_GOLDEN=1 cargo test --workspace --test integration golden`.

use crate::support;

use plait_kernel::{Command, NodeId};

fn check(name: &str, log: &[String]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    let actual = log.join("\n") + "\n";
    if std::env::var_os("PLAIT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "golden trace {name} changed; review the diff and rerun with PLAIT_UPDATE_GOLDEN=1\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

/// Acceptors recover (choose an incarnation, fence, catch up), then one device commits two
/// values: the first after phase 1, the second in a single round trip.
#[test]
fn a_new_group_recovers_then_commits_two_values() {
    let (mut net, genesis) = support::net(1);
    let group = genesis.group_id();
    let device = NodeId::from_index(101);
    net.command(device, Command::OpenGroup { genesis });
    net.deliver_all(1_000);
    net.command(device, Command::Propose { group, value: b"first".to_vec() });
    net.deliver_all(1_000);
    net.log.push("--- second value: phase 1 is skipped".into());
    net.command(device, Command::Propose { group, value: b"second".to_vec() });
    net.deliver_all(1_000);
    assert_eq!(net.device(device).group(group).expect("open").next_slot().0, 2);
    check("a_new_group_recovers_then_commits_two_values", &net.log);
}

/// A second proposer with a higher ballot adopts the value the first one got accepted.
#[test]
fn a_second_proposer_adopts_the_accepted_value() {
    let (mut net, genesis) = support::net(2);
    let group = genesis.group_id();
    let (first, second) = (NodeId::from_index(101), NodeId::from_index(102));
    net.command(first, Command::OpenGroup { genesis: genesis.clone() });
    net.command(second, Command::OpenGroup { genesis });
    net.deliver_all(1_000);
    // The first device gets its value accepted, but never hears back.
    net.command(first, Command::Propose { group, value: b"adopt-me".to_vec() });
    net.deliver_all(9); // prepare, promises, accepts reach the acceptors
    net.unreachable.push(first);
    net.deliver_all(1_000);
    net.log.push("--- the second device proposes its own value".into());
    cov_mark::check!(leader_proposes_adopted_value);
    net.command(second, Command::Propose { group, value: b"own".to_vec() });
    net.deliver_all(1_000);
    let applied = net.device(second).group(group).expect("open").next_slot().0;
    assert_eq!(applied, 2, "the adopted value fills slot 0 and the device's own value slot 1");
    check("a_second_proposer_adopts_the_accepted_value", &net.log);
}
