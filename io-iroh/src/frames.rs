//! What travels on a link: length-delimited frames (tokio-util's codec, with a size limit), each
//! a one-byte tag and a body: a kernel frame, or address hints for the network layer.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use plait_kernel::NodeId;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::network::{LinkError, LinkErrorKind};

const KERNEL: u8 = 0;
const HINTS: u8 = 1;

/// Nodes in one hints frame.
pub const HINT_NODES_MAX: usize = 32;
/// Addresses per node in a hint.
pub const HINT_ADDRESSES_MAX: usize = 8;

/// Where a node can be reached (untrusted: dialing authenticates the node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressHint {
    /// The node.
    pub node: NodeId,
    /// Its addresses.
    pub addresses: Vec<SocketAddr>,
}

/// One frame on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkFrame {
    /// For the kernel.
    Kernel(Vec<u8>),
    /// For the network layer: where other nodes are.
    Hints(Vec<AddressHint>),
}

/// The codec, refusing frames over `frame_bytes_max` (plus the tag byte).
pub fn codec(frame_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(frame_bytes_max + 1).length_field_type::<u32>().new_codec()
}

/// A kernel frame with its tag.
pub fn kernel(frame: &[u8]) -> Bytes {
    let mut bytes = BytesMut::with_capacity(frame.len() + 1);
    bytes.put_u8(KERNEL);
    bytes.put_slice(frame);
    bytes.freeze()
}

/// Hints with their tag.
pub fn hints(hints: &[AddressHint]) -> Bytes {
    let mut bytes = vec![HINTS];
    bytes.extend(postcard::to_stdvec(hints).expect("hints encode"));
    Bytes::from(bytes)
}

/// Reads a frame's tag and body.
pub fn decode(frame: &[u8]) -> Result<LinkFrame, LinkError> {
    match frame.split_first() {
        Some((&KERNEL, body)) => Ok(LinkFrame::Kernel(body.to_vec())),
        Some((&HINTS, body)) => {
            let hints: Vec<AddressHint> =
                postcard::from_bytes(body).map_err(|error| LinkError::new(LinkErrorKind::Protocol, format!("hints: {error}")))?;
            let bounded = hints.len() <= HINT_NODES_MAX && hints.iter().all(|hint| hint.addresses.len() <= HINT_ADDRESSES_MAX);
            if !bounded {
                return Err(LinkError::new(LinkErrorKind::Protocol, "too many hints"));
            }
            Ok(LinkFrame::Hints(hints))
        }
        Some((tag, _)) => Err(LinkError::new(LinkErrorKind::Protocol, format!("unknown frame tag {tag}"))),
        None => Err(LinkError::new(LinkErrorKind::Protocol, "empty frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_a_protocol_error() {
        assert_eq!(decode(&kernel(b"abc")).ok(), Some(LinkFrame::Kernel(b"abc".to_vec())));
        let hint = AddressHint { node: NodeId::from_index(3), addresses: vec!["127.0.0.1:9".parse().expect("address")] };
        assert_eq!(decode(&hints(std::slice::from_ref(&hint))).ok(), Some(LinkFrame::Hints(vec![hint])));
        for garbage in [&[][..], &[7, 1, 2][..], &[HINTS, 0xff, 0xff, 0xff][..]] {
            assert_eq!(decode(garbage).map_err(|e| e.kind).err(), Some(LinkErrorKind::Protocol));
        }
    }
}
