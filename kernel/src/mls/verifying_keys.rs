//! Ed25519 verification with each sender's public key decompressed once.
//!
//! Every document message a member reads carries a signature by its sender, and openmls hands
//! the verifier the sender's key as 32 compressed bytes. Decompressing them (a field square
//! root) is about a tenth of a verification; a group has few senders, so the keys are kept.
//!
//! The checks are RustCrypto's for Ed25519 (`verify_strict`: canonical `s`, no small-order key
//! or `R`), with the same errors, so openmls sees no difference but the time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ed25519_dalek::{Signature, VerifyingKey};
use openmls_traits::types::CryptoError;

/// Keys kept at most. A node sees the members of its groups; when more distinct keys than this
/// arrive, the cache starts over (correct either way, only slower).
pub const VERIFYING_KEYS_MAX: usize = 1024;

/// Decompressed keys by their compressed bytes. Only keys that decompressed are kept.
#[derive(Debug, Default)]
pub struct VerifyingKeys {
    keys: Mutex<BTreeMap<[u8; 32], VerifyingKey>>,
}

impl VerifyingKeys {
    /// Checks `signature` over `data` by the Ed25519 key `public`.
    ///
    /// A key or signature of the wrong length, or a key that is not a curve point, is a
    /// `CryptoLibraryError`; a signature that does not verify is an `InvalidSignature`.
    pub fn verify(&self, data: &[u8], public: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let key = self.key(public)?;
        let signature = Signature::from_slice(signature).map_err(|_| CryptoError::CryptoLibraryError)?;
        key.verify_strict(data, &signature).map_err(|_| CryptoError::InvalidSignature)
    }

    fn key(&self, public: &[u8]) -> Result<VerifyingKey, CryptoError> {
        let bytes: [u8; 32] = public.try_into().map_err(|_| CryptoError::CryptoLibraryError)?;
        // Poisoned only if a verification panicked, which dalek does not do; refuse rather than
        // trust a map a panic interrupted.
        let mut keys = self.keys.lock().map_err(|_| CryptoError::CryptoLibraryError)?;
        if let Some(key) = keys.get(&bytes) {
            return Ok(*key);
        }
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CryptoError::CryptoLibraryError)?;
        if keys.len() >= VERIFYING_KEYS_MAX {
            cov_mark::hit!(verifying_keys_start_over_when_full);
            keys.clear();
        }
        keys.insert(bytes, key);
        Ok(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().expect("no test panics holding it").len()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use openmls_rust_crypto::RustCrypto;
    use openmls_traits::crypto::OpenMlsCrypto;
    use openmls_traits::types::SignatureScheme;

    use super::*;

    fn signed(seed: u8, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        (key.verifying_key().to_bytes().to_vec(), key.sign(data).to_bytes().to_vec())
    }

    #[test]
    fn answers_as_rust_crypto_does_and_decompresses_each_key_once() {
        let (public, signature) = signed(1, b"hello");
        let mut tampered = signature.clone();
        tampered[5] ^= 1;
        let (other, _) = signed(2, b"hello");
        // A point that does not decompress: y = 2 is not on the curve.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let cases: [(&[u8], &[u8], &[u8]); 7] = [
            (b"hello", &public, &signature),
            (b"hellp", &public, &signature),
            (b"hello", &public, &tampered),
            (b"hello", &other, &signature),
            (b"hello", &public, &signature[..63]),
            (b"hello", &public[..31], &signature),
            (b"hello", &not_a_point, &signature),
        ];
        let keys = VerifyingKeys::default();
        let reference = RustCrypto::default();
        for (data, public, signature) in cases {
            let expected = reference.verify_signature(SignatureScheme::ED25519, data, public, signature);
            assert_eq!(keys.verify(data, public, signature), expected, "{data:?} {public:?} {signature:?}");
        }
        assert_eq!(keys.verify(b"hello", &public, &signature), Ok(()));
        assert_eq!(keys.len(), 2, "one entry per key that decompressed");
    }

    #[test]
    fn a_full_cache_starts_over() {
        cov_mark::check!(verifying_keys_start_over_when_full);
        let keys = VerifyingKeys::default();
        for index in 0..=VERIFYING_KEYS_MAX as u64 {
            let mut seed = [9u8; 32];
            seed[..8].copy_from_slice(&index.to_le_bytes());
            let (public, signature) = {
                let key = SigningKey::from_bytes(&seed);
                (key.verifying_key().to_bytes(), key.sign(b"x").to_bytes())
            };
            assert_eq!(keys.verify(b"x", &public, &signature), Ok(()));
        }
        assert_eq!(keys.len(), 1, "the key after the limit is the only one kept");
    }
}
