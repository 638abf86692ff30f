//! One reused link per peer, whoever opened it, with reconnects.
//!
//! Each peer has a writer task and a bounded queue of frames. The task sends over the peer's
//! current link; without one it dials, and after a failed dial the next is due only after an
//! exponential backoff with jitter. A link the peer opens to us replaces ours, so replies reach a
//! device behind a NAT over the link it opened. Every link has a reader task that hands frames
//! to the driver through one bounded channel (back-pressure falls on the reading link).
//!
//! A link we opened that dies is dialed again at once (with backoff, `redials_max` times at
//! most), not only when a frame is next sent: the peer may have restarted, and a peer that
//! cannot dial us (a device behind a NAT, or one whose address it never learned) reaches us only
//! over a link we open. An acceptor that restarts pushes news to its subscribers at once; this
//! is what lets those pushes reach a device that is idle, not sending.
//!
//! Frames are best effort, as the kernel expects of a network: a frame that finds its peer's
//! queue full, its peer unreachable until the next dial is due, or fails `send_attempts_max`
//! times, is dropped and counted; the kernel resends what matters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use plait_kernel::NodeId;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::frames::{self, AddressHint, LinkFrame};
use crate::network::{LinkError, LinkErrorKind, Network};

/// The limits of the link layer.
#[derive(Clone, Debug)]
pub struct LinkLimits {
    /// Largest kernel frame sent or accepted; a larger incoming one closes the link.
    pub frame_bytes_max: usize,
    /// Peers with a writer task; frames to further peers are dropped.
    pub peers_max: usize,
    /// Frames queued per peer while its link is down or slow.
    pub queued_frames_per_peer_max: usize,
    /// Live links per peer (links a peer opens beyond this are closed at once).
    pub links_per_peer_max: usize,
    /// Frames waiting for the driver, from all links together.
    pub inbound_frames_max: usize,
    /// Attempts to send one frame (each after a fresh dial).
    pub send_attempts_max: u32,
    /// First wait after a failed dial; doubles up to `backoff_ms_max`, with ±50% jitter.
    pub backoff_ms_min: u64,
    /// Longest wait between dials.
    pub backoff_ms_max: u64,
    /// Dials again, though nothing waits to be sent, after a link we opened dies (see
    /// `write_to_peer`), with the same backoff as other dials.
    pub redials_max: u32,
    /// A dial that takes longer has failed.
    pub dial_timeout_ms: u64,
    /// A frame write that takes longer has failed.
    pub write_timeout_ms: u64,
}

impl Default for LinkLimits {
    fn default() -> LinkLimits {
        LinkLimits {
            frame_bytes_max: plait_kernel::Config::default().message_bytes_max,
            peers_max: 1024,
            queued_frames_per_peer_max: 1024,
            links_per_peer_max: 4,
            inbound_frames_max: 4096,
            send_attempts_max: 2,
            backoff_ms_min: 100,
            backoff_ms_max: 5_000,
            redials_max: 8,
            dial_timeout_ms: 5_000,
            write_timeout_ms: 5_000,
        }
    }
}

/// What the links hand the driver.
#[derive(Debug)]
pub enum Inbound {
    /// A kernel frame from a peer.
    Frame {
        /// The peer (authenticated by the network).
        from: NodeId,
        /// The bytes (untrusted).
        frame: Vec<u8>,
    },
    /// A link to `peer` came up after it had none (`Input::LinkUp`; dropped if the driver is
    /// that far behind, as it is only a hint).
    LinkUp {
        /// The peer.
        peer: NodeId,
    },
}

/// One peer's link state, for status output.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerState {
    /// Whether a link is up now (any of its links).
    pub connected: bool,
    /// Dials that failed since the last link came up.
    pub failures: u32,
    /// The last error, classified.
    pub last_error: Option<(LinkErrorKind, String)>,
}

/// Counters of the link layer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LinkStats {
    /// Per peer.
    pub peers: BTreeMap<NodeId, PeerState>,
    /// Errors by kind (`LinkErrorKind::ALL` order).
    pub errors: [u64; 5],
    /// Links that came up (dialed or accepted).
    pub links_opened: u64,
    /// Links closed at once because their peer had `links_per_peer_max` already.
    pub links_refused: u64,
    /// Frames written.
    pub frames_sent: u64,
    /// Kernel frames received.
    pub frames_received: u64,
    /// Frames dropped (queue full, too many peers, or failed `send_attempts_max` times).
    pub frames_dropped: u64,
    /// Bytes written, frames' bodies.
    pub bytes_sent: u64,
    /// Bytes received, frames' bodies.
    pub bytes_received: u64,
}

impl LinkStats {
    /// Links up now.
    pub fn connected(&self) -> usize {
        self.peers.values().filter(|peer| peer.connected).count()
    }
}

/// Frames a writer takes from its queue to write with one flush.
const FRAMES_PER_FLUSH_MAX: usize = 64;

struct Peer<W> {
    queue: mpsc::Sender<Bytes>,
    control: mpsc::Sender<Control<W>>,
    live_links: usize,
}

/// What a peer's writer task is told besides frames.
enum Control<W> {
    /// Use this link (the peer opened it); its id.
    Adopt(u64, W),
    /// This link's reader ended: if it is the one in use, drop it and dial at the next frame.
    Dead(u64),
}

struct Shared<N: Network> {
    network: N,
    limits: LinkLimits,
    inbound: mpsc::Sender<Inbound>,
    stats: Mutex<LinkStats>,
    peers: Mutex<BTreeMap<NodeId, Peer<N::Writer>>>,
    /// Told to every peer when a link comes up (a device tells acceptors where the others are).
    hints: Mutex<Vec<AddressHint>>,
    seed: u64,
    /// Names links, so a dead link's notice reaches only the writer still using it.
    next_link: std::sync::atomic::AtomicU64,
}

/// The links of one node.
pub struct Links<N: Network> {
    shared: Arc<Shared<N>>,
}

impl<N: Network> Clone for Links<N> {
    fn clone(&self) -> Self {
        Links { shared: self.shared.clone() }
    }
}

impl<N: Network> Links<N> {
    /// Starts accepting links on `network`; frames arrive on the returned receiver. `seed`
    /// drives the backoff jitter.
    pub fn start(network: N, limits: LinkLimits, seed: u64) -> (Links<N>, mpsc::Receiver<Inbound>) {
        let (inbound, receiver) = mpsc::channel(limits.inbound_frames_max);
        let shared = Arc::new(Shared {
            network,
            limits,
            inbound,
            stats: Mutex::new(LinkStats::default()),
            peers: Mutex::new(BTreeMap::new()),
            hints: Mutex::new(Vec::new()),
            seed,
            next_link: std::sync::atomic::AtomicU64::new(0),
        });
        let links = Links { shared };
        let acceptor = links.clone();
        tokio::spawn(async move {
            while let Some((peer, reader, writer)) = acceptor.shared.network.accept().await {
                acceptor.adopt(peer, reader, writer);
            }
        });
        (links, receiver)
    }

    /// Queues a kernel frame for `to`; never waits.
    pub fn send(&self, to: NodeId, frame: &[u8]) {
        if frame.len() > self.shared.limits.frame_bytes_max {
            self.shared.count(|stats| stats.frames_dropped += 1);
            return;
        }
        let queue = {
            let mut peers = self.shared.peers.lock().expect("peers lock");
            match self.peer(&mut peers, to) {
                Some(peer) => peer.queue.clone(),
                None => {
                    drop(peers);
                    self.shared.count(|stats| stats.frames_dropped += 1);
                    return;
                }
            }
        };
        if queue.try_send(frames::kernel(frame)).is_err() {
            self.shared.count(|stats| stats.frames_dropped += 1);
        }
    }

    /// Sets the address hints told to every peer when a link to it comes up.
    pub fn set_hints(&self, hints: Vec<AddressHint>) {
        *self.shared.hints.lock().expect("hints lock") = hints;
    }

    /// Ends every peer's writer task (their queues close); links end as the network closes.
    pub fn close(&self) {
        self.shared.peers.lock().expect("peers lock").clear();
    }

    /// The counters now.
    pub fn stats(&self) -> LinkStats {
        self.shared.stats.lock().expect("stats lock").clone()
    }

    /// The network.
    pub fn network(&self) -> &N {
        &self.shared.network
    }

    fn adopt(&self, peer: NodeId, reader: N::Reader, writer: N::Writer) {
        let mut peers = self.shared.peers.lock().expect("peers lock");
        let limit = self.shared.limits.links_per_peer_max;
        let Some(state) = self.peer(&mut peers, peer) else { return };
        let id = self.shared.link_id();
        if state.live_links >= limit || state.control.try_send(Control::Adopt(id, writer)).is_err() {
            drop(peers);
            self.shared.count(|stats| stats.links_refused += 1);
            return;
        }
        state.live_links += 1;
        drop(peers);
        self.shared.count(|stats| stats.links_opened += 1);
        tokio::spawn(read_link(self.shared.clone(), peer, id, reader));
    }

    /// The peer's state, starting its writer task on first use; `None` past `peers_max`.
    fn peer<'a>(&self, peers: &'a mut BTreeMap<NodeId, Peer<N::Writer>>, node: NodeId) -> Option<&'a mut Peer<N::Writer>> {
        if !peers.contains_key(&node) {
            if peers.len() >= self.shared.limits.peers_max {
                return None;
            }
            let (queue, frames) = mpsc::channel(self.shared.limits.queued_frames_per_peer_max);
            // Room for every link the peer may have live, so a link is refused only past the limit.
            // Room for every link the peer may have open, and a death notice for each.
            let (control, controls) = mpsc::channel(2 * self.shared.limits.links_per_peer_max.max(1));
            peers.insert(node, Peer { queue, control, live_links: 0 });
            tokio::spawn(write_to_peer(self.shared.clone(), node, frames, controls));
        }
        peers.get_mut(&node)
    }
}

impl<N: Network> Shared<N> {
    fn count(&self, change: impl FnOnce(&mut LinkStats)) {
        change(&mut self.stats.lock().expect("stats lock"));
    }

    fn failed(&self, peer: NodeId, error: &LinkError) {
        self.count(|stats| {
            let index = LinkErrorKind::ALL.iter().position(|kind| *kind == error.kind).expect("every kind listed");
            stats.errors[index] += 1;
            stats.peers.entry(peer).or_default().last_error = Some((error.kind, error.detail.clone()));
        });
    }

    fn connected(&self, peer: NodeId, up: bool) {
        let mut came_up = false;
        self.count(|stats| {
            let state = stats.peers.entry(peer).or_default();
            came_up = up && !state.connected;
            state.connected = up;
            if up {
                state.failures = 0;
            }
        });
        if came_up {
            let _ = self.inbound.try_send(Inbound::LinkUp { peer });
        }
    }

    fn link_id(&self) -> u64 {
        self.next_link.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A link's reader ended; the peer counts as connected while any of its links lives.
    fn link_closed(&self, peer: NodeId, id: u64) {
        let live = self.peers.lock().expect("peers lock").get_mut(&peer).map_or(0, |state| {
            state.live_links = state.live_links.saturating_sub(1);
            // Best effort: if the queue is full, the writer finds out at its next write.
            let _ = state.control.try_send(Control::Dead(id));
            state.live_links
        });
        self.count(|stats| stats.peers.entry(peer).or_default().connected = live > 0);
    }

    fn framed_writer(&self, writer: N::Writer) -> FramedWrite<N::Writer, LengthDelimitedCodec> {
        FramedWrite::new(writer, frames::codec(self.limits.frame_bytes_max))
    }
}

/// A small deterministic generator for backoff jitter (no OS randomness, so turmoil runs replay).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `min · 2^failures`, capped at `max`, times a factor in [0.5, 1.5).
    fn backoff_ms(&mut self, failures: u32, min: u64, max: u64) -> u64 {
        let base = min.saturating_mul(1u64 << failures.min(20)).min(max);
        base / 2 + self.next() % base.max(1)
    }
}

async fn write_to_peer<N: Network>(
    shared: Arc<Shared<N>>,
    peer: NodeId,
    mut frames: mpsc::Receiver<Bytes>,
    mut controls: mpsc::Receiver<Control<N::Writer>>,
) {
    let limits = shared.limits.clone();
    let jitter = Jitter(shared.seed ^ u64::from_le_bytes(peer.0[..8].try_into().expect("8 bytes")));
    let mut link: Option<Link<N::Writer>> = None;
    let mut dialing = Dialing { jitter, failures: 0, next_at: tokio::time::Instant::now(), redials_left: 0 };
    loop {
        let redial_due = link.is_none() && dialing.redials_left > 0;
        let first = tokio::select! {
            biased;
            Some(control) = controls.recv() => {
                match control {
                    Control::Adopt(id, writer) => {
                        dialing.redials_left = 0;
                        link = Some(Link { id, dialed: false, writer: greet(&shared, peer, shared.framed_writer(writer)).await });
                    }
                    Control::Dead(id) => {
                        if let Some(dead) = link.take_if(|current| current.id == id)
                            && dead.dialed
                        {
                            dialing.redial_soon(&limits);
                        }
                    }
                }
                continue;
            }
            () = tokio::time::sleep_until(dialing.next_at), if redial_due => {
                dialing.redials_left -= 1;
                if let Some(dialed) = dialing.dial(&shared, peer).await {
                    dialing.redials_left = 0;
                    link = Some(dialed);
                }
                continue;
            }
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => return,
            },
        };
        // Frames queued behind it leave with it: one flush, so they share packets.
        let mut batch = vec![first];
        while batch.len() < FRAMES_PER_FLUSH_MAX
            && let Ok(frame) = frames.try_recv()
        {
            batch.push(frame);
        }
        let mut attempts = 0;
        let delivered = loop {
            let writer = match link.as_mut() {
                Some(link) => &mut link.writer,
                None if tokio::time::Instant::now() < dialing.next_at => break false,
                None => match dialing.dial(&shared, peer).await {
                    Some(dialed) => {
                        dialing.redials_left = 0;
                        &mut link.insert(dialed).writer
                    }
                    None => break false,
                },
            };
            match tokio::time::timeout(Duration::from_millis(limits.write_timeout_ms), write_all(writer, &batch)).await {
                Ok(Ok(())) => {
                    let bytes: u64 = batch.iter().map(|frame| frame.len() as u64).sum();
                    shared.count(|stats| {
                        stats.frames_sent += batch.len() as u64;
                        stats.bytes_sent += bytes;
                    });
                    break true;
                }
                Ok(Err(error)) => shared.failed(peer, &LinkError::from_io(&error)),
                Err(_) => shared.failed(peer, &LinkError::new(LinkErrorKind::Timeout, "write timed out")),
            }
            link = None;
            attempts += 1;
            if attempts >= limits.send_attempts_max {
                break false;
            }
        };
        if !delivered {
            shared.count(|stats| stats.frames_dropped += batch.len() as u64);
        }
    }
}

/// The link a writer task sends over.
struct Link<W> {
    id: u64,
    /// We opened it (else the peer did).
    dialed: bool,
    writer: FramedWrite<W, LengthDelimitedCodec>,
}

/// A writer task's dialing: failures in a row, and when the next dial may start.
struct Dialing {
    jitter: Jitter,
    failures: u32,
    /// While a peer is unreachable, frames are dropped rather than queued until the next dial is
    /// due: the kernel resends what matters, and a returning peer gets no stale backlog.
    next_at: tokio::time::Instant,
    /// Dials still to make without a frame to send (after a link we opened died).
    redials_left: u32,
}

impl Dialing {
    /// A link we opened died: dial again soon, whether or not a frame waits.
    fn redial_soon(&mut self, limits: &LinkLimits) {
        self.redials_left = limits.redials_max;
        let wait = self.jitter.backoff_ms(0, limits.backoff_ms_min, limits.backoff_ms_max);
        self.next_at = self.next_at.max(tokio::time::Instant::now() + Duration::from_millis(wait));
    }

    /// Dials `peer`; after a failure, the next dial waits out the backoff.
    async fn dial<N: Network>(&mut self, shared: &Arc<Shared<N>>, peer: NodeId) -> Option<Link<N::Writer>> {
        match dial(shared, peer).await {
            Ok((id, writer)) => {
                self.failures = 0;
                Some(Link { id, dialed: true, writer: greet(shared, peer, writer).await })
            }
            Err(error) => {
                shared.failed(peer, &error);
                self.failures = self.failures.saturating_add(1);
                let failures = self.failures;
                shared.count(|stats| stats.peers.entry(peer).or_default().failures = failures);
                let limits = &shared.limits;
                let wait = self.jitter.backoff_ms(failures, limits.backoff_ms_min, limits.backoff_ms_max);
                self.next_at = tokio::time::Instant::now() + Duration::from_millis(wait);
                None
            }
        }
    }
}

/// Writes `batch` and flushes once.
async fn write_all<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut FramedWrite<W, LengthDelimitedCodec>,
    batch: &[Bytes],
) -> std::io::Result<()> {
    for frame in batch {
        writer.feed(frame.clone()).await?;
    }
    SinkExt::<Bytes>::flush(writer).await
}

/// Dials `peer` and starts reading from the new link.
async fn dial<N: Network>(
    shared: &Arc<Shared<N>>,
    peer: NodeId,
) -> Result<(u64, FramedWrite<N::Writer, LengthDelimitedCodec>), LinkError> {
    let timeout = Duration::from_millis(shared.limits.dial_timeout_ms);
    let (reader, writer) = tokio::time::timeout(timeout, shared.network.dial(peer))
        .await
        .map_err(|_| LinkError::new(LinkErrorKind::Timeout, "dial timed out"))??;
    if let Some(state) = shared.peers.lock().expect("peers lock").get_mut(&peer) {
        state.live_links += 1;
    }
    shared.count(|stats| stats.links_opened += 1);
    let id = shared.link_id();
    tokio::spawn(read_link(shared.clone(), peer, id, reader));
    Ok((id, shared.framed_writer(writer)))
}

/// Marks a new link up and tells the peer our hints (best effort: a failure shows at the next write).
async fn greet<N: Network>(
    shared: &Shared<N>,
    peer: NodeId,
    mut writer: FramedWrite<N::Writer, LengthDelimitedCodec>,
) -> FramedWrite<N::Writer, LengthDelimitedCodec> {
    shared.connected(peer, true);
    let hints: Vec<AddressHint> =
        shared.hints.lock().expect("hints lock").iter().filter(|hint| hint.node != peer).cloned().collect();
    if !hints.is_empty() {
        let timeout = Duration::from_millis(shared.limits.write_timeout_ms);
        let _ = tokio::time::timeout(timeout, writer.send(frames::hints(&hints))).await;
    }
    writer
}

async fn read_link<N: Network>(shared: Arc<Shared<N>>, peer: NodeId, id: u64, reader: N::Reader) {
    let mut frames = FramedRead::new(reader, frames::codec(shared.limits.frame_bytes_max));
    let error = loop {
        match frames.next().await {
            None => break LinkError::new(LinkErrorKind::ClosedByPeer, "link closed"),
            Some(Err(error)) => {
                let is_size = error.kind() == std::io::ErrorKind::InvalidData;
                break if is_size { LinkError::new(LinkErrorKind::Protocol, error) } else { LinkError::from_io(&error) };
            }
            Some(Ok(bytes)) => match frames::decode(&bytes) {
                Ok(LinkFrame::Kernel(frame)) => {
                    shared.count(|stats| {
                        stats.frames_received += 1;
                        stats.bytes_received += frame.len() as u64;
                    });
                    if shared.inbound.send(Inbound::Frame { from: peer, frame }).await.is_err() {
                        return; // the driver stopped
                    }
                }
                Ok(LinkFrame::Hints(hints)) => {
                    for hint in hints {
                        shared.network.learn(hint.node, &hint.addresses);
                    }
                }
                Err(error) => break error,
            },
        }
    };
    shared.failed(peer, &error);
    shared.link_closed(peer, id);
}

#[cfg(test)]
mod tests {
    use super::Jitter;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        let mut jitter = Jitter(7);
        for failures in 0..30 {
            let base = (100u64 << failures.min(20)).min(5_000);
            let wait = jitter.backoff_ms(failures, 100, 5_000);
            assert!(wait >= base / 2 && wait < base / 2 + base, "failures {failures}: {wait}");
        }
    }
}
