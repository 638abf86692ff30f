//! The anchor for latency: an edit's path done raw, without Plait, in the same run.
//!
//! Why: the floor of "2 fsyncs + 1 round trip" adds up anchors measured back to back, and says
//! nothing of its own tail. This anchor does what the floor counts, one edit at a time as the
//! latency phase does (each once the last has settled), and nothing else: the author writes 4 KiB
//! and fsyncs, sends 300 bytes over iroh to 3 acceptors, each writes and fsyncs (on the same
//! disk, at once) and sends on to the reader, whose first copy ends the edit. The reader writes and fsyncs that copy on a thread of
//! its own, off the path, as Plait's reader does (its app hears of an update before its write
//! is durable). Its p50 and p99 are what the latency phase's would be if Plait's own work cost
//! nothing.
//!
//! Its fsyncs follow each other within a hop. On a virtual disk that matters: an fsync issued
//! within a few tens of microseconds of the last one is far cheaper than one issued after the
//! disk has idled longer (on this machine, 2026-12-06: 38 µs against 0.4–1.1 ms; `io-iroh/BENCHMARK.md`,
//! *Session of 2026-12-06*), and Plait's work between an edit's fsyncs is longer than that.

use std::io::{Seek, SeekFrom, Write};
use std::time::Instant;

use iroh::Endpoint;
use iroh::endpoint::{Connection, RecvStream};
use tokio::sync::{mpsc, oneshot};

use crate::{loopback_address, loopback_endpoint};

/// Bytes one hop carries: about an edit's frame in the latency phase.
const FRAME_BYTES: usize = 300;
/// Bytes one node writes before its fsync: one page, as SQLite writes at least.
const WRITE_BYTES: usize = 4_096;
/// Pages each node's file cycles through, overwriting as SQLite does in its prefilled log.
const FILE_PAGES: u64 = 64;
const ALPN: &[u8] = b"plait-raw-path";

/// Runs `edits` edits along the raw path, one at a time; each one's latency (µs), from the
/// author's write to the reader's first copy.
pub async fn raw_path_micros(edits: usize) -> Vec<u64> {
    let folder = tempfile::tempdir().expect("temporary folder");
    let reader = loopback_endpoint(ALPN).await;
    let reader_address = loopback_address(&reader);
    let (arrived, mut arrivals) = mpsc::channel::<u64>(1024);
    let reader_task = tokio::spawn(accept_copies(reader, arrived));

    let mut to_acceptors = Vec::new();
    let mut acceptor_tasks = Vec::new();
    let author = loopback_endpoint(ALPN).await;
    for index in 0..3 {
        let acceptor = loopback_endpoint(ALPN).await;
        let acceptor_address = loopback_address(&acceptor);
        let file = DiskPage::new(folder.path().join(format!("acceptor{index}")));
        let to_reader = acceptor.connect(reader_address.clone(), ALPN).await.expect("connect to the reader");
        acceptor_tasks.push(tokio::spawn(relay(acceptor, to_reader, file)));
        let connection = author.connect(acceptor_address, ALPN).await.expect("connect to an acceptor");
        to_acceptors.push(connection.open_uni().await.expect("stream"));
    }

    let mut author_file = DiskPage::new(folder.path().join("author"));
    let mut reader_file = DiskPage::new(folder.path().join("reader"));
    let (to_write, mut writes) = mpsc::channel::<oneshot::Sender<()>>(1);
    let reader_writer = tokio::task::spawn_blocking(move || {
        while let Some(written) = writes.blocking_recv() {
            reader_file.write_and_sync();
            let _ = written.send(());
        }
    });
    let mut samples = Vec::with_capacity(edits);
    for index in 0..edits as u64 {
        let started = Instant::now();
        tokio::task::block_in_place(|| author_file.write_and_sync());
        let frame = frame(index);
        for stream in &mut to_acceptors {
            stream.write_all(&frame).await.expect("send to an acceptor");
        }
        // The reader takes the first copy; the other two arrive later.
        let mut copies = 0;
        while copies == 0 {
            copies += usize::from(arrivals.recv().await.expect("the reader's copies") == index);
        }
        samples.push(started.elapsed().as_micros() as u64);
        // The next edit starts once this one settled, as the latency phase's do: every
        // acceptor wrote it and passed it on, and the reader's write is durable.
        let (written, durable) = oneshot::channel();
        to_write.send(written).await.expect("the reader's writer");
        while copies < 3 {
            copies += usize::from(arrivals.recv().await.expect("the reader's copies") == index);
        }
        durable.await.expect("the reader's writer");
    }
    drop(to_write);
    reader_writer.await.expect("the reader's writer");
    drop(to_acceptors);
    reader_task.abort();
    for task in acceptor_tasks {
        task.abort();
    }
    samples
}

/// One acceptor: every frame from the author is written and fsynced, then sent to the reader.
async fn relay(acceptor: Endpoint, to_reader: Connection, mut file: DiskPage) {
    let connection = acceptor.accept().await.expect("incoming").await.expect("connection");
    let mut from_author = connection.accept_uni().await.expect("stream");
    let mut to_reader = to_reader.open_uni().await.expect("stream");
    let mut frame = [0u8; FRAME_BYTES];
    while from_author.read_exact(&mut frame).await.is_ok() {
        tokio::task::block_in_place(|| file.write_and_sync());
        if to_reader.write_all(&frame).await.is_err() {
            break;
        }
    }
}

/// The reader: accepts the 3 acceptors' connections and passes each frame's edit number on.
async fn accept_copies(reader: Endpoint, arrived: mpsc::Sender<u64>) {
    let mut copies = Vec::new();
    for _ in 0..3 {
        let connection = reader.accept().await.expect("incoming").await.expect("connection");
        let arrived = arrived.clone();
        copies.push(tokio::spawn(async move {
            let stream = connection.accept_uni().await.expect("stream");
            forward(stream, arrived).await;
            drop(connection);
        }));
    }
    for copy in copies {
        let _ = copy.await;
    }
    drop(reader);
}

async fn forward(mut stream: RecvStream, arrived: mpsc::Sender<u64>) {
    let mut frame = [0u8; FRAME_BYTES];
    while stream.read_exact(&mut frame).await.is_ok() {
        let index = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        if arrived.send(index).await.is_err() {
            break;
        }
    }
}

fn frame(index: u64) -> [u8; FRAME_BYTES] {
    let mut frame = [7u8; FRAME_BYTES];
    frame[..8].copy_from_slice(&index.to_le_bytes());
    frame
}

/// A file written out in advance, whose pages are overwritten in turn and fsynced: as SQLite
/// overwrites its log, which Plait writes out in advance (`store-sqlite`'s `prefill_log`). An
/// fsync that grows a file must make its size durable too, which here costs ~1.6× as much.
pub struct DiskPage {
    file: std::fs::File,
    next: u64,
}

impl DiskPage {
    /// The file at `path`, written out.
    pub fn new(path: std::path::PathBuf) -> DiskPage {
        let mut file = std::fs::File::create(path).expect("file");
        file.write_all(&vec![0u8; WRITE_BYTES * FILE_PAGES as usize]).expect("write");
        file.sync_all().expect("fsync");
        DiskPage { file, next: 0 }
    }

    /// Overwrites the next page and fsyncs.
    pub fn write_and_sync(&mut self) {
        let offset = (self.next % FILE_PAGES) * WRITE_BYTES as u64;
        self.file.seek(SeekFrom::Start(offset)).expect("seek");
        self.file.write_all(&[9u8; WRITE_BYTES]).expect("write");
        self.file.sync_data().expect("fsync");
        self.next += 1;
    }
}
