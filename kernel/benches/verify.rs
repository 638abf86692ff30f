//! Ed25519 verification as Plait's members do it (`mls/verifying_keys.rs`), against its anchor
//! measured in the same run: ed25519-dalek's `verify_strict` with the key already decompressed.
//! Both verify the same 300-byte message (about a document message's signed content).
//!
//! `cargo bench --workspace --bench verify`

use std::time::Instant;

use ed25519_dalek::{Signer as _, SigningKey};
use plait_kernel::mls::verifying_keys::VerifyingKeys;

const ROUNDS: usize = 7;
const PER_ROUND: u32 = 5_000;

fn main() {
    let key = SigningKey::from_bytes(&[4; 32]);
    let (public, data) = (key.verifying_key().to_bytes(), vec![5u8; 300]);
    let signature = key.sign(&data);
    let (bytes, dalek) = (signature.to_bytes(), key.verifying_key());
    let keys = VerifyingKeys::default();
    let mut ours = Vec::new();
    let mut anchor = Vec::new();
    for _ in 0..ROUNDS {
        ours.push(micros_each(|| keys.verify(&data, &public, &bytes).expect("valid")));
        anchor.push(micros_each(|| dalek.verify_strict(&data, &signature).expect("valid")));
    }
    let (ours, anchor) = (median(ours), median(anchor));
    println!("anchor: ed25519-dalek verify_strict, key decompressed, median {anchor:.1} µs");
    println!("VerifyingKeys::verify median {ours:.1} µs ({:.2}× the anchor)", ours / anchor);
}

fn micros_each(mut verify: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..PER_ROUND {
        verify();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
