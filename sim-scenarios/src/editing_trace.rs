//! Editing traces (the format of `../shared/data/editing-traces/`) replayed through the
//! simulator: every transaction is a `Command::Edit` on one device, the whole kernel path runs
//! (outbox, MLS, acceptors, backfill), and every device must end with the trace's `endContent`.
//!
//! A sequential trace is split across the devices in turns. A concurrent trace names, for each
//! transaction, the transactions it was typed on top of; a device in the simulator may already
//! hold edits its author had not seen, so positions are first rewritten against one order of
//! all transactions (with Loro cursors, which follow characters rather than offsets). Each agent
//! types on its own device, and a device starts a run of its agent's transactions once it holds
//! everything typed before them.

use std::io::Read;

use loro::cursor::Side;
use loro::{ExportMode, IdSpan, LoroDoc};
use serde_json::Value;

/// One edit: replace `delete` characters at `position` with `insert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// Where (characters).
    pub position: usize,
    /// How many characters to delete.
    pub delete: usize,
    /// What to insert.
    pub insert: String,
}

/// One transaction: its author (agent) and patches, applied in order.
#[derive(Clone, Debug)]
pub struct Transaction {
    /// Which agent typed it (for a sequential trace: 0).
    pub agent: usize,
    /// Its patches.
    pub patches: Vec<Patch>,
}

/// A trace in one order: each transaction's positions are offsets into the text left by all the
/// transactions before it.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Agents (1 for a sequential trace).
    pub agents: usize,
    /// The transactions.
    pub transactions: Vec<Transaction>,
    /// The text every replica must end with.
    pub end: String,
}

impl Trace {
    /// Reads a gzipped JSON trace.
    pub fn load(path: &std::path::Path) -> Result<Trace, String> {
        let file = std::fs::File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let mut json = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut json)
            .map_err(|error| format!("{}: not gzipped text: {error}", path.display()))?;
        let value: Value = serde_json::from_str(&json).map_err(|error| format!("{}: not JSON: {error}", path.display()))?;
        Trace::from_json(&value).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// A trace from its JSON.
    pub fn from_json(value: &Value) -> Result<Trace, String> {
        let end = value["endContent"].as_str().ok_or("no endContent")?.to_string();
        let txns = value["txns"].as_array().ok_or("no txns")?;
        if value["kind"].as_str() == Some("concurrent") {
            let agents = value["numAgents"].as_u64().ok_or("no numAgents")? as usize;
            return Ok(Trace { agents, transactions: linearize(agents, txns)?, end });
        }
        if value["startContent"].as_str().is_some_and(|start| !start.is_empty()) {
            return Err("a trace with a non-empty startContent is not supported".into());
        }
        let transactions =
            txns.iter().map(|txn| Ok(Transaction { agent: 0, patches: patches(txn)? })).collect::<Result<_, String>>()?;
        Ok(Trace { agents: 1, transactions, end })
    }

    /// Patches in all.
    pub fn patch_count(&self) -> usize {
        self.transactions.iter().map(|t| t.patches.len()).sum()
    }
}

fn patches(txn: &Value) -> Result<Vec<Patch>, String> {
    let list = txn["patches"].as_array().ok_or("a transaction without patches")?;
    list.iter()
        .map(|p| {
            let number = |i: usize| p[i].as_u64().map(|n| n as usize).ok_or("a patch without numbers");
            let insert = p[2].as_str().ok_or("a patch without text")?.to_string();
            Ok(Patch { position: number(0)?, delete: number(1)?, insert })
        })
        .collect()
}

const TEXT: &str = "text";

/// Rewrites a concurrent trace's positions against the order of its transactions: each agent's
/// replica sees exactly a transaction's parents (as when it was typed); an extra document takes
/// every transaction in order, and cursors carry positions from the first to the second.
fn linearize(agents: usize, txns: &[Value]) -> Result<Vec<Transaction>, String> {
    let doc = |peer: u64| -> Result<LoroDoc, String> {
        let doc = LoroDoc::new();
        doc.set_peer_id(peer).map_err(|e| e.to_string())?;
        Ok(doc)
    };
    let replicas: Vec<LoroDoc> = (0..agents).map(|a| doc(a as u64 + 1)).collect::<Result<_, _>>()?;
    let ordered = doc(agents as u64 + 1)?;
    let mut exported = vec![0i32; agents];
    let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns.len());
    let mut has: Vec<Vec<bool>> = vec![Vec::with_capacity(txns.len()); agents];
    let mut parents_of: Vec<Vec<usize>> = Vec::with_capacity(txns.len());
    let mut out = Vec::with_capacity(txns.len());
    for (index, txn) in txns.iter().enumerate() {
        let agent = txn["agent"].as_u64().map(|a| a as usize).filter(|a| *a < agents).ok_or("a bad agent")?;
        let parents: Vec<usize> = txn["parents"]
            .as_array()
            .ok_or("no parents")?
            .iter()
            .map(|p| p.as_u64().map(|p| p as usize).filter(|p| *p < index).ok_or("a bad parent"))
            .collect::<Result<_, _>>()?;
        for seen in has.iter_mut() {
            seen.push(false);
        }
        let mut stack = parents.clone();
        let mut missing = Vec::new();
        while let Some(t) = stack.pop() {
            if !has[agent][t] {
                has[agent][t] = true;
                missing.push(t);
                stack.extend(parents_of[t].iter().copied());
            }
        }
        missing.sort_unstable();
        let replica = &replicas[agent];
        for t in missing {
            replica.import(&updates[t]).map_err(|e| e.to_string())?;
        }
        let mut rewritten = Vec::new();
        for patch in patches(txn)? {
            rewritten.extend(carry(replica, &ordered, &patch)?);
        }
        replica.commit();
        let peer = agent as u64 + 1;
        let counter = replica.oplog_vv().get(&peer).copied().unwrap_or(0);
        let span = [IdSpan::new(peer, exported[agent], counter)];
        let update = replica.export(ExportMode::updates_in_range(&span[..])).map_err(|e| e.to_string())?;
        exported[agent] = counter;
        ordered.import(&update).map_err(|e| e.to_string())?;
        updates.push(update);
        has[agent][index] = true;
        parents_of.push(parents);
        out.push(Transaction { agent, patches: rewritten });
    }
    Ok(out)
}

/// Applies one patch to `replica` and returns it as patches on `ordered` (which has not taken
/// the patch yet): deleted characters that `ordered` still has, then the insert.
fn carry(replica: &LoroDoc, ordered: &LoroDoc, patch: &Patch) -> Result<Vec<Patch>, String> {
    let text = replica.get_text(TEXT);
    let mut positions = Vec::new();
    for k in patch.position..patch.position + patch.delete {
        let cursor = text.get_cursor(k, Side::Middle).ok_or("a delete outside the text")?;
        let found = ordered.get_cursor_pos(&cursor).map_err(|e| format!("{e:?}"))?;
        // A cursor whose character is gone comes back with an update: someone deleted it first.
        if found.update.is_none() {
            positions.push(found.current.pos);
        }
    }
    let mut out = Vec::new();
    positions.sort_unstable();
    for position in positions.into_iter().rev() {
        match out.last_mut() {
            Some(Patch { position: start, delete, .. }) if *start == position + 1 => {
                *start = position;
                *delete += 1;
            }
            _ => out.push(Patch { position, delete: 1, insert: String::new() }),
        }
    }
    // Deletions on `ordered` happen before the insert, so its position is found afterwards.
    text.splice(patch.position, patch.delete, &patch.insert).map_err(|e| e.to_string())?;
    if !patch.insert.is_empty() {
        // Just after the character before the insert (the deletes above are all after it, and
        // no other agent inserted there concurrently: the trace format promises it).
        let anchor = match patch.position {
            0 => 0,
            p => {
                let cursor = text.get_cursor(p - 1, Side::Middle).ok_or("an insert outside the text")?;
                let found = ordered.get_cursor_pos(&cursor).map_err(|e| format!("{e:?}"))?;
                // A character someone deleted first resolves to where it was: insert there.
                if found.update.is_some() { found.current.pos } else { found.current.pos + 1 }
            }
        };
        out.push(Patch { position: anchor, delete: 0, insert: patch.insert.clone() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies an ordered trace to a plain string.
    fn play(trace: &Trace) -> String {
        let mut text: Vec<char> = Vec::new();
        for patch in trace.transactions.iter().flat_map(|t| &t.patches) {
            text.splice(patch.position..patch.position + patch.delete, patch.insert.chars());
        }
        text.into_iter().collect()
    }

    #[test]
    fn a_concurrent_trace_in_one_order_still_ends_with_its_text() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/tests/data/editing-traces/friendsforever.json.gz");
        let trace = Trace::load(&path).expect("the trace loads");
        assert_eq!(trace.agents, 2);
        assert_eq!(play(&trace), trace.end);
    }
}
