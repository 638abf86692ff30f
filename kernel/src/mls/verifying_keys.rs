//! Ed25519 verification with each sender's public key decompressed once, and one field
//! exponentiation fewer per signature than `ed25519_dalek::VerifyingKey::verify_strict`.
//!
//! Every document message a member reads carries a signature by its sender, and openmls hands
//! the verifier the sender's key as 32 compressed bytes. Decompressing them (a field square
//! root) is about a tenth of a verification; a group has few senders, so the keys are kept.
//!
//! The checks are RustCrypto's for Ed25519 (`verify_strict`: canonical `s`, no small-order key
//! or `R`), with the same errors, so openmls sees no difference but the time. `verify_strict`
//! decompresses the signature's `R` (a square root) only to ask whether it has small order,
//! then compresses the recomputed `R` (an inversion) to compare bytes. Here `R`'s small order is
//! asked of its bytes instead, against the canonical encodings of the eight small-order points,
//! which decides the same: a non-canonical `R` can never equal a compressed point, and a
//! canonical one has small order exactly when it is one of those eight. The square root was
//! about a quarter of a verification (22.9 → 17.3 µs by `cargo bench --workspace --bench
//! verify`); the tests below check the answers against `verify_strict`'s on valid, tampered,
//! small-order and non-canonical inputs.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use openmls_traits::types::CryptoError;
use sha2::{Digest, Sha512};

/// Keys kept at most. A node sees the members of its groups; when more distinct keys than this
/// arrive, the cache starts over (correct either way, only slower).
pub const VERIFYING_KEYS_MAX: usize = 1024;

/// A public key as the verification equation uses it.
#[derive(Clone, Copy, Debug)]
struct Key {
    /// The bytes as the signer's credential carries them (hashed as they are).
    compressed: [u8; 32],
    /// The negated point, `-A`.
    minus_a: EdwardsPoint,
    /// Whether the key has small order (every signature by it is refused, as `verify_strict` does).
    is_weak: bool,
}

/// Decompressed keys by their compressed bytes. Only keys that decompressed are kept.
#[derive(Debug, Default)]
pub struct VerifyingKeys {
    keys: Mutex<BTreeMap<[u8; 32], Key>>,
}

impl VerifyingKeys {
    /// Checks `signature` over `data` by the Ed25519 key `public`.
    ///
    /// A key or signature of the wrong length, or a key that is not a curve point, is a
    /// `CryptoLibraryError`; a signature that does not verify is an `InvalidSignature`.
    pub fn verify(&self, data: &[u8], public: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let key = self.key(public)?;
        if signature.len() != 64 {
            return Err(CryptoError::CryptoLibraryError);
        }
        let r: [u8; 32] = signature[..32].try_into().expect("64 bytes");
        let s: [u8; 32] = signature[32..].try_into().expect("64 bytes");
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return Err(CryptoError::InvalidSignature);
        };
        if key.is_weak || small_order_encodings().contains(&r) {
            return Err(CryptoError::InvalidSignature);
        }
        let k = Scalar::from_hash(Sha512::new().chain_update(r).chain_update(key.compressed).chain_update(data));
        // The verification equation: R = [s]B - [k]A.
        let recomputed = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &key.minus_a, &s).compress();
        if recomputed.0 == r { Ok(()) } else { Err(CryptoError::InvalidSignature) }
    }

    fn key(&self, public: &[u8]) -> Result<Key, CryptoError> {
        let bytes: [u8; 32] = public.try_into().map_err(|_| CryptoError::CryptoLibraryError)?;
        // Poisoned only if a verification panicked, which dalek does not do; refuse rather than
        // trust a map a panic interrupted.
        let mut keys = self.keys.lock().map_err(|_| CryptoError::CryptoLibraryError)?;
        if let Some(key) = keys.get(&bytes) {
            return Ok(*key);
        }
        let point = CompressedEdwardsY(bytes).decompress().ok_or(CryptoError::CryptoLibraryError)?;
        let key = Key { compressed: bytes, minus_a: -point, is_weak: point.is_small_order() };
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

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    ENCODINGS.get_or_init(|| EIGHT_TORSION.map(|point| point.compress().0))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use openmls_rust_crypto::RustCrypto;
    use openmls_traits::crypto::OpenMlsCrypto;
    use openmls_traits::types::SignatureScheme;

    use super::*;

    /// RustCrypto's answer (openmls's own provider, on ed25519-dalek 2's `verify_strict`), and
    /// ed25519-dalek 3's `verify_strict` must agree with it.
    fn reference(data: &[u8], public: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let expected = RustCrypto::default().verify_signature(SignatureScheme::ED25519, data, public, signature);
        let dalek = match (<[u8; 32]>::try_from(public), ed25519_dalek::Signature::from_slice(signature)) {
            (Ok(public), Ok(signature)) => match ed25519_dalek::VerifyingKey::from_bytes(&public) {
                Ok(key) => key.verify_strict(data, &signature).map_err(|_| CryptoError::InvalidSignature),
                Err(_) => Err(CryptoError::CryptoLibraryError),
            },
            _ => Err(CryptoError::CryptoLibraryError),
        };
        assert_eq!(dalek, expected, "the two references disagree");
        expected
    }

    /// A key from a known secret scalar, so a test can satisfy the verification equation itself.
    fn key_of(secret: u64) -> (Scalar, [u8; 32]) {
        let a = Scalar::from(secret);
        (a, EdwardsPoint::mul_base(&a).compress().0)
    }

    /// A signature `(r, s)` that satisfies `[s]B = R + [k]A` for the point `R` = identity while
    /// its bytes are `r`: valid for non-strict verification exactly when `r` encodes the identity.
    fn identity_signature(a: Scalar, public: &[u8; 32], r: [u8; 32], data: &[u8]) -> Vec<u8> {
        let k = Scalar::from_hash(Sha512::new().chain_update(r).chain_update(public).chain_update(data));
        [r, (k * a).to_bytes()].concat()
    }

    #[test]
    fn answers_as_verify_strict_does_on_small_order_and_non_canonical_inputs() {
        let keys = VerifyingKeys::default();
        let (a, public) = key_of(0x5eed);
        let (_, valid) = {
            let key = SigningKey::from_bytes(&[3; 32]);
            (key.verifying_key().to_bytes(), key.sign(b"data").to_bytes().to_vec())
        };
        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // The identity as R, the equation holding: a non-strict verifier accepts this.
        let identity = identity_signature(a, &public, small_order_encodings()[0], b"data");
        let mut identity_bytes = [0u8; 32];
        identity_bytes[0] = 1; // y = 1, x = 0
        assert_eq!(identity[..32], identity_bytes);
        cases.push((public.to_vec(), identity));
        // A non-canonical encoding of the identity (y = p + 1) as R, the equation holding.
        let mut y_plus_p = [0xff; 32];
        y_plus_p[0] = 0xee;
        y_plus_p[31] = 0x7f;
        cases.push((public.to_vec(), identity_signature(a, &public, y_plus_p, b"data")));
        // Every small-order point as R, and as the key.
        for encoding in small_order_encodings() {
            cases.push((public.to_vec(), [encoding.to_vec(), valid[32..].to_vec()].concat()));
            cases.push((encoding.to_vec(), valid.clone()));
            cases.push((encoding.to_vec(), identity_signature(Scalar::ZERO, encoding, small_order_encodings()[0], b"data")));
        }
        // A non-canonical s (s + l, which a non-strict parser might reduce).
        let (b, public_b) = key_of(0xb0b);
        let r = EdwardsPoint::mul_base(&Scalar::from(7u64)).compress().0;
        let k = Scalar::from_hash(Sha512::new().chain_update(r).chain_update(public_b).chain_update(b"data"));
        let s = Scalar::from(7u64) + k * b;
        assert_eq!(reference(b"data", &public_b, &[r, s.to_bytes()].concat()), Ok(()), "the constructed signature is valid");
        cases.push((public_b.to_vec(), [r, s.to_bytes()].concat()));
        let mut s_plus_l = s.to_bytes();
        // s + l as s + (l - 1) + 1.
        let l_minus_one = (-Scalar::ONE).to_bytes();
        let mut carry = 1u16;
        for (byte, add) in s_plus_l.iter_mut().zip(l_minus_one) {
            let sum = u16::from(*byte) + u16::from(add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + l fits in 32 bytes");
        cases.push((public_b.to_vec(), [r, s_plus_l].concat()));
        for (public, signature) in cases {
            let expected = reference(b"data", &public, &signature);
            assert_eq!(keys.verify(b"data", &public, &signature), expected, "{public:?} {signature:?}");
        }
    }

    proptest::proptest! {
        /// Any key, message and single flipped bit (or none): the same answer as the references.
        #[test]
        fn answers_as_verify_strict_does_on_signatures_with_a_flipped_bit(
            seed in proptest::array::uniform32(0u8..),
            data in proptest::collection::vec(0u8.., 0..200),
            flip in proptest::option::of(0usize..(96 * 8)),
        ) {
            let key = SigningKey::from_bytes(&seed);
            let mut public = key.verifying_key().to_bytes().to_vec();
            let mut signature = key.sign(&data).to_bytes().to_vec();
            if let Some(bit) = flip {
                let byte = bit / 8;
                let target = if byte < 64 { &mut signature[byte] } else { &mut public[byte - 64] };
                *target ^= 1 << (bit % 8);
            }
            let keys = VerifyingKeys::default();
            proptest::prop_assert_eq!(keys.verify(&data, &public, &signature), reference(&data, &public, &signature));
        }
    }

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
