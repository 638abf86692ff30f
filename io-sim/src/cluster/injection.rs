//! Random fault injection during the safety phase: partitions, one-way cuts, isolation, clogs,
//! crashes with restarts (some with an empty disk), as the run's `FaultProfile` allows.

use crate::chance::Chance;

use super::{Cluster, Role, SimEvent};

impl Cluster {
    pub(super) fn schedule_restart(&mut self, node: usize) {
        let downtime = self.rng.between(50, 2_000);
        let wipe = self.profile.wipes
            && self.nodes[node].role == Role::Acceptor
            && self.nodes[node].liar.is_none()
            && self.rng.happens(Chance::percent(30));
        self.schedule(self.now.plus_ms(downtime), SimEvent::Restart { node, wipe });
    }

    /// A wipe is allowed only while no other acceptor is rebuilding lost state, so at most one
    /// acceptor at a time is (the fault model's bound: with two of three amnesiac, no Paxos is
    /// safe).
    pub fn may_wipe(&self, node: usize) -> bool {
        self.acceptors().iter().filter(|a| **a != node).all(|a| !self.is_rebuilding(*a))
    }

    /// Whether an acceptor is rebuilding lost state: for some group the checker knows and whose
    /// current set includes it, its disk has no durable `Recovered` yet, or it lacks a message
    /// that is safe. Judged from the disk, so
    /// an acceptor that was wiped and has not even heard of the group yet counts as rebuilding
    /// (it used to pass as "voting in all its groups" because it had none).
    pub fn is_rebuilding(&self, acceptor: usize) -> bool {
        let id = self.id(acceptor);
        self.checker.groups().any(|group| {
            let member = self.checker.acceptors(group).is_some_and(|set| set.contains(id));
            let recovered = self.nodes[acceptor].disk.durable().groups.get(&group).is_some_and(|state| state.recovered);
            // Its message store counts too: until it has copied every safe message back from
            // its peers, losing another disk could lose the last copy.
            member && (!recovered || self.checker.documents.lacks_safe(id, group))
        })
    }

    pub(super) fn inject_fault(&mut self) {
        if !self.faults_on {
            return;
        }
        let count = self.nodes.len();
        let mut options: Vec<u8> = vec![0]; // 0: heal
        let p = &self.profile;
        for (on, code) in [(p.partitions, 1), (p.asymmetric, 2), (p.isolate, 3), (p.clogging, 4), (p.crashes, 5)] {
            if on {
                options.push(code);
            }
        }
        match options[self.rng.index(options.len())] {
            1 => {
                let side: Vec<usize> = (0..count).filter(|_| self.rng.happens(Chance::percent(50))).collect();
                let other: Vec<usize> = (0..count).filter(|i| !side.contains(i)).collect();
                self.partition(&side, &other);
            }
            2 => {
                let (from, to) = (self.rng.index(count), self.rng.index(count));
                self.network.block_one_way(from, to);
            }
            3 => {
                let node = self.rng.index(count);
                self.isolate(node);
            }
            4 => {
                let (from, to) = (self.rng.index(count), self.rng.index(count));
                let extra = self.rng.between(100, 1_000);
                self.network.clog(from, to, extra);
            }
            5 => {
                let node = self.rng.index(count);
                if self.is_up(node) {
                    self.crash(node);
                    self.schedule_restart(node);
                }
            }
            _ => self.heal(),
        }
        let at = self.now.plus_ms(self.rng.between(1, 2 * self.profile.fault_interval_ms));
        self.schedule(at, SimEvent::Fault);
    }
}
