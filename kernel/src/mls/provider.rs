//! An openmls provider whose every random byte comes from the node's seed.
//!
//! openmls draws randomness in three places a plain seeded `rand()` does not reach (see
//! `DEPENDENCY-NOTES.md`): HPKE encryption builds its own OS-seeded PRNG, UpdatePath encryption
//! runs on rayon threads in a racy order, and signature keys come from the crypto provider's OS
//! RNG. This provider closes each:
//!
//! - `rand()` is a ChaCha20 stream seeded from the node's RNG.
//! - HPKE `seal` and `setup_sender` get an ephemeral-key PRNG seeded by a keyed hash of their own
//!   inputs (provider secret, recipient key, info, aad, plaintext), so the bytes do not depend on
//!   which rayon thread runs first. The seed reaches hpke-rs's argument-less `prng()` through a
//!   thread-local that is set and consumed within one call on one thread.
//! - Signature keys are built from seeded bytes (`identity.rs`), never by `signature_key_gen`.
//!
//! Ed25519 verification keeps each sender's decompressed key (`verifying_keys.rs`). Everything
//! else delegates to `openmls_rust_crypto::RustCrypto`. Storage is `MlsStorage` (`storage.rs`).

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Mutex;

use hpke_rs::{Hpke, HpkePublicKey};
use hpke_rs_crypto::types::{AeadAlgorithm, KdfAlgorithm, KemAlgorithm};
use hpke_rs_crypto::{HpkeCrypto, HpkeTestRng};
use hpke_rs_rust_crypto::HpkeRustCrypto;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::types::{
    AeadType, Ciphersuite, CryptoError, ExporterSecret, HashType, HpkeAeadType, HpkeCiphertext, HpkeConfig, HpkeKdfType,
    HpkeKemType, HpkeKeyPair, KemOutput, SignatureScheme,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng, TryCryptoRng, TryRng};
use tls_codec::SecretVLBytes;

use crate::mls::storage::MlsStorage;
use crate::mls::verifying_keys::VerifyingKeys;

/// The provider a node's MLS groups run on.
#[derive(Debug)]
pub struct DeterministicProvider {
    crypto: DeterministicCrypto,
    rand: SeededRand,
    storage: MlsStorage,
}

impl DeterministicProvider {
    /// A provider whose randomness is decided by `seed` and whose storage starts as `storage`.
    pub fn new(seed: [u8; 32], storage: MemoryStorage) -> DeterministicProvider {
        let mut stream = ChaCha20Rng::from_seed(seed);
        let mut secret = [0u8; 32];
        stream.fill_bytes(&mut secret);
        DeterministicProvider {
            crypto: DeterministicCrypto { inner: RustCrypto::default(), secret, verifying_keys: VerifyingKeys::default() },
            rand: SeededRand { stream: Mutex::new(stream) },
            storage: MlsStorage::new(storage),
        }
    }

    /// The in-memory store openmls writes through (journaled into `Persist` batches).
    pub fn memory(&self) -> &MemoryStorage {
        self.storage.memory()
    }
}

impl OpenMlsProvider for DeterministicProvider {
    type CryptoProvider = DeterministicCrypto;
    type RandProvider = SeededRand;
    type StorageProvider = MlsStorage;

    fn storage(&self) -> &MlsStorage {
        &self.storage
    }
    fn crypto(&self) -> &DeterministicCrypto {
        &self.crypto
    }
    fn rand(&self) -> &SeededRand {
        &self.rand
    }
}

/// `OpenMlsRand` over a seeded ChaCha20 stream.
#[derive(Debug)]
pub struct SeededRand {
    stream: Mutex<ChaCha20Rng>,
}

/// Why randomness could not be drawn (only a poisoned lock, which means an earlier panic).
#[derive(Debug, thiserror::Error)]
#[error("the seeded random stream's lock was poisoned by an earlier panic")]
pub struct RandPoisoned;

impl OpenMlsRand for SeededRand {
    type Error = RandPoisoned;

    fn random_array<const N: usize>(&self) -> Result<[u8; N], RandPoisoned> {
        let mut out = [0u8; N];
        self.stream.lock().map_err(|_| RandPoisoned)?.fill_bytes(&mut out);
        Ok(out)
    }

    fn random_vec(&self, len: usize) -> Result<Vec<u8>, RandPoisoned> {
        let mut out = vec![0u8; len];
        self.stream.lock().map_err(|_| RandPoisoned)?.fill_bytes(&mut out);
        Ok(out)
    }
}

/// RustCrypto with deterministic HPKE encryption.
#[derive(Debug)]
pub struct DeterministicCrypto {
    inner: RustCrypto,
    /// Keys the per-call HPKE seeds, so they are unpredictable to anyone without the node seed.
    secret: [u8; 32],
    /// Ed25519 keys of the senders seen, decompressed.
    verifying_keys: VerifyingKeys,
}

impl DeterministicCrypto {
    /// The seed for one HPKE encryption: a keyed hash of everything the call encrypts to.
    fn hpke_seed(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        *hasher.finalize().as_bytes()
    }
}

thread_local! {
    /// The seed the next `SeededHpkeCrypto::prng()` on this thread uses. Set and taken within one
    /// `hpke_seal` / `hpke_setup_sender_and_export` call.
    static NEXT_HPKE_SEED: RefCell<Option<[u8; 32]>> = const { RefCell::new(None) };
}

/// Runs `body` with `seed` as the HPKE PRNG seed of this thread.
fn with_hpke_seed<T>(seed: [u8; 32], body: impl FnOnce() -> T) -> T {
    NEXT_HPKE_SEED.with(|next| *next.borrow_mut() = Some(seed));
    let result = body();
    NEXT_HPKE_SEED.with(|next| *next.borrow_mut() = None);
    result
}

fn hpke(config: HpkeConfig) -> Result<Hpke<SeededHpkeCrypto>, CryptoError> {
    let kem = match config.0 {
        HpkeKemType::DhKem25519 => KemAlgorithm::DhKem25519,
        HpkeKemType::DhKemP256 => KemAlgorithm::DhKemP256,
        _ => return Err(CryptoError::UnsupportedCiphersuite),
    };
    let kdf = match config.1 {
        HpkeKdfType::HkdfSha256 => KdfAlgorithm::HkdfSha256,
        HpkeKdfType::HkdfSha384 => KdfAlgorithm::HkdfSha384,
        HpkeKdfType::HkdfSha512 => KdfAlgorithm::HkdfSha512,
    };
    let aead = match config.2 {
        HpkeAeadType::AesGcm128 => AeadAlgorithm::Aes128Gcm,
        HpkeAeadType::AesGcm256 => AeadAlgorithm::Aes256Gcm,
        HpkeAeadType::ChaCha20Poly1305 => AeadAlgorithm::ChaCha20Poly1305,
        HpkeAeadType::Export => AeadAlgorithm::HpkeExport,
    };
    Ok(Hpke::new(hpke_rs::Mode::Base, kem, kdf, aead))
}

impl OpenMlsCrypto for DeterministicCrypto {
    fn supports(&self, ciphersuite: Ciphersuite) -> Result<(), CryptoError> {
        self.inner.supports(ciphersuite)
    }
    fn supported_ciphersuites(&self) -> Vec<Ciphersuite> {
        self.inner.supported_ciphersuites()
    }
    fn hkdf_extract(&self, hash_type: HashType, salt: &[u8], ikm: &[u8]) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hkdf_extract(hash_type, salt, ikm)
    }
    fn hmac(&self, hash_type: HashType, key: &[u8], message: &[u8]) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hmac(hash_type, key, message)
    }
    fn hkdf_expand(&self, hash_type: HashType, prk: &[u8], info: &[u8], okm_len: usize) -> Result<SecretVLBytes, CryptoError> {
        self.inner.hkdf_expand(hash_type, prk, info, okm_len)
    }
    fn hash(&self, hash_type: HashType, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.hash(hash_type, data)
    }
    fn aead_encrypt(&self, alg: AeadType, key: &[u8], data: &[u8], nonce: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.aead_encrypt(alg, key, data, nonce, aad)
    }
    fn aead_decrypt(&self, alg: AeadType, key: &[u8], ct_tag: &[u8], nonce: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.aead_decrypt(alg, key, ct_tag, nonce, aad)
    }
    fn signature_key_gen(&self, _alg: SignatureScheme) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        // RustCrypto would draw these from the OS; Plait builds signature keys from seeded bytes.
        Err(CryptoError::UnsupportedSignatureScheme)
    }
    fn verify_signature(&self, alg: SignatureScheme, data: &[u8], pk: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        match alg {
            SignatureScheme::ED25519 => self.verifying_keys.verify(data, pk, signature),
            _ => self.inner.verify_signature(alg, data, pk, signature),
        }
    }
    fn sign(&self, alg: SignatureScheme, data: &[u8], key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.sign(alg, data, key)
    }
    fn hpke_seal(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        aad: &[u8],
        ptxt: &[u8],
    ) -> Result<HpkeCiphertext, CryptoError> {
        let seed = self.hpke_seed(&[b"seal", pk_r, info, aad, ptxt]);
        let (kem_output, ciphertext) = with_hpke_seed(seed, || {
            hpke(config)?.seal(&HpkePublicKey::from(pk_r), info, aad, ptxt, None, None, None).map_err(|error| match error {
                hpke_rs::HpkeError::InvalidInput => CryptoError::InvalidLength,
                _ => CryptoError::CryptoLibraryError,
            })
        })?;
        Ok(HpkeCiphertext { kem_output: kem_output.into(), ciphertext: ciphertext.into() })
    }
    fn hpke_open(
        &self,
        config: HpkeConfig,
        input: &HpkeCiphertext,
        sk_r: &[u8],
        info: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.inner.hpke_open(config, input, sk_r, info, aad)
    }
    fn hpke_setup_sender_and_export(
        &self,
        config: HpkeConfig,
        pk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<(KemOutput, ExporterSecret), CryptoError> {
        let length = (exporter_length as u64).to_le_bytes();
        let seed = self.hpke_seed(&[b"export", pk_r, info, exporter_context, &length]);
        with_hpke_seed(seed, || {
            let (kem_output, context) = hpke(config)?
                .setup_sender(&HpkePublicKey::from(pk_r), info, None, None, None)
                .map_err(|_| CryptoError::SenderSetupError)?;
            let exported = context.export(exporter_context, exporter_length).map_err(|_| CryptoError::ExporterError)?;
            Ok((kem_output, exported.into()))
        })
    }
    fn hpke_setup_receiver_and_export(
        &self,
        config: HpkeConfig,
        enc: &[u8],
        sk_r: &[u8],
        info: &[u8],
        exporter_context: &[u8],
        exporter_length: usize,
    ) -> Result<ExporterSecret, CryptoError> {
        self.inner.hpke_setup_receiver_and_export(config, enc, sk_r, info, exporter_context, exporter_length)
    }
    fn derive_hpke_keypair(&self, config: HpkeConfig, ikm: &[u8]) -> Result<HpkeKeyPair, CryptoError> {
        self.inner.derive_hpke_keypair(config, ikm)
    }
}

/// hpke-rs's RustCrypto backend with a PRNG seeded from [`NEXT_HPKE_SEED`].
#[derive(Debug)]
pub struct SeededHpkeCrypto;

/// The ephemeral-key PRNG of one HPKE call. `None` is the PRNG of a copy made outside a seeded
/// call (hpke-rs clones its context after encapsulating); drawing from it is a bug.
pub struct SeededHpkePrng(Option<ChaCha20Rng>);

impl SeededHpkePrng {
    fn stream(&mut self) -> &mut ChaCha20Rng {
        self.0.as_mut().expect("invariant: HPKE randomness is drawn only inside a seeded call")
    }
}

impl zeroize::Zeroize for SeededHpkePrng {
    fn zeroize(&mut self) {
        // Drop the stream: its state is the secret.
        self.0 = None;
    }
}

impl TryRng for SeededHpkePrng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.stream().next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.stream().next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.stream().fill_bytes(dst);
        Ok(())
    }
}

impl TryCryptoRng for SeededHpkePrng {}

impl HpkeTestRng for SeededHpkePrng {
    type Error = Infallible;
    fn try_fill_test_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.stream().fill_bytes(dest);
        Ok(())
    }
    fn seed(&mut self, seed: &[u8]) {
        let mut bytes = [0u8; 32];
        bytes.iter_mut().zip(seed).for_each(|(b, s)| *b = *s);
        self.0 = Some(ChaCha20Rng::from_seed(bytes));
    }
}

impl HpkeCrypto for SeededHpkeCrypto {
    type HpkePrng = SeededHpkePrng;

    fn name() -> String {
        "RustCrypto, seeded".into()
    }
    fn supports_kdf(alg: KdfAlgorithm) -> Result<(), hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::supports_kdf(alg)
    }
    fn supports_kem(alg: KemAlgorithm) -> Result<(), hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::supports_kem(alg)
    }
    fn supports_aead(alg: AeadAlgorithm) -> Result<(), hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::supports_aead(alg)
    }
    fn prng() -> SeededHpkePrng {
        // The first PRNG made inside a seeded call takes the seed; any later one (a context
        // clone) gets none, and drawing from it panics, so a new openmls path that draws HPKE
        // randomness elsewhere cannot silently fall back to a fixed or OS stream.
        SeededHpkePrng(NEXT_HPKE_SEED.with(|next| next.borrow_mut().take()).map(ChaCha20Rng::from_seed))
    }
    fn kdf_extract(alg: KdfAlgorithm, salt: &[u8], ikm: &[u8]) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::kdf_extract(alg, salt, ikm)
    }
    fn kdf_expand(
        alg: KdfAlgorithm,
        prk: &[u8],
        info: &[u8],
        output_size: usize,
    ) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::kdf_expand(alg, prk, info, output_size)
    }
    fn dh(alg: KemAlgorithm, pk: &[u8], sk: &[u8]) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::dh(alg, pk, sk)
    }
    fn secret_to_public(alg: KemAlgorithm, sk: &[u8]) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::secret_to_public(alg, sk)
    }
    fn kem_key_gen(alg: KemAlgorithm, prng: &mut SeededHpkePrng) -> Result<(Vec<u8>, Vec<u8>), hpke_rs_crypto::error::Error> {
        let mut seed = vec![0u8; 64];
        prng.stream().fill_bytes(&mut seed);
        HpkeRustCrypto::kem_key_gen_derand(alg, &seed[..kem_seed_len(alg)])
    }
    fn kem_key_gen_derand(alg: KemAlgorithm, seed: &[u8]) -> Result<(Vec<u8>, Vec<u8>), hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::kem_key_gen_derand(alg, seed)
    }
    fn kem_encaps(
        _alg: KemAlgorithm,
        _pk_r: &[u8],
        _prng: &mut SeededHpkePrng,
    ) -> Result<(Vec<u8>, Vec<u8>), hpke_rs_crypto::error::Error> {
        // hpke-rs encapsulates DH-based KEMs itself, from our seeded PRNG; this entry point
        // serves only post-quantum KEMs, whose backend would draw from the OS. Plait uses none.
        Err(hpke_rs_crypto::error::Error::UnknownKemAlgorithm)
    }
    fn kem_decaps(alg: KemAlgorithm, ct: &[u8], sk_r: &[u8]) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::kem_decaps(alg, ct, sk_r)
    }
    fn dh_validate_sk(alg: KemAlgorithm, sk: &[u8]) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::dh_validate_sk(alg, sk)
    }
    fn aead_seal(
        alg: AeadAlgorithm,
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::aead_seal(alg, key, nonce, aad, msg)
    }
    fn aead_open(
        alg: AeadAlgorithm,
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>, hpke_rs_crypto::error::Error> {
        HpkeRustCrypto::aead_open(alg, key, nonce, aad, msg)
    }
}

fn kem_seed_len(alg: KemAlgorithm) -> usize {
    match alg {
        KemAlgorithm::DhKem25519 | KemAlgorithm::DhKemP256 => 32,
        _ => 64,
    }
}
