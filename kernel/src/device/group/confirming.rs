//! Confirming: a member tells the acceptors it opened the latest compaction's snapshot with the
//! key the compaction carried. Acceptors cannot check keys (they never see one), so they delete
//! what a compaction covers only once a member other than its committer confirmed it (see
//! `acceptor/snapshots.rs`). A key for another snapshot thus deletes nothing.
//!
//! ```text
//!   chosen, not ours --> wait our turn --> fetch the snapshot, open it
//!   opened (in our turn, or while catching up) --> SnapshotConfirmed to every acceptor, again
//!       each post_resend_ms, until each has answered or another compaction is chosen
//!   an acceptor says another member confirmed it --> nothing to do
//! ```
//!
//! Turns follow a keyed order over all members (readers too) by the snapshot's hash: the first
//! [`FIRST_CONFIRMERS`] start at once, so at least one is not the committer, who cannot choose
//! the hash to be alone; each next one waits `compaction_takeover_ms` longer, in case those
//! stay silent. Each member's turn is kept durably until it is done or outdated, so a restart
//! resumes it: the first ones at once, the others after their wait again, counted from the
//! restart. A member that imports the snapshot anyway confirms it too. A committer alone in its
//! group confirms its own, having opened what it stored: nobody else could, and its device
//! keeps every update.

use std::collections::{BTreeMap, BTreeSet};

use crate::context::Context;
use crate::device::group::DeviceGroup;
use crate::ids::NodeId;
use crate::io::Rejection;
use crate::snapshot::SnapshotHash;
use crate::storage::Record;
use crate::time::Time;
use crate::wire::Message;

/// Where a turn to confirm is kept, in the group's key-value state (openmls never writes keys
/// starting 0xff): the snapshot's hash and our rank (a store written before ranks were kept
/// holds the hash alone, and only the first confirmers wrote one: rank 0).
pub(crate) const DUTY_KEY: &[u8] = b"\xffplait/confirm-duty";

/// Members that confirm each compaction at once (the others take over in turn).
const FIRST_CONFIRMERS: u64 = 2;

/// Our confirmation of one snapshot.
#[derive(Debug)]
pub(crate) struct Confirming {
    hash: SnapshotHash,
    /// We opened it (else we fetch it to, from `resend_at` on).
    opened: bool,
    /// Our turn is on disk (until every acceptor answered, or another member confirmed).
    duty: bool,
    /// Restored with this rank: the wait for our turn starts at the first timer.
    rank_after_restart: Option<u64>,
    /// Acceptors that noted our confirmation.
    answered_by: BTreeSet<NodeId>,
    /// When to start (or check on) fetching, or to send the confirmation again.
    resend_at: Time,
}

impl Confirming {
    /// A turn to confirm kept on disk (taken again after a restart).
    pub(crate) fn restore(state: &BTreeMap<Vec<u8>, Vec<u8>>) -> Option<Confirming> {
        let bytes = state.get(DUTY_KEY)?;
        let (hash, rank) = postcard::from_bytes::<(SnapshotHash, u64)>(bytes)
            .or_else(|_| postcard::from_bytes::<SnapshotHash>(bytes).map(|hash| (hash, 0)))
            .ok()?;
        Some(Confirming {
            hash,
            opened: false,
            duty: true,
            rank_after_restart: Some(rank),
            answered_by: BTreeSet::new(),
            resend_at: Time::ZERO,
        })
    }

    /// When the confirmation next needs the timer.
    pub(super) fn wake_at(&self) -> Time {
        self.resend_at
    }
}

/// How long a member of `rank` waits before its turn: the first ones not at all, each next one
/// `takeover_ms` longer.
fn turn_wait_ms(rank: u64, takeover_ms: u64) -> u64 {
    (rank + 1).saturating_sub(FIRST_CONFIRMERS).saturating_mul(takeover_ms)
}

impl DeviceGroup {
    /// The compaction with `hash` was chosen (`ours`: we committed it, and `opened_ours`: its
    /// key opens what we stored). Confirm it in our turn.
    pub(super) fn start_confirming(&mut self, cx: &mut Context<'_>, hash: SnapshotHash, ours: bool, opened_ours: bool) {
        let Some(mls) = self.mls.as_ref() else { return };
        if ours {
            if opened_ours && mls.member.members().len() == 1 {
                cov_mark::hit!(device_alone_confirms_its_own_snapshot);
                self.confirm(cx, hash);
            }
            return;
        }
        let rank = mls.confirm_rank(&hash.0, &cx.me.0);
        if rank < FIRST_CONFIRMERS {
            cov_mark::hit!(device_is_chosen_to_confirm_a_snapshot);
        }
        let value = postcard::to_allocvec(&(hash, rank)).expect("invariant: hashes encode");
        cx.persist(vec![Record::MlsState { group: cx.group, key: DUTY_KEY.to_vec(), value: Some(value) }]);
        let resend_at = cx.now.plus_ms(turn_wait_ms(rank, cx.config.compaction_takeover_ms));
        self.compactor().confirming = Some(Confirming {
            hash,
            opened: false,
            duty: true,
            rank_after_restart: None,
            answered_by: BTreeSet::new(),
            resend_at,
        });
        self.confirming_timer(cx);
    }

    /// We opened the latest snapshot with its key: confirm it.
    pub(super) fn confirm(&mut self, cx: &mut Context<'_>, hash: SnapshotHash) {
        let compactor = self.compactor();
        let duty = compactor.confirming.as_ref().is_some_and(|c| c.hash == hash && c.duty);
        compactor.confirming = Some(Confirming {
            hash,
            opened: true,
            duty,
            rank_after_restart: None,
            answered_by: BTreeSet::new(),
            resend_at: cx.now,
        });
        self.confirming_timer(cx);
    }

    /// On the timer: drops a confirmation another compaction outdated (or one of a snapshot that
    /// did not open), fetches the snapshot in our turn, and sends the confirmation to the
    /// acceptors that have not answered.
    pub(super) fn confirming_timer(&mut self, cx: &mut Context<'_>) {
        let acceptors = self.acceptors().members().to_vec();
        let compactor = self.compactor();
        let latest = compactor.latest.as_ref().map(|latest| latest.compaction.hash);
        let Some(confirming) = compactor.confirming.as_mut() else { return };
        let unusable = compactor.unusable.as_ref().is_some_and(|unusable| unusable.hash == confirming.hash);
        if latest != Some(confirming.hash) || unusable {
            // Outdated, or it did not open: there is nothing to confirm.
            return self.stop_confirming(cx);
        }
        if let Some(rank) = confirming.rank_after_restart.take() {
            cov_mark::hit!(device_takes_its_turn_to_confirm_again_after_a_restart);
            confirming.resend_at = cx.now.plus_ms(turn_wait_ms(rank, cx.config.compaction_takeover_ms));
        }
        if cx.now < confirming.resend_at {
            return;
        }
        confirming.resend_at = cx.now.plus_ms(cx.config.post_resend_ms);
        if !confirming.opened {
            // Once the snapshot opens, `confirm` takes over.
            if compactor.catching_up.as_ref().is_none_or(|c| c.assembly.hash != confirming.hash) {
                self.fetch_latest_snapshot(cx, false);
            }
            return;
        }
        let hash = confirming.hash;
        let waiting: Vec<NodeId> = acceptors.into_iter().filter(|a| !confirming.answered_by.contains(a)).collect();
        cx.send_all(&waiting, &Message::SnapshotConfirmed { hash });
    }

    /// An acceptor noted our confirmation (once every one has, we are done), or tells us another
    /// member confirmed the snapshot (then we need not).
    pub(super) fn on_snapshot_confirmed(&mut self, cx: &mut Context<'_>, from: NodeId, hash: SnapshotHash) {
        let acceptors = self.acceptors().clone();
        if !acceptors.contains(from) {
            return cx.reject(Rejection::Unauthorised);
        }
        let compactor = self.compactor();
        let Some(confirming) = compactor.confirming.as_mut().filter(|c| c.hash == hash) else {
            // Told every member subscribed at that acceptor; only an unknown one is odd.
            if compactor.latest.as_ref().is_none_or(|latest| latest.compaction.hash != hash) {
                cx.reject(Rejection::Duplicate);
            }
            return;
        };
        if !confirming.opened {
            cov_mark::hit!(device_leaves_confirming_to_the_member_that_did);
            self.compactor().catching_up.take_if(|c| !c.import);
            return self.stop_confirming(cx);
        }
        confirming.answered_by.insert(from);
        if acceptors.members().iter().all(|a| confirming.answered_by.contains(a)) {
            self.stop_confirming(cx);
        }
    }

    fn stop_confirming(&mut self, cx: &mut Context<'_>) {
        if self.compactor().confirming.take().is_some_and(|c| c.duty) {
            cx.persist(vec![Record::MlsState { group: cx.group, key: DUTY_KEY.to_vec(), value: None }]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turn written before ranks were kept (the hash alone, by one of the first confirmers)
    /// is taken again at once; one written now keeps its rank.
    #[test]
    fn a_turn_on_disk_is_read_in_both_formats() {
        let hash = SnapshotHash([7; 32]);
        for (bytes, rank) in
            [(postcard::to_allocvec(&hash).expect("encodes"), 0), (postcard::to_allocvec(&(hash, 3u64)).expect("encodes"), 3)]
        {
            let state = BTreeMap::from([(DUTY_KEY.to_vec(), bytes)]);
            let restored = Confirming::restore(&state).expect("a turn");
            assert_eq!((restored.hash, restored.rank_after_restart, restored.duty), (hash, Some(rank), true));
        }
        assert!(Confirming::restore(&BTreeMap::from([(DUTY_KEY.to_vec(), vec![1, 2])])).is_none(), "garbage is no turn");
    }
}
