//! `plait`: the acceptor server, the device command line and the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plait_io_iroh::app::AppError;

mod cli_device;
mod demo;

/// mimalloc, not the system's: Loro and MLS allocate many small blocks for every message, and
/// with glibc's malloc that was ~15% of a device's kernel time on an edit's path. Measured in
/// `benches/real.rs` (which uses it too): handling an edit ~8–10 µs less at the author and at
/// the reader, process CPU per edit 150–155 µs against 155–190.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "plait", version, about = "End-to-end encrypted, local-first document sync through federated acceptors")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Run an acceptor server.
    Acceptor {
        /// Where its keys and database live.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where to listen (UDP, for iroh/QUIC). Port 0: the port of the last start (tickets carry
        /// it), or any free one the first time.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Where to serve /health and /metrics.
        #[arg(long, default_value = "127.0.0.1:0")]
        http: std::net::SocketAddr,
        /// A TOML file of limits.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Use a device: create, invite, join, edit, sync.
    Device {
        /// Where its keys, database and document list live.
        #[arg(long)]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: cli_device::DeviceCommand,
    },
    /// Start 3 acceptors and 3 devices on loopback and show them converge.
    Demo {
        /// Where to keep their data (a temporary folder if omitted).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before the nodes allocate: see `huge_pages.rs` for what huge pages cost a node.
    if let Err(error) = plait_io_iroh::huge_pages::turn_off_transparent_huge_pages() {
        eprintln!("warning: cannot turn transparent huge pages off ({error}); memory may cost more");
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Top::Acceptor { data_dir, listen, http, config } => run_acceptor(data_dir, listen, http, config).await,
            Top::Device { data_dir, command } => cli_device::run(&data_dir, command).await,
            Top::Demo { dir } => demo::run(dir).await,
        }
    });
    // Leave background tasks (links, readers) to the runtime's drop, without waiting for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_acceptor(
    data_dir: PathBuf,
    listen: std::net::SocketAddr,
    http: std::net::SocketAddr,
    config: Option<PathBuf>,
) -> Result<(), AppError> {
    let mut options = plait_io_iroh::app::NodeOptions::default();
    options.iroh.listen = listen;
    if let Some(path) = config {
        options = plait_io_iroh::server::ServerConfig::read(&path)?.apply(options);
    }
    let mut server = plait_io_iroh::server::AcceptorServer::start(&data_dir, options).await?;
    println!("acceptor ready: {}", server.ticket());
    let http = server.serve_http(http).await?;
    println!("http: {http}");
    let stop = shutdown_signal();
    tokio::select! {
        result = server.stopped() => return result,
        () = stop => {}
    }
    println!("stopping");
    server.shutdown().await;
    println!("stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
