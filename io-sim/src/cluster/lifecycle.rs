//! A node's life: boots, crashes, restarts (from its disk, or from nothing) and loss for good.

use plait_kernel::{Acceptor, Device};

use super::{Cluster, Machine, Role};

impl Cluster {
    /// Crashes a node: its memory is gone, its disk keeps what was durable.
    pub fn crash(&mut self, node: usize) {
        if self.nodes[node].machine.take().is_some() {
            self.stats.crashes += 1;
            self.nodes[node].timer = None;
            self.nodes[node].flush_due = false;
            let id = self.nodes[node].id;
            self.trace.record(self.now, id, 10, &[]);
            self.trace.line(|| format!("{} {id} CRASH", self.now));
        }
    }

    /// Restarts a crashed node from its durable state (or from nothing with `wipe`).
    pub fn restart(&mut self, node: usize, wipe: bool) {
        if self.nodes[node].machine.is_some() {
            return;
        }
        if wipe {
            self.nodes[node].disk.wipe();
            self.stats.wipes += 1;
            if self.nodes[node].role == Role::Acceptor {
                let id = self.nodes[node].id;
                if let Some((group, lost)) = self.checker.documents.on_wipe(id).first() {
                    let detail = format!("{id} lost its disk and with it the last copy of safe message {lost:?} of {group:?}");
                    self.checker.fail(self.now, "no-safe-update-is-lost", detail);
                }
            }
        }
        self.boot(node);
    }

    /// Marks a node as lost for good: the liveness phase will not restart it.
    pub fn lose(&mut self, node: usize) {
        self.crash(node);
        self.nodes[node].lost = true;
    }

    pub(super) fn boot(&mut self, index: usize) {
        let seed = self.rng.seed();
        let node = &mut self.nodes[index];
        node.boot += 1;
        node.timer = None;
        let restored = node.disk.durable().clone();
        let (machine, outputs) = match node.role {
            Role::Device => {
                let identity_seed = *blake3::hash(&node.id.0).as_bytes();
                let (device, outputs) = Device::new(self.config.clone(), node.id, identity_seed, seed, restored);
                self.checker.on_device_restart(node.id);
                (Machine::Device(Box::new(device)), outputs)
            }
            Role::Acceptor => {
                let (acceptor, outputs) = Acceptor::new(self.config.clone(), node.id, seed, restored);
                self.checker.on_acceptor_restart(self.now, &acceptor);
                (Machine::Acceptor(Box::new(acceptor)), outputs)
            }
        };
        node.machine = Some(machine);
        let id = node.id;
        self.trace.record(self.now, id, 11, &seed.to_le_bytes());
        self.trace.line(|| format!("{} {id} BOOT", self.now));
        self.execute(index, outputs);
    }
}
