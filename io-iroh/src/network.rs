//! What a driver needs from a network: authenticated, ordered byte links to peers by `NodeId`.
//!
//! iroh authenticates the remote end by its key (a `NodeId` *is* an iroh endpoint id). The
//! turmoil network used in tests trusts a hello instead; it exists only inside a test.

use std::future::Future;
use std::net::SocketAddr;

use plait_kernel::NodeId;
use tokio::io::{AsyncRead, AsyncWrite};

/// A network the driver can dial peers on and accept peers from.
pub trait Network: Clone + Send + Sync + 'static {
    /// The receiving half of a link.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The sending half of a link.
    type Writer: AsyncWrite + Unpin + Send + 'static;

    /// Opens a link to `peer`.
    fn dial(&self, peer: NodeId) -> impl Future<Output = Result<(Self::Reader, Self::Writer), LinkError>> + Send;

    /// The next link a peer opened to us, already authenticated; `None` once the network is
    /// closed. Handshakes run concurrently inside the network; this only hands over finished ones.
    fn accept(&self) -> impl Future<Output = Option<(NodeId, Self::Reader, Self::Writer)>> + Send;

    /// Addresses a peer told us another node can be reached at (untrusted hints: a wrong one
    /// only fails to connect, because dialing authenticates the node's key).
    fn learn(&self, _node: NodeId, _addresses: &[SocketAddr]) {}
}

/// Why a link failed, in the classes an operator acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum LinkErrorKind {
    /// Nobody listens there, or the peer refused us (wrong protocol, too many connections).
    Refused,
    /// No answer in time.
    Timeout,
    /// The peer closed the link or reset it.
    ClosedByPeer,
    /// The peer broke the protocol: an oversized or garbled frame, a wrong ALPN, a bad hello.
    Protocol,
    /// We know no address for the peer.
    NoAddress,
}

impl LinkErrorKind {
    /// Every kind, in a fixed order (for metrics).
    pub const ALL: [LinkErrorKind; 5] = [
        LinkErrorKind::Refused,
        LinkErrorKind::Timeout,
        LinkErrorKind::ClosedByPeer,
        LinkErrorKind::Protocol,
        LinkErrorKind::NoAddress,
    ];

    /// A stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            LinkErrorKind::Refused => "refused",
            LinkErrorKind::Timeout => "timeout",
            LinkErrorKind::ClosedByPeer => "closed_by_peer",
            LinkErrorKind::Protocol => "protocol",
            LinkErrorKind::NoAddress => "no_address",
        }
    }
}

/// A failed dial, read or write.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct LinkError {
    /// Its class.
    pub kind: LinkErrorKind,
    /// What the layer below said.
    pub detail: String,
}

impl LinkError {
    /// An error of `kind`.
    pub fn new(kind: LinkErrorKind, detail: impl std::fmt::Display) -> LinkError {
        LinkError { kind, detail: detail.to_string() }
    }

    /// Classifies an I/O error from a socket or stream.
    pub fn from_io(error: &std::io::Error) -> LinkError {
        use std::io::ErrorKind as K;
        let kind = match error.kind() {
            K::ConnectionRefused | K::AddrNotAvailable | K::PermissionDenied => LinkErrorKind::Refused,
            K::TimedOut | K::WouldBlock => LinkErrorKind::Timeout,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof | K::NotConnected => {
                LinkErrorKind::ClosedByPeer
            }
            _ => LinkErrorKind::Protocol,
        };
        LinkError::new(kind, error)
    }
}
