//! An opt-in record of what each node's driver did when, so that a benchmark can say where an
//! edit's latency goes (the real benchmark prints it by stage: author, hop, acceptor, hop,
//! reader). Off unless the host hands its drivers a [`Timeline`] with
//! [`DriverHandle::record_on`](crate::DriverHandle::record_on); then each mark costs a lock
//! and a push.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Marks one timeline keeps at most; later ones are dropped and counted.
pub const MARKS_MAX: usize = 1 << 22;

/// What a driver (or the host) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The driver handed its node a frame from a peer.
    Received,
    /// A commit went to storage.
    CommitStarted,
    /// That commit is durable.
    CommitDone,
    /// A frame left for a peer.
    Sent,
    /// An event went to the host.
    Notified,
    /// The host's own mark (its `u32` says which).
    Host(u32),
}

/// One step of one node, at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// When.
    pub at: Instant,
    /// Which node: numbered from 0 in the order they joined the timeline; the host marks as
    /// [`HOST`].
    pub node: u32,
    /// What.
    pub step: Step,
}

/// The node number of the host's own marks.
pub const HOST: u32 = u32::MAX;

/// Marks from any number of drivers, in the order they were made.
#[derive(Clone, Default)]
pub struct Timeline {
    recording: Arc<AtomicBool>,
    inner: Arc<Mutex<Marks>>,
}

#[derive(Default)]
struct Marks {
    marks: Vec<Mark>,
    dropped: u64,
    nodes: u32,
}

impl Timeline {
    /// An empty timeline, not recording yet.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// The next node's number.
    pub(crate) fn join(&self) -> u32 {
        let mut inner = self.inner.lock().expect("timeline lock");
        inner.nodes += 1;
        inner.nodes - 1
    }

    /// Starts or stops keeping marks (joining does not depend on it).
    pub fn record(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    /// Notes that `node` did `step` now.
    pub fn mark(&self, node: u32, step: Step) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let at = Instant::now();
        let mut inner = self.inner.lock().expect("timeline lock");
        if inner.marks.len() >= MARKS_MAX {
            inner.dropped += 1;
            return;
        }
        inner.marks.push(Mark { at, node, step });
    }

    /// The marks so far (leaving none), and how many were dropped past [`MARKS_MAX`].
    pub fn take(&self) -> (Vec<Mark>, u64) {
        let mut inner = self.inner.lock().expect("timeline lock");
        let dropped = std::mem::take(&mut inner.dropped);
        (std::mem::take(&mut inner.marks), dropped)
    }
}

/// The stages of an edit's way from its author to a reader's app, in order; they add up to the
/// edit's latency. The acceptor is the one whose commit was durable first (a reader reads the
/// first push it gets). The reader's commit is not among them: its app hears of another
/// member's update before the reader's write is durable (`Event::waits_for_writes`).
pub const EDIT_STAGES: [&str; 8] = [
    "author handles the edit",
    "author commits",
    "hop to the acceptor",
    "acceptor handles it",
    "acceptor commits",
    "hop to the reader",
    "reader handles it",
    "reader's app is told",
];

/// Who is who on a timeline, for [`edit_stages`].
pub struct EditPath {
    /// The node that makes the edits.
    pub author: u32,
    /// The acceptors.
    pub acceptors: Vec<u32>,
    /// The node whose app sees them.
    pub reader: u32,
}

/// Splits each edit's latency into [`EDIT_STAGES`] (µs). Edits go one at a time, each from the
/// host's `Host(started)` mark to its `Host(visible)` mark; an edit whose marks do not show the
/// whole path is left out.
pub fn edit_stages(marks: &[Mark], path: &EditPath, started: u32, visible: u32) -> Vec<[u64; EDIT_STAGES.len()]> {
    let host = |step: Step| move |mark: &Mark| mark.node == HOST && mark.step == step;
    let mut stages = Vec::new();
    let mut rest = marks;
    while let Some(begin) = rest.iter().position(host(Step::Host(started))) {
        let edit = &rest[begin..];
        let Some(end) = edit.iter().position(host(Step::Host(visible))) else { break };
        stages.extend(one_edit(&edit[..=end], path));
        rest = &edit[end + 1..];
    }
    stages
}

/// `edit` runs from the host's start mark to its visible mark.
fn one_edit(edit: &[Mark], path: &EditPath) -> Option<[u64; EDIT_STAGES.len()]> {
    // The first mark at or after `from` of `step` by a node `of` accepts.
    let first = |from: usize, of: &dyn Fn(u32) -> bool, step: Step| {
        edit[from..].iter().position(|mark| of(mark.node) && mark.step == step).map(|index| index + from)
    };
    let author = |node| node == path.author;
    let reader = |node| node == path.reader;
    let author_commits = first(0, &author, Step::CommitStarted)?;
    let author_done = first(author_commits, &author, Step::CommitDone)?;
    let acceptor = edit[first(author_done, &|node| path.acceptors.contains(&node), Step::CommitDone)?].node;
    let acceptor = |node| node == acceptor;
    let acceptor_received = first(author_done, &acceptor, Step::Received)?;
    let acceptor_commits = first(acceptor_received, &acceptor, Step::CommitStarted)?;
    let acceptor_done = first(acceptor_commits, &acceptor, Step::CommitDone)?;
    let reader_received = first(acceptor_done, &reader, Step::Received)?;
    let reader_notified = first(reader_received, &reader, Step::Notified)?;
    let moments = [
        0,
        author_commits,
        author_done,
        acceptor_received,
        acceptor_commits,
        acceptor_done,
        reader_received,
        reader_notified,
        edit.len() - 1,
    ];
    let mut stages = [0; EDIT_STAGES.len()];
    for (stage, pair) in stages.iter_mut().zip(moments.windows(2)) {
        *stage = edit[pair[1]].at.duration_since(edit[pair[0]].at).as_micros() as u64;
    }
    Some(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edits_latency_splits_into_stages_along_the_first_acceptor_to_commit() {
        let base = Instant::now();
        let mark = |micros: u64, node: u32, step: Step| Mark { at: base + std::time::Duration::from_micros(micros), node, step };
        let (author, slow, fast, reader) = (0, 1, 2, 3);
        let path = EditPath { author, acceptors: vec![slow, fast], reader };
        let whole = vec![
            mark(0, HOST, Step::Host(0)),
            mark(10, author, Step::CommitStarted),
            mark(110, author, Step::CommitDone),
            mark(111, author, Step::Sent),
            mark(140, slow, Step::Received),
            mark(150, fast, Step::Received),
            mark(145, slow, Step::CommitStarted),
            mark(155, fast, Step::CommitStarted),
            mark(300, fast, Step::CommitDone),
            mark(340, reader, Step::Received),
            mark(350, slow, Step::CommitDone),
            mark(360, reader, Step::CommitStarted),
            mark(365, reader, Step::Notified),
            mark(395, HOST, Step::Host(1)),
            mark(500, reader, Step::CommitDone),
        ];
        let stages = edit_stages(&whole, &path, 0, 1);
        assert_eq!(stages, vec![[10, 100, 40, 5, 145, 40, 25, 30]], "by the fast acceptor, adding up to 395");

        let mut two = whole.clone();
        // A second edit whose reader's app was never told is left out.
        two.extend(whole.iter().filter(|m| !(m.node == reader && m.step == Step::Notified)).copied());
        two.extend(whole.iter().copied());
        assert_eq!(edit_stages(&two, &path, 0, 1).len(), 2);
    }

    #[test]
    fn marks_are_kept_only_while_recording() {
        let timeline = Timeline::new();
        assert_eq!((timeline.join(), timeline.join()), (0, 1));
        timeline.mark(0, Step::Sent);
        timeline.record(true);
        timeline.mark(1, Step::Received);
        timeline.mark(HOST, Step::Host(7));
        timeline.record(false);
        timeline.mark(0, Step::Sent);
        let (marks, dropped) = timeline.take();
        let steps: Vec<_> = marks.iter().map(|mark| (mark.node, mark.step)).collect();
        assert_eq!(steps, vec![(1, Step::Received), (HOST, Step::Host(7))]);
        assert_eq!(dropped, 0);
        assert!(marks[0].at <= marks[1].at);
        assert!(timeline.take().0.is_empty(), "taking leaves none");
    }
}
