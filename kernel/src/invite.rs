//! Invite codes: a split token.
//!
//! A code has two parts. The **mailbox** names a mailbox at the group's acceptors where the
//! joiner posts its key package and later finds its Welcome; acceptors see it. The **secret**
//! never leaves devices: the joiner MACs its key package with it and the admin device checks the
//! MAC, so an acceptor (or anyone who guesses a mailbox) cannot slip in a key package of its own.
//! Expiry and single use are enforced by the admin device and the mailbox, not by the code.
//!
//! Text form: `plait-` then 44 Crockford base32 characters in groups of four (mailbox, secret and
//! a checksum byte that catches typos). URI form (for QR codes): `plait://join/<text>`.

use crate::log::AcceptorSet;
use crate::rng::NodeRng;
use crate::time::Time;

/// Bytes naming the mailbox.
pub const MAILBOX_BYTES: usize = 10;
/// Bytes of the secret.
pub const SECRET_BYTES: usize = 16;
const PAYLOAD_BYTES: usize = MAILBOX_BYTES + SECRET_BYTES + 1;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const PREFIX: &str = "plait-";
const URI_PREFIX: &str = "plait://join/";

/// The node an encoded key package's credential names, if it names one (every Plait device's
/// credential names its node).
pub(crate) fn node_named_by(key_package: &[u8]) -> Option<crate::ids::NodeId> {
    let name = crate::mls::member::key_package_name(key_package).ok()?;
    Some(crate::ids::NodeId(name.as_slice().try_into().ok()?))
}

/// A mailbox id at the acceptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mailbox(pub [u8; MAILBOX_BYTES]);

/// An invite code. (It serializes with its secret, for the inviting device's own storage.)
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InviteCode {
    /// Where the joiner posts its key package.
    pub mailbox: Mailbox,
    secret: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed by accident.
        f.debug_struct("InviteCode").field("mailbox", &self.mailbox).finish_non_exhaustive()
    }
}

/// What a device redeeming a code keeps durable (`Record::Redeeming`): enough to make the same
/// key package again after a restart. The key package is made from `key_seed` alone (the MLS
/// provider is seeded), so its private keys need no storing of their own; an admin may add it
/// while the device is down, and the Welcome is only of use to that key package.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redeeming {
    /// The code.
    pub code: InviteCode,
    /// The acceptors it came with.
    pub acceptors: AcceptorSet,
    /// The seed of the key package's MLS provider (secret: it makes the private keys).
    pub key_seed: [u8; 32],
    /// When the device started redeeming it, by its clock.
    pub started_at: Time,
}

impl std::fmt::Debug for Redeeming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the code's secret nor the seed is printed by accident.
        let Redeeming { code, acceptors, key_seed: _, started_at } = self;
        f.debug_struct("Redeeming")
            .field("code", code)
            .field("acceptors", acceptors)
            .field("started_at", started_at)
            .finish_non_exhaustive()
    }
}

/// Why text is not an invite code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// It does not start with `plait-` or `plait://join/`.
    #[error("an invite code starts with `plait-` or `plait://join/`")]
    Prefix,
    /// It has a character outside the code's alphabet.
    #[error("{0:?} is not a character of an invite code")]
    Character(char),
    /// It is too short or too long.
    #[error("an invite code has {expected} characters after the prefix, this one has {found}")]
    Length {
        /// How many it must have.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// The checksum does not match: a typo.
    #[error("the invite code has a typo (checksum mismatch)")]
    Checksum,
}

impl InviteCode {
    /// A new code from the node's seeded RNG.
    pub fn generate(rng: &mut NodeRng) -> InviteCode {
        let mut mailbox = [0u8; MAILBOX_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rng.fill(&mut mailbox);
        rng.fill(&mut secret);
        InviteCode { mailbox: Mailbox(mailbox), secret }
    }

    /// The MAC a joiner attaches to its key package.
    pub fn mac(&self, key_package: &[u8]) -> [u8; 32] {
        let key = blake3::derive_key("plait invite key-package mac v1", &self.secret);
        *blake3::keyed_hash(&key, key_package).as_bytes()
    }

    /// Whether `mac` authenticates `key_package` under this code (constant time).
    pub fn verify(&self, key_package: &[u8], mac: &[u8; 32]) -> bool {
        blake3::Hash::from(self.mac(key_package)) == blake3::Hash::from(*mac)
    }

    /// The text form: `plait-xxxx-xxxx-…`.
    pub fn to_text(&self) -> String {
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload[..MAILBOX_BYTES].copy_from_slice(&self.mailbox.0);
        payload[MAILBOX_BYTES..MAILBOX_BYTES + SECRET_BYTES].copy_from_slice(&self.secret);
        payload[PAYLOAD_BYTES - 1] = checksum(&payload[..PAYLOAD_BYTES - 1]);
        let characters = base32(&payload);
        let groups: Vec<&str> = characters.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("{PREFIX}{}", groups.join("-"))
    }

    /// The URI form, for a QR code.
    pub fn to_uri(&self) -> String {
        format!("{URI_PREFIX}{}", self.to_text())
    }

    /// Parses either form; spaces, dashes and case do not matter.
    pub fn parse(text: &str) -> Result<InviteCode, InviteError> {
        let text = text.trim();
        let rest = text.strip_prefix(URI_PREFIX).unwrap_or(text);
        let body = rest.strip_prefix(PREFIX).ok_or(InviteError::Prefix)?;
        let characters: Vec<char> = body.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect();
        let expected = (PAYLOAD_BYTES * 8).div_ceil(5);
        if characters.len() != expected {
            return Err(InviteError::Length { expected, found: characters.len() });
        }
        let payload = unbase32(&characters, PAYLOAD_BYTES)?;
        if checksum(&payload[..PAYLOAD_BYTES - 1]) != payload[PAYLOAD_BYTES - 1] {
            return Err(InviteError::Checksum);
        }
        let mut mailbox = [0u8; MAILBOX_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        mailbox.copy_from_slice(&payload[..MAILBOX_BYTES]);
        secret.copy_from_slice(&payload[MAILBOX_BYTES..MAILBOX_BYTES + SECRET_BYTES]);
        Ok(InviteCode { mailbox: Mailbox(mailbox), secret })
    }
}

fn checksum(bytes: &[u8]) -> u8 {
    blake3::hash(bytes).as_bytes()[0]
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(characters: &[char], len: usize) -> Result<Vec<u8>, InviteError> {
    let mut out = Vec::with_capacity(len);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in characters {
        let lower = c.to_ascii_lowercase();
        // Crockford: i and l read as 1, o as 0.
        let lower = match lower {
            'i' | 'l' => '1',
            'o' => '0',
            other => other,
        };
        let value = ALPHABET.iter().position(|a| *a as char == lower).ok_or(InviteError::Character(*c))?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_in_both_forms_and_catch_typos() {
        let mut rng = NodeRng::from_seed(3);
        let code = InviteCode::generate(&mut rng);
        let text = code.to_text();
        assert!(text.starts_with("plait-"));
        assert_eq!(InviteCode::parse(&text), Ok(code.clone()));
        assert_eq!(InviteCode::parse(&code.to_uri()), Ok(code.clone()));
        assert_eq!(InviteCode::parse(&text.to_uppercase().replace("PLAIT-", "plait-")), Ok(code.clone()));
        let mut typo = text.clone().into_bytes();
        let at = 11; // a code character (index 10 is a group dash)
        typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(matches!(InviteCode::parse(&typo), Err(InviteError::Checksum)));
        assert_eq!(InviteCode::parse("hello"), Err(InviteError::Prefix));
        assert!(matches!(InviteCode::parse("plait-abc"), Err(InviteError::Length { .. })));
        assert!(!format!("{code:?}").contains(&text[6..10]), "Debug never shows the secret");
    }

    #[test]
    fn only_the_code_holder_can_authenticate_a_key_package() {
        let mut rng = NodeRng::from_seed(4);
        let code = InviteCode::generate(&mut rng);
        let other = InviteCode::generate(&mut rng);
        let mac = code.mac(b"key package");
        assert!(code.verify(b"key package", &mac));
        assert!(!code.verify(b"another key package", &mac));
        assert!(!other.verify(b"key package", &mac));
    }
}
