//! A device's MLS identity: an Ed25519 signature key built from seeded bytes, and its credential.

use ed25519_dalek::Signer as _;
use openmls::prelude::{BasicCredential, CredentialWithKey, SignatureScheme};
use openmls_traits::signatures::{Signer, SignerError};

/// The cipher suite of every Plait group: X25519, AES-128-GCM, SHA-256, Ed25519.
pub const CIPHERSUITE: openmls::prelude::Ciphersuite =
    openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Signs for one device in every group it belongs to.
#[derive(Debug)]
pub struct Identity {
    /// The signature key.
    pub signer: Ed25519Signer,
    /// The credential naming the device, bound to the public key.
    pub credential: CredentialWithKey,
}

impl Identity {
    /// The identity whose key is derived from `seed` (32 bytes from the node's RNG) and whose
    /// credential names `name` (the device's node id).
    pub fn from_seed(seed: [u8; 32], name: &[u8]) -> Identity {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes().to_vec();
        let signer = Ed25519Signer(signing);
        let credential =
            CredentialWithKey { credential: BasicCredential::new(name.to_vec()).into(), signature_key: public.into() };
        Identity { signer, credential }
    }
}

/// An Ed25519 key expanded once. (openmls_basic_credential's key pair keeps the seed and
/// expands it, a SHA-512 and a base-point multiplication, on every signature: half the cost of
/// signing a message.) Signatures are the same bytes: Ed25519 signing is deterministic.
pub struct Ed25519Signer(ed25519_dalek::SigningKey);

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_tuple("Ed25519Signer").field(&self.0.verifying_key()).finish()
    }
}

impl Signer for Ed25519Signer {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}
