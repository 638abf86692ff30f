//! The run's trace: a hash of every input and effect (always), and readable text (on request).
//!
//! Two runs of one seed must give the same hash on every machine; the determinism test and
//! `plait-sim replay` compare it.

use plait_kernel::{NodeId, Time};

/// Accumulates the trace of one run.
#[derive(Debug)]
pub struct Trace {
    hasher: blake3::Hasher,
    /// Bytes not hashed yet: BLAKE3 is several times faster on large inputs (SIMD over many
    /// chunks) than on the tens of bytes one event adds.
    pending: Vec<u8>,
    text: Option<Vec<String>>,
}

/// How many trace bytes are buffered before they are hashed.
const TRACE_BUFFER_BYTES_MAX: usize = 64 << 10;

impl Trace {
    /// A trace that keeps only the hash, or also readable lines.
    pub fn new(keep_text: bool) -> Trace {
        Trace {
            hasher: blake3::Hasher::new(),
            pending: Vec::with_capacity(TRACE_BUFFER_BYTES_MAX + 4096),
            text: keep_text.then(Vec::new),
        }
    }

    /// Whether readable lines are kept (callers skip formatting otherwise).
    pub fn wants_text(&self) -> bool {
        self.text.is_some()
    }

    /// Hashes one step: when, where, what kind, and its exact bytes.
    pub fn record(&mut self, at: Time, node: NodeId, kind: u8, bytes: &[u8]) {
        self.pending.extend_from_slice(&at.0.to_le_bytes());
        self.pending.extend_from_slice(&node.0[..8]);
        self.pending.push(kind);
        self.pending.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= TRACE_BUFFER_BYTES_MAX {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
    }

    /// Adds a readable line (only when text is kept).
    pub fn line(&mut self, line: impl FnOnce() -> String) {
        if let Some(text) = &mut self.text {
            text.push(line());
        }
    }

    /// The hash so far, as hex.
    pub fn hash_hex(&self) -> String {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        hasher.finalize().to_hex().to_string()
    }

    /// The readable lines, if kept.
    pub fn text(&self) -> Option<&[String]> {
        self.text.as_deref()
    }
}
