//! How far a cluster has got: convergence, and a per-node account for liveness failures.

use plait_kernel::GroupId;

use super::{Cluster, Machine};

impl Cluster {
    /// Whether every running device and every running acceptor of the current set has learned
    /// every chosen slot of `group`, and no device has unfinished proposals.
    pub fn converged(&self, group: GroupId) -> bool {
        let frontier = self.checker.frontier(group);
        let Some(acceptors) = self.checker.acceptors(group) else { return false };
        // In an MLS group, devices that never joined or were removed do not follow it.
        let mls = self.checker.is_mls(group);
        let devices_done = self.devices().iter().filter_map(|d| self.device(*d)).all(|device| match device.group(group) {
            Some(g) => (mls && !g.is_member()) || (g.is_idle() && g.next_slot() == frontier),
            None => mls,
        });
        let acceptors_done = self
            .acceptors()
            .iter()
            .filter(|a| acceptors.contains(self.id(**a)) && self.nodes[**a].liar.is_none())
            .filter_map(|a| self.acceptor(*a))
            .all(|acceptor| acceptor.group(group).is_some_and(|g| g.is_voting() && g.chosen_next() == frontier));
        devices_done && acceptors_done
    }

    /// Whether every running member of `group` has nothing unsafe and all have applied exactly
    /// the same document updates (then [`Cluster::check_documents_agree`] says whether their texts
    /// agree). Cheap enough to evaluate after every event.
    pub fn documents_settled(&self, group: GroupId) -> bool {
        let mut members = self.devices().into_iter().filter_map(|d| self.device(d)?.group(group)).filter(|g| g.is_member());
        let Some(first) = members.next() else { return true };
        let digest = first.applied_digest();
        first.unsafe_messages() == 0 && members.all(|g| g.unsafe_messages() == 0 && g.applied_digest() == digest)
    }

    /// Checks that running members that applied exactly the same document updates hold the same
    /// text (`same-updates-same-document`). Cheap enough for checkpoints, not for every event.
    pub fn check_documents_agree(&mut self, group: GroupId) {
        let mut seen: Vec<([u8; 32], String, usize)> = Vec::new();
        for index in self.devices() {
            let Some(view) = self.device(index).and_then(|d| d.group(group)).filter(|g| g.is_member()) else { continue };
            let (Some(digest), Some(text)) = (view.applied_digest(), view.text()) else { continue };
            if let Some((_, other, at)) = seen.iter().find(|(d, t, _)| *d == digest && *t != text) {
                let detail = format!(
                    "devices {at} and {index} applied the same updates but hold different texts ({} and {} characters)",
                    other.chars().count(),
                    text.chars().count()
                );
                let now = self.now();
                return self.checker.fail(now, "same-updates-same-document", detail);
            }
            seen.push((digest, text, index));
        }
    }

    /// One line per node describing where it stands in `group` (for liveness failures).
    pub fn describe_group(&self, group: GroupId) -> String {
        let mut lines =
            vec![format!("ghost frontier {} acceptors {:?}", self.checker.frontier(group).0, self.checker.acceptors(group))];
        for (index, node) in self.nodes.iter().enumerate() {
            let state = match &node.machine {
                None => "down".to_string(),
                Some(Machine::Device(device)) => device.group(group).map_or("no group".into(), |g| {
                    format!(
                        "device next_slot={} queued={} idle={} {}",
                        g.next_slot().0,
                        g.queued(),
                        g.is_idle(),
                        g.proposer_state()
                    )
                }),
                Some(Machine::Acceptor(acceptor)) => acceptor.group(group).map_or("no group".into(), |g| {
                    format!("acceptor chosen_next={} voting={} promised={:?}", g.chosen_next().0, g.is_voting(), g.promised())
                }),
            };
            let rejected = match &node.machine {
                Some(Machine::Device(device)) => device.counters().nonzero(),
                Some(Machine::Acceptor(acceptor)) => acceptor.counters().nonzero(),
                None => Vec::new(),
            };
            lines.push(format!("  [{index}] {}: {state} rejected={rejected:?}", node.id));
        }
        lines.join("\n")
    }
}
