//! The iroh network: ALPN `plait/1`, one bidirectional stream per connection carrying
//! length-delimited frames, relays and public address lookup off unless asked for.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use iroh::endpoint::{
    ConnectError, ConnectWithOptsError, ConnectingError, Connection, ConnectionError, IdleTimeout, QuicTransportConfig,
    RecvStream, SendStream, presets,
};
use iroh::{Endpoint, EndpointAddr, PublicKey, RelayMode, SecretKey, TransportAddr};
use plait_kernel::NodeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::frames::HINT_ADDRESSES_MAX;
use crate::network::{LinkError, LinkErrorKind, Network};
use crate::ticket::Ticket;

/// The protocol name negotiated in TLS; a peer speaking anything else is refused in the handshake.
pub const ALPN: &[u8] = b"plait/1";

/// How the endpoint is set up.
#[derive(Clone, Debug)]
pub struct IrohOptions {
    /// Where to listen (port 0: any free port). Loopback by default, for tests and demos; a
    /// device that talks to remote acceptors listens on `0.0.0.0:0`.
    pub listen: SocketAddr,
    /// Use iroh's public relays (for devices behind NATs in real deployments).
    pub relays: bool,
    /// Publish and look up addresses through iroh's public DNS service.
    pub public_lookup: bool,
    /// Find and announce nodes on the local network with mDNS.
    pub mdns: bool,
    /// The addresses put in this node's ticket (empty: derived from where it listens).
    pub advertise: Vec<SocketAddr>,
    /// Connections open at once (beyond it, new ones are refused).
    pub connections_max: usize,
    /// Handshakes in progress at once.
    pub handshakes_max: usize,
    /// Nodes remembered in the address book.
    pub address_book_max: usize,
    /// A handshake (and its first stream) that takes longer is dropped.
    pub handshake_timeout_ms: u64,
    /// A connection that hears nothing for this long is closed (iroh sends a keep-alive every
    /// 5 s). A peer that vanished without closing (killed, or its machine gone) is noticed only
    /// this way, and a link we opened is dialed again once it is (`links.rs`): with QUIC's 30 s,
    /// a device watching a document heard nothing for ~32 s after its acceptors were killed and
    /// restarted.
    pub idle_timeout_ms: u64,
}

impl Default for IrohOptions {
    fn default() -> IrohOptions {
        IrohOptions {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            relays: false,
            public_lookup: false,
            mdns: false,
            advertise: Vec::new(),
            connections_max: 1024,
            handshakes_max: 64,
            address_book_max: 4096,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 12_000,
        }
    }
}

/// Counters of the accepting side.
#[derive(Debug, Default)]
pub struct IrohCounters {
    /// Connections refused because `connections_max` were open.
    pub refused_connections: AtomicU64,
    /// Handshakes that failed (wrong ALPN, bad TLS, timeout).
    pub failed_handshakes: AtomicU64,
    /// Connections open now.
    pub open_connections: AtomicUsize,
}

type Accepted = (NodeId, IrohReader, IrohWriter);

/// A node's iroh endpoint.
#[derive(Clone)]
pub struct IrohNetwork {
    endpoint: Endpoint,
    book: Arc<Mutex<BTreeMap<NodeId, Vec<SocketAddr>>>>,
    accepted: Arc<tokio::sync::Mutex<mpsc::Receiver<Accepted>>>,
    counters: Arc<IrohCounters>,
    options: IrohOptions,
}

/// Binding failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the iroh endpoint: {0}")]
pub struct BindError(String);

impl BindError {
    /// The same error, with what the caller knows about why it matters.
    pub(crate) fn explained(self, why: &str) -> BindError {
        BindError(format!("{}: {why}", self.0))
    }
}

impl IrohNetwork {
    /// Binds an endpoint with this secret key and starts accepting connections.
    pub async fn bind(secret_key: [u8; 32], options: IrohOptions) -> Result<IrohNetwork, BindError> {
        let endpoint = bare_endpoint(secret_key, ALPN, &options).await?;
        let (sender, receiver) = mpsc::channel(options.handshakes_max);
        let network = IrohNetwork {
            endpoint: endpoint.clone(),
            book: Arc::default(),
            accepted: Arc::new(tokio::sync::Mutex::new(receiver)),
            counters: Arc::default(),
            options,
        };
        tokio::spawn(accept_loop(endpoint, sender, network.counters.clone(), network.options.clone()));
        Ok(network)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        NodeId(*self.endpoint.id().as_bytes())
    }

    /// This node's ticket: its id and where to reach it. `IrohOptions::advertise` if set;
    /// otherwise the bound address, or, when bound to an unspecified address, the local
    /// interfaces' addresses iroh found on that port (loopback first).
    pub fn ticket(&self) -> Ticket {
        let mut addresses: Vec<SocketAddr> = self.options.advertise.clone();
        if addresses.is_empty() {
            let found: Vec<SocketAddr> = self.endpoint.addr().ip_addrs().copied().collect();
            for bound in self.endpoint.bound_sockets() {
                if bound.ip().is_unspecified() {
                    addresses.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port()));
                    addresses.extend(found.iter().filter(|a| a.port() == bound.port() && !a.ip().is_loopback()));
                } else {
                    addresses.push(bound);
                }
            }
        }
        addresses.dedup();
        addresses.truncate(crate::ticket::TICKET_ADDRESSES_MAX);
        Ticket { node: self.id(), addresses }
    }

    /// The UDP port the endpoint listens on.
    pub fn port(&self) -> Option<u16> {
        self.endpoint.bound_sockets().first().map(SocketAddr::port)
    }

    /// The accepting side's counters.
    pub fn counters(&self) -> &IrohCounters {
        &self.counters
    }

    /// Closes the endpoint (tells connected peers).
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}

impl Network for IrohNetwork {
    type Reader = IrohReader;
    type Writer = IrohWriter;

    async fn dial(&self, peer: NodeId) -> Result<(IrohReader, IrohWriter), LinkError> {
        let key = PublicKey::from_bytes(&peer.0)
            .map_err(|error| LinkError::new(LinkErrorKind::Protocol, format!("bad node id: {error}")))?;
        let addresses = self.book.lock().expect("address book lock").get(&peer).cloned().unwrap_or_default();
        if addresses.is_empty() && !self.options.public_lookup && !self.options.mdns {
            return Err(LinkError::new(LinkErrorKind::NoAddress, format!("no address known for {peer}")));
        }
        let address = EndpointAddr::from_parts(key, addresses.into_iter().map(TransportAddr::Ip));
        let connection = self.endpoint.connect(address, ALPN).await.map_err(|error| classify_connect(&error))?;
        let (send, recv) = connection.open_bi().await.map_err(|error| classify_connection(&error))?;
        Ok((IrohReader { stream: recv, _connection: connection.clone() }, IrohWriter { stream: send, _connection: connection }))
    }

    async fn accept(&self) -> Option<(NodeId, IrohReader, IrohWriter)> {
        self.accepted.lock().await.recv().await
    }

    fn learn(&self, node: NodeId, addresses: &[SocketAddr]) {
        let mut book = self.book.lock().expect("address book lock");
        if !book.contains_key(&node) && book.len() >= self.options.address_book_max {
            return;
        }
        let known = book.entry(node).or_default();
        for address in addresses.iter().rev() {
            known.retain(|old| old != address);
            known.insert(0, *address);
        }
        known.truncate(HINT_ADDRESSES_MAX);
    }
}

/// An iroh endpoint set up as `options` say, speaking only `alpn` (benchmarks and tests use
/// it for raw connections beside Plait's).
pub async fn bare_endpoint(secret_key: [u8; 32], alpn: &[u8], options: &IrohOptions) -> Result<Endpoint, BindError> {
    let mut builder = if options.public_lookup { Endpoint::builder(presets::N0) } else { Endpoint::builder(presets::Minimal) };
    builder = builder.secret_key(SecretKey::from_bytes(&secret_key)).alpns(vec![alpn.to_vec()]);
    builder = builder.relay_mode(if options.relays { RelayMode::Default } else { RelayMode::Disabled });
    if !options.public_lookup {
        builder = builder.clear_address_lookup();
    }
    if options.mdns {
        builder = builder.address_lookup(iroh_mdns_address_lookup::MdnsAddressLookup::builder().service_name("plait"));
    }
    let idle = IdleTimeout::try_from(Duration::from_millis(options.idle_timeout_ms))
        .map_err(|error| BindError(format!("idle timeout: {error}")))?;
    builder = builder.transport_config(QuicTransportConfig::builder().max_idle_timeout(Some(idle)).build());
    builder = builder.clear_ip_transports().bind_addr(options.listen).map_err(|error| BindError(error.to_string()))?;
    builder.bind().await.map_err(|error| BindError(error.to_string()))
}

async fn accept_loop(endpoint: Endpoint, sender: mpsc::Sender<Accepted>, counters: Arc<IrohCounters>, options: IrohOptions) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(options.handshakes_max));
    while let Some(incoming) = endpoint.accept().await {
        let open = counters.open_connections.load(Ordering::Relaxed);
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            counters.refused_connections.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        };
        if open >= options.connections_max {
            counters.refused_connections.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        let sender = sender.clone();
        let counters = counters.clone();
        let timeout = Duration::from_millis(options.handshake_timeout_ms);
        tokio::spawn(async move {
            let handshake = async {
                let connection = incoming.accept().ok()?.await.ok()?;
                let (send, recv) = connection.accept_bi().await.ok()?;
                Some((connection, send, recv))
            };
            let Ok(Some((connection, send, recv))) = tokio::time::timeout(timeout, handshake).await else {
                counters.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                return;
            };
            drop(permit);
            counters.open_connections.fetch_add(1, Ordering::Relaxed);
            let watched = connection.clone();
            let closing = counters.clone();
            tokio::spawn(async move {
                watched.closed().await;
                closing.open_connections.fetch_sub(1, Ordering::Relaxed);
            });
            let peer = NodeId(*connection.remote_id().as_bytes());
            let reader = IrohReader { stream: recv, _connection: connection.clone() };
            let _ = sender.send((peer, reader, IrohWriter { stream: send, _connection: connection })).await;
        });
    }
}

fn classify_connection(error: &ConnectionError) -> LinkError {
    let kind = match error {
        ConnectionError::TimedOut => LinkErrorKind::Timeout,
        ConnectionError::ApplicationClosed(_) | ConnectionError::Reset | ConnectionError::LocallyClosed => {
            LinkErrorKind::ClosedByPeer
        }
        ConnectionError::ConnectionClosed(_) => LinkErrorKind::Refused,
        _ => LinkErrorKind::Protocol,
    };
    LinkError::new(kind, error)
}

fn classify_connect(error: &ConnectError) -> LinkError {
    match error {
        ConnectError::Connect { source: ConnectWithOptsError::NoAddress { .. }, .. } => {
            LinkError::new(LinkErrorKind::NoAddress, error)
        }
        ConnectError::Connecting { source: ConnectingError::ConnectionError { source, .. }, .. } => classify_connection(source),
        ConnectError::Connection { source, .. } => classify_connection(source),
        _ => LinkError::new(LinkErrorKind::Protocol, error),
    }
}

/// The receiving half of an iroh link (keeps its connection open).
pub struct IrohReader {
    stream: RecvStream,
    _connection: Connection,
}

/// The sending half of an iroh link (keeps its connection open).
pub struct IrohWriter {
    stream: SendStream,
    _connection: Connection,
}

impl AsyncRead for IrohReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncRead::poll_read(Pin::new(&mut self.stream), cx, buf)
    }
}

impl AsyncWrite for IrohWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.stream), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.stream), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.stream), cx)
    }
}
