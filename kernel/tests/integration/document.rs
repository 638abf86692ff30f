//! The Loro document against real editing traces (copied from `../shared/data/editing-traces`,
//! CC BY 4.0, see `tests/data/editing-traces/README.md`): replicas
//! that exchange updates end with the trace's `endContent`.

use std::io::Read;
use std::path::PathBuf;

use plait_kernel::document::{Document, DocumentError, LoroDocument};
use serde_json::Value;

fn trace(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/editing-traces").join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut json).expect("gzipped JSON");
    serde_json::from_str(&json).expect("JSON")
}

/// `[position, delete, insert]` patches of one transaction.
fn patches(txn: &Value) -> Vec<(usize, usize, String)> {
    let patches = txn["patches"].as_array().expect("patches");
    patches
        .iter()
        .map(|p| {
            let number = |i: usize| p[i].as_u64().expect("a number") as usize;
            (number(0), number(1), p[2].as_str().expect("text").to_string())
        })
        .collect()
}

fn apply(doc: &mut LoroDocument, txn: &Value) {
    for (position, delete, insert) in patches(txn) {
        doc.splice(position, delete, &insert).expect("the trace's edits are in range");
    }
}

/// A sequential trace split across two replicas in turns of 500 transactions; each hands its
/// updates to the other before the other's turn.
#[test]
fn a_sequential_trace_split_across_two_replicas_ends_with_its_text() {
    let trace = trace("automerge-paper.json.gz");
    let mut replicas = [LoroDocument::new(1).expect("doc"), LoroDocument::new(2).expect("doc")];
    let txns = trace["txns"].as_array().expect("txns");
    for (turn, chunk) in txns.chunks(500).enumerate() {
        let (writer, reader) = (turn % 2, 1 - turn % 2);
        for txn in chunk {
            apply(&mut replicas[writer], txn);
        }
        let update = replicas[writer].take_local_update().expect("export").expect("something was written");
        replicas[reader].merge(&update).expect("merge");
    }
    let end = trace["endContent"].as_str().expect("endContent");
    assert_eq!(replicas[0].text(), end);
    assert_eq!(replicas[1].text(), end);
}

/// A concurrent trace: each agent edits its own replica, on top of exactly the transactions its
/// edit's parents name; at the end every replica has every update and the trace's text.
#[test]
fn a_concurrent_trace_converges_to_its_text_on_every_replica() {
    let trace = trace("friendsforever.json.gz");
    let agents = trace["numAgents"].as_u64().expect("numAgents") as usize;
    let txns = trace["txns"].as_array().expect("txns");
    let mut replicas: Vec<LoroDocument> = (0..agents).map(|a| LoroDocument::new(a as u64 + 1).expect("doc")).collect();
    let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns.len());
    let mut has: Vec<Vec<bool>> = vec![vec![false; txns.len()]; agents];
    let parents: Vec<Vec<usize>> = txns
        .iter()
        .map(|t| t["parents"].as_array().expect("parents").iter().map(|p| p.as_u64().expect("index") as usize).collect())
        .collect();
    for (index, txn) in txns.iter().enumerate() {
        let agent = txn["agent"].as_u64().expect("agent") as usize;
        // Bring the agent's replica to the merged state of the parents (all their ancestors).
        let mut stack: Vec<usize> = parents[index].clone();
        let mut missing = Vec::new();
        while let Some(t) = stack.pop() {
            if !has[agent][t] {
                has[agent][t] = true;
                missing.push(t);
                stack.extend(parents[t].iter().copied());
            }
        }
        missing.sort_unstable();
        for t in missing {
            replicas[agent].merge(&updates[t]).expect("merge");
        }
        apply(&mut replicas[agent], txn);
        updates.push(replicas[agent].take_local_update().expect("export").expect("something was written"));
        has[agent][index] = true;
    }
    let end = trace["endContent"].as_str().expect("endContent");
    for (agent, replica) in replicas.iter_mut().enumerate() {
        // In reverse: order does not matter.
        for (t, update) in updates.iter().enumerate().rev() {
            if !has[agent][t] {
                replica.merge(update).expect("merge");
            }
        }
        assert_eq!(replica.text(), end, "agent {agent}");
    }
}

#[test]
fn bad_updates_and_edits_are_refused_and_repeats_change_nothing() {
    let mut doc = LoroDocument::new(7).expect("doc");
    doc.splice(0, 0, "hello").expect("insert");
    assert!(matches!(doc.splice(3, 5, ""), Err(DocumentError::OutOfRange { position: 3, delete: 5, len: 5 })));
    assert!(matches!(doc.splice(usize::MAX, 1, ""), Err(DocumentError::OutOfRange { .. })));
    assert!(matches!(doc.merge(b"not a loro update"), Err(DocumentError::BadUpdate(_))));
    let update = doc.take_local_update().expect("export").expect("an update");
    assert_eq!(doc.take_local_update().expect("export"), None, "nothing new to send");

    let mut other = LoroDocument::new(8).expect("doc");
    other.merge(&update).expect("merge");
    other.merge(&update).expect("a repeat is harmless");
    assert_eq!(other.text(), "hello");
    assert_eq!(other.take_local_update().expect("export"), None, "imported edits are not ours to send");
    assert!(matches!(other.merge(&update[..update.len() / 2]), Err(DocumentError::BadUpdate(_))), "a truncated update");
    assert_eq!(other.text(), "hello", "and the document is unharmed");
}

#[test]
fn the_same_edits_under_the_same_peer_give_the_same_bytes() {
    let run = || {
        let mut doc = LoroDocument::new(42).expect("doc");
        doc.splice(0, 0, "plait").expect("insert");
        doc.splice(2, 1, "A").expect("splice");
        doc.take_local_update().expect("export").expect("an update")
    };
    assert_eq!(run(), run());
}
