//! A device's MLS identity: an Ed25519 signature key built from seeded bytes, and its credential.

use openmls::prelude::{BasicCredential, CredentialWithKey, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;

/// The cipher suite of every Plait group: X25519, AES-128-GCM, SHA-256, Ed25519.
pub const CIPHERSUITE: openmls::prelude::Ciphersuite =
    openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Signs for one device in every group it belongs to.
#[derive(Debug)]
pub struct Identity {
    /// The signature key pair (private part: the 32-byte Ed25519 seed).
    pub signer: SignatureKeyPair,
    /// The credential naming the device, bound to the public key.
    pub credential: CredentialWithKey,
}

impl Identity {
    /// The identity whose key is derived from `seed` (32 bytes from the node's RNG) and whose
    /// credential names `name` (the device's node id).
    pub fn from_seed(seed: [u8; 32], name: &[u8]) -> Identity {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes().to_vec();
        let signer = SignatureKeyPair::from_raw(SignatureScheme::ED25519, seed.to_vec(), public.clone());
        let credential =
            CredentialWithKey { credential: BasicCredential::new(name.to_vec()).into(), signature_key: public.into() };
        Identity { signer, credential }
    }
}
