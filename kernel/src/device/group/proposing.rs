//! Driving a device's proposer: preparing a ballot, proposing adopted values first and then our
//! own, turning MLS intents into commits when the proposer reaches a slot, and queueing the
//! scheduled key rotations.

use std::collections::BTreeSet;

use crate::canary::canary;
use crate::context::Context;
use crate::device::group::{DeviceGroup, Proposal};
use crate::device::membership::Intent;
use crate::device::proposer::{InFlight, Preparing, Proposer};
use crate::ids::Ballot;
use crate::io::{CommandError, Event};
use crate::log::Entry;
use crate::storage::Record;
use crate::wire::Message;

impl DeviceGroup {
    /// Queues a key rotation when this device's rotation is due, and schedules the next one
    /// (the interval plus up to a tenth of it, so members do not all rotate at once).
    pub(super) fn rotate_when_due(&mut self, cx: &mut Context<'_>) {
        let Some(mls) = self.mls.as_ref() else { return };
        let interval = mls.member.settings().map_or(0, |settings| settings.rotation_interval_ms);
        if interval == 0 || mls.may_write(cx.group, cx.me).is_err() {
            self.next_rotation_at = None;
            return;
        }
        let due = *self.next_rotation_at.get_or_insert(cx.now.plus_ms(interval));
        if cx.now < due {
            return;
        }
        let queued = self.queue.iter().any(|p| *p == Proposal::Intent(Intent::Rotate));
        if !queued && self.queue.len() < cx.config.proposals_queued_max {
            cov_mark::hit!(device_rotates_keys_on_schedule);
            self.queue.push_back(Proposal::Intent(Intent::Rotate));
        }
        let jitter = cx.rng.in_range(0, interval / 10);
        self.next_rotation_at = Some(cx.now.plus_ms(interval + jitter));
    }

    /// Moves the proposer forward as far as it can without waiting.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Proposer::Backoff { until } = self.proposer {
            if cx.now < until {
                return;
            }
            self.proposer = Proposer::Idle;
        }
        if let Proposer::Leading(leading) = &self.proposer
            && &leading.acceptors != self.history.at(self.next_slot)
        {
            cov_mark::hit!(leader_reprepares_after_acceptor_change);
            self.proposer = Proposer::Idle;
        }
        match &mut self.proposer {
            Proposer::Idle => {
                if !self.is_idle() {
                    self.start_prepare(cx);
                }
            }
            Proposer::Leading(leading) if leading.in_flight.is_none() => self.propose_next(cx),
            Proposer::Backoff { .. } | Proposer::Preparing(_) | Proposer::Leading(_) => {}
        }
    }

    pub(super) fn start_prepare(&mut self, cx: &mut Context<'_>) {
        let round = self.round_floor.max(self.highest_round_seen) + 1;
        if !canary!(cx.config, BallotCounterNotPersisted) {
            cx.persist(vec![Record::RoundFloor { group: cx.group, round }]);
            self.round_floor = round;
        }
        let ballot = Ballot { round, proposer: cx.me };
        let acceptors = self.history.at(self.next_slot).clone();
        cx.send_all(acceptors.members(), &Message::Prepare { ballot, from_slot: self.next_slot });
        self.proposer = Proposer::Preparing(Preparing {
            ballot,
            from_slot: self.next_slot,
            acceptors,
            promises: Default::default(),
            deadline: cx.now.plus_ms(cx.config.ballot_timeout_ms),
        });
    }

    /// As leader with nothing in flight: propose the adopted value for the next slot, else our own.
    pub(super) fn propose_next(&mut self, cx: &mut Context<'_>) {
        let slot = self.next_slot;
        let adopted = match &mut self.proposer {
            Proposer::Leading(leading) => leading.adopted.remove(&slot),
            _ => return,
        };
        let (entry, own) = if let Some(adopted) = adopted {
            cov_mark::hit!(leader_proposes_adopted_value);
            (adopted.entry, false)
        } else if let Some(entry) = self.own_entry(cx) {
            (entry, true)
        } else if self.finish_stuck_slot {
            (Entry::Noop, false)
        } else {
            return;
        };
        let Proposer::Leading(leading) = &mut self.proposer else { return };
        let value_hash = entry.hash();
        let proof = self.mls.as_ref().map(|mls| mls.sign_accept(cx.group, leading.ballot, slot, &value_hash)).unwrap_or_default();
        let accept = Message::Accept {
            ballot: leading.ballot,
            slot,
            entry: entry.clone(),
            value_hash,
            promised_by: leading.promised_by.clone(),
            proof: proof.clone(),
        };
        cx.send_all(leading.acceptors.members(), &accept);
        leading.in_flight = Some(InFlight {
            slot,
            entry,
            value_hash,
            proof,
            own,
            accepted_by: BTreeSet::new(),
            refused_by: BTreeSet::new(),
            deadline: cx.now.plus_ms(cx.config.ballot_timeout_ms),
            retransmits: 0,
        });
    }

    /// The value for our head proposal: an opaque value as queued, or an MLS commit made (and
    /// durably pending) now. An intent that cannot become a commit is dropped with an error.
    pub(super) fn own_entry(&mut self, cx: &mut Context<'_>) -> Option<Entry> {
        loop {
            let intent = match self.queue.front()? {
                Proposal::Value(entry) => return Some(entry.clone()),
                Proposal::Intent(intent) => intent.clone(),
            };
            let mls = self.mls.as_mut().expect("invariant: intents are queued only in MLS groups");
            if intent == Intent::Resume && mls.pending.is_none() {
                // Settled meanwhile: another value took its slot, or it was chosen.
                self.queue.pop_front();
                continue;
            }
            let latest = self.replica.as_ref().and_then(|replica| replica.compactor.latest.as_ref());
            match mls.commit_for(&intent, latest) {
                Ok(entry) => {
                    // The pending commit is durable before its accept leaves.
                    let records = mls.changes(cx.group, false);
                    cx.persist(records);
                    return Some(entry);
                }
                Err(_) if matches!(intent, Intent::Compact(..)) => {
                    // Automatic work the app never asked for: nothing to tell it.
                    self.queue.pop_front();
                    self.compaction_abandoned();
                }
                Err(error) => {
                    self.queue.pop_front();
                    cx.effects.notify(Event::CommandFailed { error: CommandError::Mls(error.to_string()) });
                }
            }
        }
    }
}
