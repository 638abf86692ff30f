//! Node configuration: every queue, map and retry has a named limit here.
//!
//! A [`Config`] becomes usable only through [`Config::validate`], which returns a [`ValidConfig`];
//! the nodes accept nothing else, so a node can never run on limits that contradict each other.

use serde::{Deserialize, Serialize};

/// Limits and timings of one node. Field names end in their unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Largest encoded wire message accepted or sent.
    pub message_bytes_max: usize,
    /// Largest encoded log entry (the value a slot carries).
    pub entry_bytes_max: usize,
    /// Groups one node hosts at most.
    pub groups_max: usize,
    /// Acceptors in one group's acceptor set at most.
    pub acceptors_max: usize,
    /// Proposers named in one genesis at most.
    pub proposers_max: usize,
    /// Slots one group's log may reach; a proposal past it is refused.
    pub slots_per_group_max: u64,
    /// Local proposals waiting in one group's queue at most.
    pub proposals_queued_max: usize,
    /// Devices an acceptor pushes chosen values to, per group.
    pub subscribers_max: usize,
    /// How far past its first unchosen slot an acceptor accepts values.
    pub accepted_window_slots: u64,
    /// Chosen entries an acceptor keeps in memory per group; older ones are loaded from disk.
    pub chosen_in_memory_max: usize,
    /// Entries in one catch-up page at most.
    pub catch_up_entries_max: usize,
    /// Disk loads an acceptor has outstanding at once at most.
    pub loads_pending_max: usize,
    /// First backoff after a rejected or timed-out ballot; doubles per failure.
    pub backoff_ms_min: u64,
    /// Largest backoff between ballot attempts.
    pub backoff_ms_max: u64,
    /// How long a proposer waits for a quorum of promises or accepts before retrying.
    pub ballot_timeout_ms: u64,
    /// How often a proposer retransmits an unanswered accept before starting a new ballot.
    pub accept_retransmits_max: u32,
    /// How often a device asks its acceptors for chosen values it may have missed.
    pub sync_interval_ms: u64,
    /// How often an acceptor retries recovery or asks peers for chosen values it missed.
    pub peer_sync_interval_ms: u64,
    /// The longest a device waits between syncs of a group that makes no progress: each quiet
    /// round doubles the wait from `sync_interval_ms` up to this.
    pub idle_sync_interval_max_ms: u64,
    /// The same for an acceptor's rounds with its peers, from `peer_sync_interval_ms`.
    pub idle_peer_sync_interval_max_ms: u64,
    /// How long a slot may sit accepted but undecided before a device finishes it.
    pub stuck_slot_ms: u64,
    /// Past MLS epochs whose secrets a member keeps to decrypt late messages; older ones are
    /// deleted (forward secrecy).
    pub mls_past_epochs_max: usize,
    /// Key packages a device keeps outstanding (waiting for a Welcome) at most.
    pub key_packages_max: usize,
    /// Largest application message (plaintext) a device sends.
    pub application_bytes_max: usize,
    /// Application messages a device holds per group while its own commit is undecided (MLS
    /// cannot encrypt then); they leave in the next epoch.
    pub outbox_max: usize,
    /// Application messages from epochs a device has not reached, held per group until it does.
    pub future_messages_max: usize,
    /// Recently received application messages a device remembers per group, to drop the copies
    /// every acceptor relays.
    pub seen_messages_max: usize,
    /// Invites an admin device keeps open per group at most.
    pub invites_max: usize,
    /// Longest an invite (and its mailbox) may stay open.
    pub invite_lifetime_ms_max: u64,
    /// Mailboxes one acceptor holds at most (over all groups).
    pub mailboxes_max: usize,
    /// Largest key package posted to a mailbox.
    pub key_package_bytes_max: usize,
    /// Mailbox requests (posts and fetches) one peer may make per second at one acceptor.
    pub mailbox_requests_per_peer_per_second: u32,
    /// Peers whose mailbox request rate an acceptor tracks at once.
    pub mailbox_peers_tracked_max: usize,
    /// A device sends a batch of local edits at most this long after its first edit.
    pub flush_after_ms: u64,
    /// A device sends a batch of local edits once its update reaches this size.
    pub flush_bytes: usize,
    /// Largest document update one batch may carry (a single edit larger than this is refused).
    pub update_bytes_max: usize,
    /// How many acceptors must store a document message before it counts as safe.
    pub write_quorum: WriteQuorum,
    /// Document messages a device keeps unsafe per group at most; edits are refused beyond it.
    pub unsafe_messages_max: usize,
    /// A device posts an unsafe message again to acceptors that have not acknowledged it this
    /// long after the last post.
    pub post_resend_ms: u64,
    /// A device writes which of its messages are safe at most this long after it learns it, if
    /// no other write of it carried the record first.
    pub safe_below_write_ms: u64,
    /// Document messages a device (re)posts per group per timer at most.
    pub posts_per_round_max: usize,
    /// Largest document message (ciphertext) an acceptor stores.
    pub stored_message_bytes_max: usize,
    /// Bytes of document messages an acceptor stores per group at most (its quota).
    pub group_store_bytes_max: usize,
    /// Bytes of document messages an acceptor stores over all its groups at most: its memory
    /// bound, since stores are held in memory. A post beyond it is refused like one over a
    /// group's quota (`QuotaExceeded`). Snapshots have their own budget, so a full node can
    /// still take the snapshots whose compactions free it.
    pub node_store_bytes_max: u64,
    /// Messages one backfill page carries at most.
    pub page_messages_max: usize,
    /// Document updates a device remembers having applied out of order per sender; beyond it an
    /// update may be applied twice, which changes nothing.
    pub updates_out_of_order_max: usize,
    /// A device writes a snapshot of its own document and deletes the stored updates it holds
    /// once this many were applied since its last one (so a restart imports one snapshot and
    /// fewer than this many updates, not the whole history).
    pub checkpoint_after_updates: u64,
    /// Compaction starts once this many applied document messages are not covered by a
    /// snapshot yet...
    pub compact_after_messages: u64,
    /// ...or once they hold this many bytes of updates.
    pub compact_after_bytes: u64,
    /// How long each member in the deterministic order waits for the ones before it to
    /// compact before it does (the first waits nothing).
    pub compaction_takeover_ms: u64,
    /// Largest snapshot (ciphertext) a device makes or an acceptor stores.
    pub snapshot_bytes_max: usize,
    /// Bytes of snapshots (whole and being stored) an acceptor holds over all its groups at
    /// most; a chunk beyond it is refused.
    pub node_snapshot_bytes_max: u64,
    /// Size of one snapshot chunk (each travels in one frame).
    pub snapshot_chunk_bytes: usize,
    /// Snapshots an acceptor keeps per group at most (the latest one and those being stored).
    pub snapshots_per_group_max: usize,
    /// Snapshot chunks a node sends or asks for per group per timer at most.
    pub snapshot_chunks_per_round_max: usize,
    /// Senders a compaction may name (everyone who ever wrote to the document).
    pub covered_senders_max: usize,
    /// A deliberately broken behaviour for checker tests; `None` in every real build.
    #[cfg(feature = "canary")]
    pub canary: Option<crate::canary::Canary>,
}

/// How many acceptors make a document message safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteQuorum {
    /// More than half of the group's acceptors: losing any minority loses nothing safe.
    Majority,
    /// This many (at least a majority, at most all of them).
    AtLeast(usize),
}

impl WriteQuorum {
    /// The acknowledgements needed with `acceptors` acceptors.
    pub fn of(self, acceptors: usize) -> usize {
        let majority = acceptors / 2 + 1;
        match self {
            WriteQuorum::Majority => majority,
            WriteQuorum::AtLeast(count) => count.clamp(majority, acceptors.max(1)),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            message_bytes_max: 1 << 20,
            entry_bytes_max: 64 << 10,
            groups_max: 10_000,
            acceptors_max: 15,
            proposers_max: 1_000,
            slots_per_group_max: 1 << 40,
            proposals_queued_max: 256,
            subscribers_max: 256,
            accepted_window_slots: 8,
            chosen_in_memory_max: 256,
            catch_up_entries_max: 64,
            loads_pending_max: 64,
            backoff_ms_min: 10,
            backoff_ms_max: 1_000,
            ballot_timeout_ms: 300,
            accept_retransmits_max: 2,
            sync_interval_ms: 500,
            peer_sync_interval_ms: 1_000,
            idle_sync_interval_max_ms: 8_000,
            idle_peer_sync_interval_max_ms: 16_000,
            stuck_slot_ms: 1_000,
            mls_past_epochs_max: 4,
            key_packages_max: 8,
            application_bytes_max: 16 << 10,
            outbox_max: 256,
            future_messages_max: 256,
            seen_messages_max: 1024,
            invites_max: 16,
            invite_lifetime_ms_max: 7 * 24 * 3_600_000,
            mailboxes_max: 10_000,
            key_package_bytes_max: 16 << 10,
            mailbox_requests_per_peer_per_second: 20,
            mailbox_peers_tracked_max: 4096,
            flush_after_ms: 20,
            flush_bytes: 64 << 10,
            update_bytes_max: 192 << 10,
            write_quorum: WriteQuorum::Majority,
            unsafe_messages_max: 65_536,
            post_resend_ms: 1_000,
            safe_below_write_ms: 500,
            posts_per_round_max: 64,
            stored_message_bytes_max: 256 << 10,
            group_store_bytes_max: 64 << 20,
            node_store_bytes_max: 1 << 30,
            page_messages_max: 256,
            updates_out_of_order_max: 4096,
            checkpoint_after_updates: 1_000,
            compact_after_messages: 1_000,
            compact_after_bytes: 8 << 20,
            compaction_takeover_ms: 5_000,
            snapshot_bytes_max: 256 << 20,
            node_snapshot_bytes_max: 1 << 30,
            snapshot_chunk_bytes: 256 << 10,
            snapshots_per_group_max: 3,
            snapshot_chunks_per_round_max: 64,
            covered_senders_max: 10_000,
            #[cfg(feature = "canary")]
            canary: None,
        }
    }
}

/// A configuration that passed [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidConfig(Config);

impl std::ops::Deref for ValidConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A limit that must be at least one was zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Two settings contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl Config {
    /// The least `message_bytes_max` the other limits allow (what `validate` asks of it): two
    /// entries, two application messages, a key package and its Welcome, two stored messages,
    /// two snapshot chunks, and catch-up pages within 64 messages.
    pub fn message_bytes_min(&self) -> usize {
        let catch_up = (self.catch_up_entries_max.saturating_mul(self.entry_bytes_max)).div_ceil(64);
        [
            self.entry_bytes_max.saturating_mul(2),
            self.application_bytes_max.saturating_mul(2),
            self.key_package_bytes_max.saturating_add(self.entry_bytes_max),
            self.stored_message_bytes_max.saturating_mul(2),
            self.snapshot_chunk_bytes.saturating_mul(2),
            catch_up,
        ]
        .into_iter()
        .max()
        .unwrap_or(1)
    }

    /// Checks every limit and returns the proof that they hold.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let at_least_one = [
            ("message_bytes_max", self.message_bytes_max as u64),
            ("entry_bytes_max", self.entry_bytes_max as u64),
            ("groups_max", self.groups_max as u64),
            ("acceptors_max", self.acceptors_max as u64),
            ("proposers_max", self.proposers_max as u64),
            ("slots_per_group_max", self.slots_per_group_max),
            ("proposals_queued_max", self.proposals_queued_max as u64),
            ("subscribers_max", self.subscribers_max as u64),
            ("accepted_window_slots", self.accepted_window_slots),
            ("chosen_in_memory_max", self.chosen_in_memory_max as u64),
            ("catch_up_entries_max", self.catch_up_entries_max as u64),
            ("loads_pending_max", self.loads_pending_max as u64),
            ("backoff_ms_min", self.backoff_ms_min),
            ("ballot_timeout_ms", self.ballot_timeout_ms),
            ("sync_interval_ms", self.sync_interval_ms),
            ("peer_sync_interval_ms", self.peer_sync_interval_ms),
            ("stuck_slot_ms", self.stuck_slot_ms),
            ("key_packages_max", self.key_packages_max as u64),
            ("application_bytes_max", self.application_bytes_max as u64),
            ("outbox_max", self.outbox_max as u64),
            ("future_messages_max", self.future_messages_max as u64),
            ("seen_messages_max", self.seen_messages_max as u64),
            ("invites_max", self.invites_max as u64),
            ("invite_lifetime_ms_max", self.invite_lifetime_ms_max),
            ("mailboxes_max", self.mailboxes_max as u64),
            ("key_package_bytes_max", self.key_package_bytes_max as u64),
            ("mailbox_requests_per_peer_per_second", u64::from(self.mailbox_requests_per_peer_per_second)),
            ("mailbox_peers_tracked_max", self.mailbox_peers_tracked_max as u64),
            ("flush_after_ms", self.flush_after_ms),
            ("flush_bytes", self.flush_bytes as u64),
            ("unsafe_messages_max", self.unsafe_messages_max as u64),
            ("post_resend_ms", self.post_resend_ms),
            ("safe_below_write_ms", self.safe_below_write_ms),
            ("posts_per_round_max", self.posts_per_round_max as u64),
            ("group_store_bytes_max", self.group_store_bytes_max as u64),
            ("page_messages_max", self.page_messages_max as u64),
            ("updates_out_of_order_max", self.updates_out_of_order_max as u64),
            ("checkpoint_after_updates", self.checkpoint_after_updates),
            ("compact_after_messages", self.compact_after_messages),
            ("compact_after_bytes", self.compact_after_bytes),
            ("snapshot_bytes_max", self.snapshot_bytes_max as u64),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes as u64),
            ("snapshots_per_group_max", self.snapshots_per_group_max as u64),
            ("snapshot_chunks_per_round_max", self.snapshot_chunks_per_round_max as u64),
            ("covered_senders_max", self.covered_senders_max as u64),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.backoff_ms_max < self.backoff_ms_min {
            return Err(ConfigError::Inconsistent("backoff_ms_max must be at least backoff_ms_min"));
        }
        if self.idle_sync_interval_max_ms < self.sync_interval_ms {
            return Err(ConfigError::Inconsistent("idle_sync_interval_max_ms must be at least sync_interval_ms"));
        }
        if self.idle_peer_sync_interval_max_ms < self.peer_sync_interval_ms {
            return Err(ConfigError::Inconsistent("idle_peer_sync_interval_max_ms must be at least peer_sync_interval_ms"));
        }
        if self.entry_bytes_max.saturating_mul(2) > self.message_bytes_max {
            return Err(ConfigError::Inconsistent(
                "message_bytes_max must hold two entries (an accept carries one plus its envelope)",
            ));
        }
        if self.application_bytes_max.saturating_mul(2) > self.message_bytes_max {
            return Err(ConfigError::Inconsistent("message_bytes_max must hold an encrypted application message"));
        }
        if self.key_package_bytes_max.saturating_add(self.entry_bytes_max) > self.message_bytes_max {
            return Err(ConfigError::Inconsistent("message_bytes_max must hold a mailbox's key package and Welcome"));
        }
        if (self.catch_up_entries_max as u64).saturating_mul(self.entry_bytes_max as u64) > self.message_bytes_max as u64 * 64 {
            return Err(ConfigError::Inconsistent("catch-up pages would be far larger than a message"));
        }
        if self.flush_bytes > self.update_bytes_max {
            return Err(ConfigError::Inconsistent("flush_bytes must be at most update_bytes_max"));
        }
        // Encryption adds a little; a message must fit the acceptor's limit and then a frame.
        if self.update_bytes_max.saturating_add(4096) > self.stored_message_bytes_max
            || self.stored_message_bytes_max.saturating_mul(2) > self.message_bytes_max
        {
            return Err(ConfigError::Inconsistent(
                "stored_message_bytes_max must hold an encrypted update, and message_bytes_max two of them",
            ));
        }
        if self.snapshot_chunk_bytes.saturating_mul(2) > self.message_bytes_max {
            return Err(ConfigError::Inconsistent("message_bytes_max must hold two snapshot chunks"));
        }
        if self.snapshots_per_group_max < 2 {
            return Err(ConfigError::Inconsistent("an acceptor must keep a new snapshot beside the one in force"));
        }
        if self.stored_message_bytes_max > self.group_store_bytes_max {
            return Err(ConfigError::Inconsistent("group_store_bytes_max must hold at least one message"));
        }
        if self.node_store_bytes_max < self.group_store_bytes_max as u64 {
            return Err(ConfigError::Inconsistent("node_store_bytes_max must hold one group's store (group_store_bytes_max)"));
        }
        if self.node_snapshot_bytes_max < self.snapshot_bytes_max as u64 {
            return Err(ConfigError::Inconsistent("node_snapshot_bytes_max must hold one snapshot (snapshot_bytes_max)"));
        }
        Ok(ValidConfig(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_zero_limits_are_refused() {
        assert!(Config::default().validate().is_ok());
        let config = Config { proposals_queued_max: 0, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::Zero("proposals_queued_max")));
        let config = Config { backoff_ms_max: 1, backoff_ms_min: 5, ..Config::default() };
        assert!(matches!(config.validate(), Err(ConfigError::Inconsistent(_))));
    }

    #[test]
    fn message_bytes_min_is_the_least_message_size_that_validates() {
        let least = Config::default().message_bytes_min();
        assert_eq!(least, 2 * Config::default().stored_message_bytes_max);
        assert!(Config { message_bytes_max: least, ..Config::default() }.validate().is_ok());
        assert!(Config { message_bytes_max: least - 1, ..Config::default() }.validate().is_err());
    }
}
