//! Each group's next timer, ordered by time.
//!
//! Why: a node hosts up to `groups_max` groups and reports its earliest timer after every input.
//! Scanning every group for it made each input cost time in proportion to the groups that
//! sleep (`plait-sim bench groups`). The node records a group's deadline again after each
//! input that touched it; the earliest is then the first entry, and a timer visits the groups
//! that are due, not every group.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::GroupId;
use crate::time::Time;

/// Every group's deadline, by time and by group (one entry per group: the node's group count
/// bounds both).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    by_time: BTreeSet<(Time, GroupId)>,
    by_group: BTreeMap<GroupId, Time>,
}

impl Deadlines {
    /// Records `group`'s next deadline, replacing the one it had.
    pub(crate) fn set(&mut self, group: GroupId, at: Time) {
        match self.by_group.insert(group, at) {
            Some(old) if old == at => return,
            Some(old) => {
                self.by_time.remove(&(old, group));
            }
            None => {}
        }
        self.by_time.insert((at, group));
    }

    /// Forgets `group` (the node no longer holds it).
    pub(crate) fn remove(&mut self, group: GroupId) {
        if let Some(at) = self.by_group.remove(&group) {
            self.by_time.remove(&(at, group));
        }
    }

    /// `group`'s deadline as recorded.
    pub(crate) fn of(&self, group: GroupId) -> Option<Time> {
        self.by_group.get(&group).copied()
    }

    /// The earliest deadline of any group.
    pub(crate) fn earliest(&self) -> Option<Time> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The groups whose deadline is at or before `now`, in group order (the order a scan of
    /// every group visited them in).
    pub(crate) fn due(&self, now: Time) -> Vec<GroupId> {
        let mut due: Vec<GroupId> = self.by_time.iter().take_while(|(at, _)| *at <= now).map(|(_, group)| *group).collect();
        due.sort_unstable();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_has_one_deadline_and_due_groups_come_in_group_order() {
        let mut deadlines = Deadlines::default();
        let (a, b, c) = (GroupId([1; 16]), GroupId([2; 16]), GroupId([3; 16]));
        deadlines.set(c, Time(5));
        deadlines.set(a, Time(9));
        deadlines.set(b, Time(7));
        assert_eq!(deadlines.earliest(), Some(Time(5)));
        deadlines.set(c, Time(20));
        assert_eq!(deadlines.earliest(), Some(Time(7)), "the old deadline is gone");
        assert_eq!(deadlines.due(Time(9)), [a, b]);
        assert_eq!(deadlines.due(Time(6)), Vec::<GroupId>::new());
        deadlines.set(a, Time(9));
        assert_eq!(deadlines.by_time.len(), 3);
    }
}
