//! The anchor for the work an edit cannot skip: what any end-to-end encrypted CRDT sync must do
//! between an edit and its display elsewhere, done raw, without Plait. The author exports the
//! edit from its document, seals it and signs it; the reader verifies, opens and imports it.
//!
//! Why: the floor of "2 fsyncs + 1 round trip" counts the disk and the network only. Printed
//! beside it, this says how much of the latency above the floor is cryptography and CRDT that
//! the design requires, and how much is Plait's own. It is not part of the floor the target
//! names. Timed in a tight loop, so with warm caches: the best case, as the back-to-back fsync
//! is (`io-iroh/BENCHMARK.md`, *Twenty-second session*, has what the same Loro calls cost inside the
//! latency phase).

use std::time::Instant;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use loro::{ExportMode, IdSpan, LoroDoc};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::types::AeadType;

/// Edits in both replicas before the timed ones: as many as the latency phase types, so the
/// documents are the size the phase's are.
const PRIOR_EDITS: usize = 1_000;
/// Bytes sealed and signed: about an edit's message in the latency phase.
const MESSAGE_BYTES: usize = 300;

/// Medians of each step (µs).
pub struct EditWork {
    pub export: f64,
    pub seal: f64,
    pub sign: f64,
    pub verify: f64,
    pub open: f64,
    pub import: f64,
}

impl EditWork {
    /// Every step, as one edit does them once each.
    pub fn total(&self) -> f64 {
        self.export + self.seal + self.sign + self.verify + self.open + self.import
    }
}

/// Times `edits` edits, each step on its own: Loro's export of one insert from the author's
/// document (with the insert itself), AES-128-GCM (the MLS ciphersuite's AEAD) seal and open,
/// Ed25519 sign and verify, and Loro's import at the reader.
pub fn edit_work_micros(edits: usize) -> EditWork {
    let (author, reader) = (LoroDoc::new(), LoroDoc::new());
    author.set_peer_id(1).expect("peer id");
    reader.set_peer_id(2).expect("peer id");
    for index in 0..PRIOR_EDITS {
        author.get_text("text").insert(0, &format!("p{index} ")).expect("insert");
    }
    author.commit();
    reader.import(&author.export(ExportMode::Snapshot).expect("snapshot")).expect("import");
    let crypto = RustCrypto::default();
    let (key, nonce) = ([5u8; 16], [6u8; 12]);
    let signing = SigningKey::from_bytes(&[9u8; 32]);
    let verifying = signing.verifying_key();
    let mut steps: [Vec<f64>; 6] = Default::default();
    let mut time = |step: usize, started: Instant| steps[step].push(started.elapsed().as_secs_f64() * 1e6);
    for index in 0..edits {
        let started = Instant::now();
        let before = author.oplog_vv().get(&1).copied().unwrap_or(0);
        author.get_text("text").insert(0, &format!("e{index} ")).expect("insert");
        author.commit();
        let after = author.oplog_vv().get(&1).copied().unwrap_or(0);
        let span = [IdSpan::new(1, before, after)];
        let update = author.export(ExportMode::updates_in_range(&span[..])).expect("export");
        time(0, started);
        let mut message = update.clone();
        message.resize(MESSAGE_BYTES.max(update.len()), 0);
        let started = Instant::now();
        let sealed = crypto.aead_encrypt(AeadType::Aes128Gcm, &key, &message, &nonce, &[]).expect("seal");
        time(1, started);
        let started = Instant::now();
        let signature = signing.sign(&sealed);
        time(2, started);
        let started = Instant::now();
        verifying.verify(&sealed, &signature).expect("verify");
        time(3, started);
        let started = Instant::now();
        let opened = crypto.aead_decrypt(AeadType::Aes128Gcm, &key, &sealed, &nonce, &[]).expect("open");
        time(4, started);
        let started = Instant::now();
        reader.import(&opened[..update.len()]).expect("import");
        time(5, started);
    }
    let [export, seal, sign, verify, open, import] = steps.map(|mut samples| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    });
    assert_eq!(author.get_text("text").to_string(), reader.get_text("text").to_string(), "the replicas converge");
    EditWork { export, seal, sign, verify, open, import }
}
