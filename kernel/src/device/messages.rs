//! Application messages of one MLS group on a device.
//!
//! Sending: a message is encrypted for the current epoch, the advanced sender ratchet is made
//! durable, and only then does the ciphertext leave (a restart must never encrypt two plaintexts
//! under one key and nonce). While this device's own commit is undecided, openmls cannot encrypt;
//! messages wait in the outbox and leave in whichever epoch the log decides.
//!
//! Receiving: every acceptor relays each message, so copies are dropped by hash. A message from
//! an epoch this device has not reached waits until it does; one older than the kept epochs is
//! dropped (its secrets are gone: forward secrecy).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::context::Context;
use crate::ids::NodeId;
use crate::io::{CommandError, Rejection};
use crate::mls::MlsError;
use crate::updates::UpdateId;
use crate::wire::Message;

/// A message received for an epoch not reached yet.
#[derive(Debug)]
struct Early {
    sender: NodeId,
    message: Vec<u8>,
    /// For a document message from an acceptor's store: its id.
    stored: Option<UpdateId>,
}

/// Outgoing and incoming application messages of one group.
#[derive(Debug, Default)]
pub(crate) struct Messages {
    /// Plaintexts waiting for our pending commit to be decided (at most `outbox_max`).
    outbox: VecDeque<Vec<u8>>,
    /// Ciphertexts from epochs not reached, by epoch (at most `future_messages_max` in all).
    early: BTreeMap<u64, Vec<Early>>,
    early_count: usize,
    /// Hashes of recent ciphertexts, oldest first (at most `seen_messages_max`).
    seen_order: VecDeque<[u8; 32]>,
    seen: BTreeSet<[u8; 32]>,
}

/// What the group must do with a received message.
pub(crate) enum Received {
    /// A new message: decrypt it now.
    Decrypt,
    /// A copy of one already handled.
    Copy,
}

impl Messages {
    /// Queues a plaintext until the pending commit is decided.
    pub(crate) fn hold(&mut self, cx: &Context<'_>, data: Vec<u8>) -> Result<(), CommandError> {
        if self.outbox.len() >= cx.config.outbox_max {
            return Err(CommandError::QueueFull(self.outbox.len()));
        }
        self.outbox.push_back(data);
        Ok(())
    }

    /// Everything in the outbox, oldest first.
    pub(crate) fn take_outbox(&mut self) -> Vec<Vec<u8>> {
        self.outbox.drain(..).collect()
    }

    /// Notes a received ciphertext; copies of recent ones are dropped.
    pub(crate) fn receive(&mut self, cx: &mut Context<'_>, message: &[u8]) -> Received {
        let hash = *blake3::hash(message).as_bytes();
        if !self.seen.insert(hash) {
            cx.reject(Rejection::Duplicate);
            return Received::Copy;
        }
        self.seen_order.push_back(hash);
        while self.seen_order.len() > cx.config.seen_messages_max {
            let oldest = self.seen_order.pop_front().expect("non-empty");
            self.seen.remove(&oldest);
        }
        Received::Decrypt
    }

    /// Holds a message from `epoch` until this device reaches it.
    pub(crate) fn hold_early(
        &mut self,
        cx: &mut Context<'_>,
        epoch: u64,
        sender: NodeId,
        message: Vec<u8>,
        stored: Option<UpdateId>,
    ) {
        let held = self.early.entry(epoch).or_default();
        if stored.is_some() && held.iter().any(|early| early.stored == stored) {
            // Fetched again while it waits (the cursor stays before it until it is read).
            return cx.reject(Rejection::Duplicate);
        }
        if self.early_count >= cx.config.future_messages_max {
            return cx.reject(Rejection::OverLimit);
        }
        cov_mark::hit!(device_holds_a_message_from_a_future_epoch);
        held.push(Early { sender, message, stored });
        self.early_count += 1;
    }

    /// The held messages from epochs at or before `epoch`, oldest epoch first.
    pub(crate) fn take_early(&mut self, epoch: u64) -> Vec<(NodeId, Vec<u8>, Option<UpdateId>)> {
        let later = self.early.split_off(&(epoch + 1));
        let ready = std::mem::replace(&mut self.early, later);
        let ready: Vec<_> = ready.into_values().flatten().map(|e| (e.sender, e.message, e.stored)).collect();
        self.early_count -= ready.len();
        ready
    }
}

/// The rejection to count for a message that failed to decrypt.
pub(crate) fn rejection_of(error: &MlsError) -> Rejection {
    match error {
        MlsError::TooOld(_) => Rejection::Expired,
        MlsError::Malformed | MlsError::Rejected(_) | MlsError::FutureEpoch(_) => Rejection::Invalid,
        MlsError::Impossible(_) | MlsError::Internal(_) | MlsError::Panicked => Rejection::Invalid,
    }
}

/// The wire message carrying a ciphertext from this device.
pub(crate) fn outgoing(me: NodeId, message: Vec<u8>) -> Message {
    Message::Application { sender: me, message }
}
