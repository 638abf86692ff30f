//! A [`Network`] over turmoil's simulated TCP, so the real driver and links run on virtual time
//! with partitions, message loss and host crashes.
//!
//! Every host listens on [`PORT`]. A dialer connects to the peer's host name, found in a shared
//! address book, and writes a hello: its own 32-byte `NodeId`. turmoil has no authentication,
//! so the accepting side simply trusts the hello. That is acceptable only here, in a test where
//! every host is ours (or a deliberate rogue); production links are authenticated by iroh's TLS
//! handshake, where a `NodeId` *is* the endpoint's key. A hello that is short, late, names a
//! node outside the book or names the listener itself is dropped and counted.
//!
//! The link layer expects what iroh gives it: one QUIC connection per link, whose two streams
//! end independently, and which fails as a whole when the peer goes silent. turmoil's TCP has no
//! retransmission (under a partition it drops segments silently and the stream stalls forever),
//! so this network rebuilds that much of QUIC on top of it. After the hello, bytes travel in
//! chunks: a `u32` length, then the bytes. A zero length is a keep-alive, sent every quarter of
//! `idle_timeout_ms` while either half of the link lives; [`FINISHED`] ends the stream (sent when
//! the writing half is dropped, like QUIC's FIN). A connection that delivers no chunk for
//! `idle_timeout_ms`, or whose socket fails, fails both halves; dropping both halves closes it.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use plait_io_iroh::frames::{self, LinkFrame};
use plait_io_iroh::{LinkError, LinkErrorKind, Network};
use plait_kernel::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Semaphore, mpsc};
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::{TcpListener, TcpStream};

/// The port every host listens on.
pub const PORT: u16 = 4040;
/// Bytes of a hello: the dialer's `NodeId`.
pub const HELLO_BYTES: usize = 32;
/// Largest chunk; a longer one announced by a peer fails the link.
pub const CHUNK_BYTES_MAX: usize = 64 << 10;
/// The length that marks the end of a stream.
pub const FINISHED: u32 = u32::MAX;
/// Chunks received and not yet read, per link.
pub const CHUNKS_QUEUED_MAX: usize = 64;

/// A chunk of `bytes` (empty: a keep-alive), as a peer writes it after its hello.
pub fn chunk(bytes: &[u8]) -> Vec<u8> {
    assert!(bytes.len() <= CHUNK_BYTES_MAX, "a chunk fits the limit");
    let mut chunk = Vec::with_capacity(4 + bytes.len());
    chunk.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    chunk.extend_from_slice(bytes);
    chunk
}

/// Watches every kernel frame a node writes to a link, at the moment it is written:
/// `(sender, receiver, kernel frame)`.
pub type Tap = Arc<dyn Fn(NodeId, NodeId, &[u8]) + Send + Sync>;

/// The limits of the simulated transport.
#[derive(Clone, Debug)]
pub struct TurmoilOptions {
    /// A dialer that has not sent its whole hello by then is dropped.
    pub hello_timeout_ms: u64,
    /// A connection that delivers no chunk for this long has failed (QUIC's idle timeout).
    pub idle_timeout_ms: u64,
    /// Handshakes in progress at once; further connections are dropped and counted.
    pub handshakes_max: usize,
}

impl Default for TurmoilOptions {
    fn default() -> TurmoilOptions {
        TurmoilOptions { hello_timeout_ms: 500, idle_timeout_ms: 1_000, handshakes_max: 64 }
    }
}

/// Counters of the accepting side.
#[derive(Debug, Default)]
pub struct TurmoilCounters {
    /// Connections dropped for a missing, short, late or unknown hello (or too many handshakes).
    pub bad_hellos: AtomicU64,
    /// Links handed to the link layer.
    pub links_accepted: AtomicU64,
}

type Accepted = (NodeId, TurmoilReader, TurmoilWriter);

struct Inner {
    me: NodeId,
    book: Arc<BTreeMap<NodeId, String>>,
    options: TurmoilOptions,
    counters: TurmoilCounters,
    tap: Option<Tap>,
}

/// One node's view of the simulated network.
#[derive(Clone)]
pub struct TurmoilNetwork {
    inner: Arc<Inner>,
    accepted: Arc<tokio::sync::Mutex<mpsc::Receiver<Accepted>>>,
}

impl TurmoilNetwork {
    /// Listens on [`PORT`] of the current host and starts accepting links. Must run inside
    /// the host's software.
    pub async fn bind(
        me: NodeId,
        book: Arc<BTreeMap<NodeId, String>>,
        options: TurmoilOptions,
        tap: Option<Tap>,
    ) -> io::Result<TurmoilNetwork> {
        assert!(book.contains_key(&me), "a node is in its own address book");
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
        let (sender, receiver) = mpsc::channel(options.handshakes_max);
        let inner = Arc::new(Inner { me, book, options, counters: TurmoilCounters::default(), tap });
        tokio::spawn(accept_loop(listener, sender, inner.clone()));
        Ok(TurmoilNetwork { inner, accepted: Arc::new(tokio::sync::Mutex::new(receiver)) })
    }

    /// The accepting side's counters.
    pub fn counters(&self) -> &TurmoilCounters {
        &self.inner.counters
    }
}

impl Network for TurmoilNetwork {
    type Reader = TurmoilReader;
    type Writer = TurmoilWriter;

    fn dial(&self, peer: NodeId) -> impl Future<Output = Result<(TurmoilReader, TurmoilWriter), LinkError>> + Send {
        let inner = self.inner.clone();
        async move {
            let Some(host) = inner.book.get(&peer).cloned() else {
                return Err(LinkError::new(LinkErrorKind::NoAddress, format!("{peer} is not in the address book")));
            };
            let stream = TcpStream::connect((host, PORT)).await.map_err(|error| LinkError::from_io(&error))?;
            let (reader, mut writer) = stream.into_split();
            writer.write_all(&inner.me.0).await.map_err(|error| LinkError::from_io(&error))?;
            Ok(link(&inner, peer, reader, writer))
        }
    }

    fn accept(&self) -> impl Future<Output = Option<(NodeId, TurmoilReader, TurmoilWriter)>> + Send {
        let accepted = self.accepted.clone();
        async move { accepted.lock().await.recv().await }
    }
}

async fn accept_loop(listener: TcpListener, sender: mpsc::Sender<Accepted>, inner: Arc<Inner>) {
    let handshakes = Arc::new(Semaphore::new(inner.options.handshakes_max));
    while let Ok((stream, _)) = listener.accept().await {
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            inner.counters.bad_hellos.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (sender, inner) = (sender.clone(), inner.clone());
        tokio::spawn(async move {
            let (mut reader, writer) = stream.into_split();
            let mut hello = [0u8; HELLO_BYTES];
            let timeout = Duration::from_millis(inner.options.hello_timeout_ms);
            let read = tokio::time::timeout(timeout, reader.read_exact(&mut hello)).await;
            drop(permit);
            let peer = NodeId(hello);
            let trusted = matches!(read, Ok(Ok(_))) && peer != inner.me && inner.book.contains_key(&peer);
            if !trusted {
                inner.counters.bad_hellos.fetch_add(1, Ordering::Relaxed);
                return;
            }
            inner.counters.links_accepted.fetch_add(1, Ordering::Relaxed);
            let (reader, writer) = link(&inner, peer, reader, writer);
            let _ = sender.send((peer, reader, writer)).await;
        });
    }
}

/// Starts the connection's tasks (its receiving pump and its keep-alives) and hands out its
/// two halves.
fn link(inner: &Arc<Inner>, peer: NodeId, reader: OwnedReadHalf, writer: OwnedWriteHalf) -> (TurmoilReader, TurmoilWriter) {
    let idle_timeout = Duration::from_millis(inner.options.idle_timeout_ms);
    let connection = Arc::new(Connection {
        failure: Mutex::new(None),
        socket: Mutex::new(writer),
        writer_waker: Mutex::new(None),
        pump: Mutex::new(None),
    });
    let (chunks, received) = mpsc::channel(CHUNKS_QUEUED_MAX);
    let pump = tokio::spawn(pump(reader, chunks, Arc::downgrade(&connection), idle_timeout));
    *connection.pump.lock().expect("pump lock") = Some(pump);
    tokio::spawn(keep_alive(Arc::downgrade(&connection), idle_timeout / 4));
    let tap = inner.tap.clone().map(|tap| FrameTap { tap, from: inner.me, to: peer, pending: Vec::new() });
    let reader = TurmoilReader { received, pending: Bytes::new(), _connection: connection.clone() };
    (reader, TurmoilWriter { connection, tap })
}

/// What both halves of a link share. Dropped with the last half: the socket closes and the
/// pump stops.
struct Connection {
    /// Why the connection failed, once it did.
    failure: Mutex<Option<(io::ErrorKind, String)>>,
    socket: Mutex<OwnedWriteHalf>,
    /// The writing half's waker (the socket keeps one), lent to keep-alives.
    writer_waker: Mutex<Option<Waker>>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Connection {
    fn failure(&self) -> Option<io::Error> {
        self.failure.lock().expect("failure lock").as_ref().map(|(kind, detail)| io::Error::new(*kind, detail.clone()))
    }

    fn fail(&self, kind: io::ErrorKind, detail: impl std::fmt::Display) {
        self.failure.lock().expect("failure lock").get_or_insert_with(|| (kind, detail.to_string()));
        if let Some(waker) = self.writer_waker.lock().expect("waker lock").take() {
            waker.wake();
        }
    }

    /// Writes one chunk whole, or nothing (turmoil sends each write as one segment).
    fn poll_chunk(&self, waker: &Waker, chunk: &[u8]) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut *self.socket.lock().expect("socket lock")).poll_write(&mut Context::from_waker(waker), chunk);
        match result {
            Poll::Ready(Ok(written)) => {
                assert_eq!(written, chunk.len(), "turmoil writes a buffer whole or not at all");
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => {
                self.fail(error.kind(), &error);
                Poll::Ready(Err(error))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn lent_waker(&self) -> Waker {
        self.writer_waker.lock().expect("waker lock").clone().unwrap_or_else(|| Waker::noop().clone())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.lock().expect("pump lock").take() {
            pump.abort();
        }
    }
}

/// Reads chunks off the socket for as long as the connection lives: data goes to the reading
/// half (dropped once that half is gone or the stream finished), keep-alives only prove the
/// peer alive. Silence, a failed socket or an oversized chunk fails the connection.
async fn pump(mut socket: OwnedReadHalf, chunks: mpsc::Sender<io::Result<Bytes>>, connection: Weak<Connection>, idle: Duration) {
    let mut chunks = Some(chunks);
    let (kind, detail) = loop {
        let mut header = [0u8; 4];
        match tokio::time::timeout(idle, socket.read_exact(&mut header)).await {
            Err(_) => break (io::ErrorKind::TimedOut, "the link was idle too long".to_owned()),
            Ok(Err(error)) => break (error.kind(), error.to_string()),
            Ok(Ok(_)) => {}
        }
        let length = u32::from_be_bytes(header);
        if length == FINISHED {
            chunks = None; // the reading half sees the end of its stream
            continue;
        }
        if length as usize > CHUNK_BYTES_MAX {
            break (io::ErrorKind::InvalidData, format!("a chunk of {length} bytes"));
        }
        let mut body = vec![0u8; length as usize];
        match tokio::time::timeout(idle, socket.read_exact(&mut body)).await {
            Err(_) => break (io::ErrorKind::TimedOut, "the link was idle too long".to_owned()),
            Ok(Err(error)) => break (error.kind(), error.to_string()),
            Ok(Ok(_)) => {}
        }
        if let Some(sender) = chunks.as_ref().filter(|_| !body.is_empty())
            && sender.send(Ok(Bytes::from(body))).await.is_err()
        {
            chunks = None; // the reading half is gone
        }
    };
    if let Some(connection) = connection.upgrade() {
        connection.fail(kind, &detail);
    }
    if let Some(sender) = chunks {
        let _ = sender.send(Err(io::Error::new(kind, detail))).await;
    }
}

/// Sends a keep-alive every `every` while the connection lives. One that finds no room is
/// skipped: the link is busy, or stalled (then the peer's idle timeout fails it).
async fn keep_alive(connection: Weak<Connection>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(connection) = connection.upgrade() else { return };
        if connection.failure().is_some() {
            return;
        }
        // The socket keeps one waker: lend it the writing half's, so a skipped keep-alive never
        // leaves that half without its wake-up.
        let _ = connection.poll_chunk(&connection.lent_waker(), &chunk(&[]));
    }
}

/// The receiving half of a link.
pub struct TurmoilReader {
    received: mpsc::Receiver<io::Result<Bytes>>,
    pending: Bytes,
    _connection: Arc<Connection>,
}

impl AsyncRead for TurmoilReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            match this.received.poll_recv(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.pending = bytes,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Ready(None) => return Poll::Ready(Ok(())), // the stream finished
                Poll::Pending => return Poll::Pending,
            }
        }
        let length = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(length));
        Poll::Ready(Ok(()))
    }
}

/// The sending half of a link.
pub struct TurmoilWriter {
    connection: Arc<Connection>,
    tap: Option<FrameTap>,
}

impl AsyncWrite for TurmoilWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.connection.failure() {
            return Poll::Ready(Err(error));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        *this.connection.writer_waker.lock().expect("waker lock") = Some(cx.waker().clone());
        let length = buf.len().min(CHUNK_BYTES_MAX);
        match this.connection.poll_chunk(cx.waker(), &chunk(&buf[..length])) {
            Poll::Ready(Ok(())) => {
                if let Some(tap) = &mut this.tap {
                    tap.wrote(&buf[..length]);
                }
                Poll::Ready(Ok(length))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for TurmoilWriter {
    /// Finishes the stream, best effort (no room: the peer learns when the connection closes).
    /// Nothing is sent while the simulation itself is being torn down.
    fn drop(&mut self) {
        if turmoil::in_simulation() && self.connection.failure().is_none() {
            let _ = self.connection.poll_chunk(&Waker::noop().clone(), &FINISHED.to_be_bytes());
        }
    }
}

/// Cuts the written byte stream back into link frames and shows each kernel frame to a [`Tap`].
struct FrameTap {
    tap: Tap,
    from: NodeId,
    to: NodeId,
    pending: Vec<u8>,
}

impl FrameTap {
    fn wrote(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            let Some(header) = self.pending.first_chunk::<4>() else { return };
            let length = u32::from_be_bytes(*header) as usize;
            if self.pending.len() < 4 + length {
                return;
            }
            let frame: Vec<u8> = self.pending.drain(..4 + length).skip(4).collect();
            if let Ok(LinkFrame::Kernel(kernel)) = frames::decode(&frame) {
                (self.tap)(self.from, self.to, &kernel);
            }
        }
    }
}
