//! The acceptor server: a kernel `Acceptor` on iroh and SQLite, its TOML config, and a small
//! HTTP endpoint with `/health` (JSON) and `/metrics` (Prometheus text).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use plait_kernel::{Acceptor, Config, wire};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{AppError, Booted, NodeOptions, boot};
use crate::data_dir::DataDir;
use crate::driver::{DriverError, DriverHandle};
use crate::iroh_net::IrohNetwork;
use crate::links::Links;
use crate::network::LinkErrorKind;
use crate::ticket::Ticket;

/// The acceptor's config file (TOML). Every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest frame, in bytes.
    pub frame_bytes_max: Option<usize>,
    /// Bytes of document messages one group may store.
    pub group_store_bytes_max: Option<u64>,
    /// Bytes of document messages stored over all groups (held in memory).
    pub node_store_bytes_max: Option<u64>,
    /// Bytes of snapshots held over all groups (held in memory).
    pub node_snapshot_bytes_max: Option<u64>,
    /// Invite-mailbox requests per peer per second.
    pub mailbox_requests_per_peer_per_second: Option<u32>,
    /// Open invite mailboxes.
    pub mailboxes_max: Option<usize>,
    /// Connections open at once.
    pub connections_max: Option<usize>,
    /// Groups this acceptor serves.
    pub groups_max: Option<usize>,
    /// Use iroh's public relays.
    pub relays: Option<bool>,
    /// Publish and look up addresses through iroh's public DNS service.
    pub public_lookup: Option<bool>,
    /// Find and announce nodes on the local network with mDNS.
    pub mdns: Option<bool>,
    /// Addresses to put in the ticket (e.g. the public address in front of a NAT).
    pub advertise: Option<Vec<SocketAddr>>,
}

impl ServerConfig {
    /// Reads a config file.
    pub fn read(path: &Path) -> Result<ServerConfig, AppError> {
        let text = std::fs::read_to_string(path).map_err(|error| AppError::Config(format!("{}: {error}", path.display())))?;
        let config: ServerConfig =
            toml::from_str(&text).map_err(|error| AppError::Config(format!("{}: {error}", path.display())))?;
        config.check().map_err(|error| AppError::Config(format!("{}: {error}", path.display())))?;
        Ok(config)
    }

    /// Checks what the kernel's validation would word in its own names.
    fn check(&self) -> Result<(), String> {
        let least = Config::default().message_bytes_min();
        match self.frame_bytes_max {
            Some(bytes) if bytes < least => Err(format!(
                "frame_bytes_max = {bytes} is below {least}, the least that carries the largest messages (two stored \
                 messages, two snapshot chunks)"
            )),
            _ => Ok(()),
        }
    }

    /// The node options it sets, over the defaults.
    pub fn apply(&self, mut options: NodeOptions) -> NodeOptions {
        if let Some(bytes) = self.frame_bytes_max {
            options.links.frame_bytes_max = bytes;
            options.config.message_bytes_max = bytes;
        }
        let config: &mut Config = &mut options.config;
        if let Some(bytes) = self.group_store_bytes_max {
            config.group_store_bytes_max = bytes as usize;
        }
        if let Some(bytes) = self.node_store_bytes_max {
            config.node_store_bytes_max = bytes;
        }
        if let Some(bytes) = self.node_snapshot_bytes_max {
            config.node_snapshot_bytes_max = bytes;
        }
        if let Some(rate) = self.mailbox_requests_per_peer_per_second {
            config.mailbox_requests_per_peer_per_second = rate;
        }
        if let Some(max) = self.mailboxes_max {
            config.mailboxes_max = max;
        }
        if let Some(max) = self.groups_max {
            config.groups_max = max;
        }
        if let Some(max) = self.connections_max {
            options.iroh.connections_max = max;
        }
        options.iroh.relays = self.relays.unwrap_or(options.iroh.relays);
        options.iroh.public_lookup = self.public_lookup.unwrap_or(options.iroh.public_lookup);
        options.iroh.mdns = self.mdns.unwrap_or(options.iroh.mdns);
        if let Some(addresses) = &self.advertise {
            options.iroh.advertise = addresses.clone();
        }
        options
    }
}

/// A running acceptor.
pub struct AcceptorServer {
    _data: DataDir,
    handle: DriverHandle<Acceptor>,
    links: Links<IrohNetwork>,
    network: IrohNetwork,
    task: tokio::task::JoinHandle<Result<(), DriverError>>,
}

/// Where an acceptor remembers the UDP port it listened on.
const LISTENED_FILE: &str = "listened.json";

/// The port of the last start, kept because tickets carry it: devices hold the ticket of an
/// acceptor, and one that came back on another port would be lost to them.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Listened {
    port: Option<u16>,
}

impl AcceptorServer {
    /// Starts an acceptor on `dir` and writes its ticket to `dir/ticket`. Asked to listen on
    /// port 0 (any), it listens on the port of its last start, if it had one.
    pub async fn start(dir: &Path, mut options: NodeOptions) -> Result<AcceptorServer, AppError> {
        let data = DataDir::open(dir, crate::data_dir::NodeKind::Acceptor)?;
        let remembered = match options.iroh.listen.port() {
            0 => data.read_json::<Listened>(LISTENED_FILE)?.port,
            _ => None,
        };
        if let Some(port) = remembered {
            options.iroh.listen.set_port(port);
        }
        let secret_key = data.secret_key()?;
        let booted =
            boot(&data, secret_key, &options, |config, me, restored, seed| Acceptor::new(config, me, seed, restored)).await;
        let Booted { handle, links, network, task, .. } = match (booted, remembered) {
            (Err(AppError::Bind(error)), Some(port)) => {
                return Err(AppError::Bind(error.explained(&format!(
                    "port {port} is the one this acceptor listened on before, kept so that the tickets devices hold \
                     stay valid; free it, or choose another with --listen (devices then need the new ticket)"
                ))));
            }
            (booted, _) => booted?,
        };
        data.write_json(LISTENED_FILE, &Listened { port: network.port() })?;
        data.write_atomically("ticket", format!("{}\n", network.ticket()).as_bytes())?;
        Ok(AcceptorServer { _data: data, handle, links, network, task })
    }

    /// Its driver.
    pub fn driver(&self) -> &DriverHandle<Acceptor> {
        &self.handle
    }

    /// Its ticket.
    pub fn ticket(&self) -> Ticket {
        self.network.ticket()
    }

    /// Serves `/health` and `/metrics` on `address` until the process ends; returns the bound address.
    pub async fn serve_http(&self, address: SocketAddr) -> Result<SocketAddr, AppError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| AppError::Config(format!("--http {address}: {error}")))?;
        let bound = listener.local_addr().map_err(|error| AppError::Config(error.to_string()))?;
        let source =
            Arc::new(MetricsSource { handle: self.handle.clone(), links: self.links.clone(), network: self.network.clone() });
        tokio::spawn(async move {
            let requests = Arc::new(tokio::sync::Semaphore::new(HTTP_REQUESTS_MAX));
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(permit) = requests.clone().try_acquire_owned() else { continue };
                let source = source.clone();
                tokio::spawn(async move {
                    let _ = answer_http(stream, &source).await;
                    drop(permit);
                });
            }
        });
        Ok(bound)
    }

    /// Waits until the driver stops by itself (a storage failure).
    pub async fn stopped(&mut self) -> Result<(), AppError> {
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(AppError::Config(format!("the node stopped: {error}"))),
            Err(error) => Err(AppError::Config(format!("the node panicked: {error}"))),
        }
    }

    /// Stops cleanly: the current input finishes, the endpoint tells peers it is closing.
    pub async fn shutdown(self) {
        self.handle.stop().await;
        let _ = self.task.await;
        self.network.close().await;
    }
}

/// HTTP requests served at once.
const HTTP_REQUESTS_MAX: usize = 16;
/// Bytes of an HTTP request read.
const HTTP_REQUEST_BYTES_MAX: usize = 8192;

struct MetricsSource {
    handle: DriverHandle<Acceptor>,
    links: Links<IrohNetwork>,
    network: IrohNetwork,
}

async fn answer_http(mut stream: tokio::net::TcpStream, source: &MetricsSource) -> std::io::Result<()> {
    // Read until the request line is complete (a client may send it in pieces), within limits.
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !request.windows(2).any(|pair| pair == b"\r\n") && request.len() < HTTP_REQUEST_BYTES_MAX {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => request.extend_from_slice(&buffer[..read]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = match path {
        "/health" => ("200 OK", "application/json", health(source).await),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics(source).await),
        _ => ("404 Not Found", "text/plain", "not found: try /health or /metrics\n".to_owned()),
    };
    let response =
        format!("HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn health(source: &MetricsSource) -> String {
    let status = source.handle.status();
    let running = status.stopped.is_none() && source.handle.inspect(|_| ()).await.is_ok();
    serde_json::json!({
        "status": if running { "ok" } else { "stopped" },
        "node": crate::app::hex(&source.network.id().0),
        "ticket": source.network.ticket().to_string(),
        "connections": source.links.stats().connected(),
        "stopped": status.stopped,
    })
    .to_string()
}

async fn metrics(source: &MetricsSource) -> String {
    let node = source.handle.inspect(|acceptor| (acceptor.stats(), acceptor.counters().iter().collect::<Vec<_>>())).await.ok();
    let status = source.handle.status();
    let links = source.links.stats();
    let iroh = source.network.counters();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP plait_{name} {help}\n# TYPE plait_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "plait_{name}{labels} {value}");
        }
    };
    let one = |value: f64| vec![(String::new(), value)];
    metric("connections", "gauge", "Peers with a live link.", &one(links.connected() as f64));
    metric(
        "open_connections",
        "gauge",
        "iroh connections accepted and open.",
        &one(iroh.open_connections.load(Ordering::Relaxed) as f64),
    );
    metric(
        "refused_connections_total",
        "counter",
        "Connections refused (connection limit or handshake limit).",
        &one(iroh.refused_connections.load(Ordering::Relaxed) as f64),
    );
    metric(
        "failed_handshakes_total",
        "counter",
        "Handshakes that failed (wrong ALPN, bad TLS, timeout).",
        &one(iroh.failed_handshakes.load(Ordering::Relaxed) as f64),
    );
    metric("links_refused_total", "counter", "Links closed because their peer had too many.", &one(links.links_refused as f64));
    let errors: Vec<(String, f64)> = LinkErrorKind::ALL
        .iter()
        .zip(links.errors)
        .map(|(kind, count)| (format!("{{kind=\"{}\"}}", kind.name()), count as f64))
        .collect();
    metric("link_errors_total", "counter", "Link failures by class.", &errors);
    metric("frames_received_total", "counter", "Kernel frames received.", &one(links.frames_received as f64));
    metric("frames_sent_total", "counter", "Frames sent.", &one(links.frames_sent as f64));
    metric(
        "frames_dropped_total",
        "counter",
        "Frames dropped (queue full, peer unreachable).",
        &one(links.frames_dropped as f64),
    );
    if let Some((stats, counters)) = node {
        metric("groups", "gauge", "Groups served.", &one(stats.groups as f64));
        metric("stored_messages", "gauge", "Document messages stored.", &one(stats.stored_messages as f64));
        metric("stored_bytes", "gauge", "Bytes of document messages stored.", &one(stats.stored_bytes as f64));
        metric(
            "stored_bytes_max",
            "gauge",
            "The budget of stored_bytes (node_store_bytes_max); posts beyond it are refused.",
            &one(stats.stored_bytes_max as f64),
        );
        metric("snapshot_bytes", "gauge", "Bytes of snapshots held, whole and being stored.", &one(stats.snapshot_bytes as f64));
        metric(
            "snapshot_bytes_max",
            "gauge",
            "The budget of snapshot_bytes (node_snapshot_bytes_max); chunks beyond it are refused.",
            &one(stats.snapshot_bytes_max as f64),
        );
        let rejected: Vec<(String, f64)> =
            counters.iter().map(|(name, count)| (format!("{{reason=\"{name}\"}}"), *count as f64)).collect();
        metric("rejections_total", "counter", "Inputs rejected by the kernel, by reason (rate limits included).", &rejected);
        let over_limit = counters.iter().filter(|(name, _)| *name == "over_limit").map(|(_, count)| *count).sum::<u64>();
        metric(
            "rate_limit_rejections_total",
            "counter",
            "Requests refused by a limit (the mailbox rate limit among them).",
            &one(over_limit as f64),
        );
    }
    let sent = |kind: u32| status.sent_by_kind.get(&kind).copied().unwrap_or(0) as f64;
    metric("paxos_promises_total", "counter", "Paxos promises sent.", &one(sent(wire::kind::PROMISE)));
    metric("paxos_accepts_total", "counter", "Paxos accepts sent (Accepted replies).", &one(sent(wire::kind::ACCEPTED)));
    metric("fsyncs_total", "counter", "Storage commits, one fsync each.", &one(status.commits as f64));
    metric(
        "persisted_batches_total",
        "counter",
        "Write batches persisted (several may share a commit).",
        &one(status.batches as f64),
    );
    let buckets: Vec<(String, f64)> = ["1", "2-3", "4-7", "8+"]
        .iter()
        .zip(status.batches_per_commit)
        .map(|(size, count)| (format!("{{batches=\"{size}\"}}"), count as f64))
        .collect();
    metric("commits_by_batch_count_total", "counter", "Commits by the number of batches they carried.", &buckets);
    metric("commit_seconds_total", "counter", "Time spent committing to storage.", &one(status.commit_micros_total as f64 / 1e6));
    metric("commit_seconds_max", "gauge", "The slowest storage commit.", &one(status.commit_micros_max as f64 / 1e6));
    metric("inputs_total", "counter", "Inputs the kernel handled.", &one(status.inputs as f64));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_sets_limits_and_refuses_unknown_keys() {
        let text = "frame_bytes_max = 600000\ngroup_store_bytes_max = 1000000\nnode_store_bytes_max = 5000000\nnode_snapshot_bytes_max = 300000000\nconnections_max = 8\nmdns = true\nadvertise = [\"203.0.113.7:4433\"]\n";
        let config: ServerConfig = toml::from_str(text).expect("a valid config");
        let options = config.apply(NodeOptions::default());
        assert_eq!(options.links.frame_bytes_max, 600_000);
        assert_eq!(options.config.message_bytes_max, 600_000);
        assert!(options.config.clone().validate().is_ok());
        assert_eq!(options.config.group_store_bytes_max, 1_000_000);
        assert_eq!((options.config.node_store_bytes_max, options.config.node_snapshot_bytes_max), (5_000_000, 300_000_000));
        assert_eq!(options.iroh.connections_max, 8);
        assert!(options.iroh.mdns && !options.iroh.relays);
        assert_eq!(options.iroh.advertise, vec!["203.0.113.7:4433".parse::<SocketAddr>().expect("address")]);
        assert!(toml::from_str::<ServerConfig>("frame_size = 1").is_err(), "a misspelt key is an error, not ignored");
        let small: ServerConfig = toml::from_str("frame_bytes_max = 65536").expect("parses");
        let error = small.check().expect_err("too small for the default limits");
        assert!(error.starts_with("frame_bytes_max = 65536 is below 524288"), "{error}");
    }
}
