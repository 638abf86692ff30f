//! Tickets: how a node is named to others — its id and the addresses it listens on, as one
//! copyable string (`plait1` + base32 of the postcard encoding).

use std::net::SocketAddr;

use plait_kernel::NodeId;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "plait1";
/// Addresses in one ticket.
pub const TICKET_ADDRESSES_MAX: usize = 8;

/// A node and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The node (its iroh endpoint id).
    pub node: NodeId,
    /// Its addresses.
    pub addresses: Vec<SocketAddr>,
}

/// A string that is not a ticket.
#[derive(Debug, thiserror::Error)]
#[error("not a Plait ticket: {0}")]
pub struct TicketError(&'static str);

/// `prefix` + lower-case base32 of the postcard encoding: copyable, case-insensitive text.
pub fn encode_text<T: Serialize>(prefix: &str, value: &T) -> String {
    let bytes = postcard::to_stdvec(value).expect("plain data encodes");
    format!("{prefix}{}", data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
}

/// The value `encode_text` wrote, or `None`.
pub fn decode_text<T: serde::de::DeserializeOwned>(prefix: &str, text: &str) -> Option<T> {
    let body = text.trim().strip_prefix(prefix)?;
    let bytes = data_encoding::BASE32_NOPAD.decode(body.to_ascii_uppercase().as_bytes()).ok()?;
    postcard::from_bytes(&bytes).ok()
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&encode_text(PREFIX, self))
    }
}

impl std::str::FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Ticket, TicketError> {
        let body = text.trim().strip_prefix(PREFIX).ok_or(TicketError("it does not start with plait1"))?;
        let bytes =
            data_encoding::BASE32_NOPAD.decode(body.to_ascii_uppercase().as_bytes()).map_err(|_| TicketError("bad base32"))?;
        let ticket: Ticket = postcard::from_bytes(&bytes).map_err(|_| TicketError("bad encoding"))?;
        if ticket.addresses.len() > TICKET_ADDRESSES_MAX {
            return Err(TicketError("too many addresses"));
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_refuse_garbage() {
        let ticket = Ticket { node: NodeId([9; 32]), addresses: vec!["127.0.0.1:4433".parse().expect("address")] };
        let text = ticket.to_string();
        assert!(text.starts_with("plait1"));
        assert_eq!(text.parse::<Ticket>().ok(), Some(ticket));
        for garbage in ["", "plait1", "plait1!!", "hello", "plait1aaaa"] {
            assert!(garbage.parse::<Ticket>().is_err(), "{garbage}");
        }
    }
}
