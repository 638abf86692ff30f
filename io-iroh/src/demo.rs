//! `plait demo`: 3 acceptors and 3 devices on loopback, narrated.

use std::path::PathBuf;
use std::time::Duration;

use plait_io_iroh::app::{AppError, DeviceApp, DocumentHandle, NodeOptions};
use plait_io_iroh::server::AcceptorServer;
use plait_io_iroh::ticket::Ticket;
use plait_kernel::mls::Role;

const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(dir: Option<PathBuf>) -> Result<(), AppError> {
    let temporary = match &dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|error| AppError::BadInput(format!("temporary folder: {error}")))?),
    };
    let root = dir.unwrap_or_else(|| temporary.as_ref().expect("made above").path().to_path_buf());
    println!("== Plait demo: 3 acceptors, 3 devices, one end-to-end encrypted document (data in {})", root.display());

    let mut acceptors = Vec::new();
    for index in 0..3 {
        let server = AcceptorServer::start(&root.join(format!("acceptor-{index}")), NodeOptions::default()).await?;
        println!("1. acceptor {index} ready: {}", short(&server.ticket()));
        acceptors.push(Some(server));
    }
    let tickets: Vec<Ticket> = acceptors.iter().flatten().map(AcceptorServer::ticket).collect();

    let mut devices = Vec::new();
    for name in NAMES {
        devices.push(DeviceApp::open(&root.join(name), NodeOptions::default()).await?);
    }
    let alice = devices[0].create_document("demo", &tickets).await?;
    println!("2. alice created the document; the acceptors will only ever see ciphertext");

    let mut docs = vec![alice.clone()];
    for (index, name) in NAMES.iter().enumerate().skip(1) {
        let code = alice.invite(Role::Writer, Duration::from_secs(600), tickets.clone()).await?;
        println!("3. alice invites {name}: {}…", &code[..32.min(code.len())]);
        let joined = devices[index].join(&code, CONVERGE_TIMEOUT).await?;
        println!("   {name} joined (epoch {})", joined.status().await?.epoch);
        docs.push(joined);
    }

    println!("4. everyone types at once");
    type_lines(&docs, "first").await?;
    converge(&docs).await?;

    let stopped = acceptors[2].take().expect("running");
    let listen = stopped.ticket().addresses[0];
    stopped.shutdown().await;
    println!("5. acceptor 2 stopped mid-run; the others keep a write quorum, so typing goes on");
    type_lines(&docs, "second").await?;
    converge(&docs).await?;

    acceptors[2] = Some(restart(&root.join("acceptor-2"), listen).await?);
    println!("6. acceptor 2 restarted from its disk and catches up from its peers");
    type_lines(&docs, "third").await?;
    let text = converge(&docs).await?;

    println!("7. every device holds the same text:\n{text}");
    for device in devices {
        device.shutdown().await;
    }
    for server in acceptors.into_iter().flatten() {
        server.shutdown().await;
    }
    println!("== demo finished: 3 devices converged");
    Ok(())
}

async fn type_lines(docs: &[DocumentHandle], round: &str) -> Result<(), AppError> {
    let edits = docs.iter().zip(NAMES).map(|(doc, name)| async move { doc.insert(0, &format!("{name}: {round} line\n")).await });
    for result in futures_util::future::join_all(edits).await {
        result?;
    }
    Ok(())
}

/// Waits until every device has the same text and nothing unsafe.
async fn converge(docs: &[DocumentHandle]) -> Result<String, AppError> {
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let mut texts = Vec::new();
        let mut unsafe_messages = 0;
        for doc in docs {
            texts.push(doc.text().await?);
            unsafe_messages += doc.status().await?.unsafe_messages;
        }
        if unsafe_messages == 0 && texts.windows(2).all(|pair| pair[0] == pair[1]) {
            println!("   converged: {} lines on every device, every edit stored by a write quorum", texts[0].lines().count());
            return Ok(texts.swap_remove(0));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AppError::Timeout(CONVERGE_TIMEOUT, "the devices to converge"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts an acceptor again on its old address. The OS frees the old socket shortly after the
/// endpoint closes, so binding is retried a bounded number of times.
async fn restart(dir: &std::path::Path, listen: std::net::SocketAddr) -> Result<AcceptorServer, AppError> {
    const BIND_ATTEMPTS_MAX: u32 = 50;
    let mut options = NodeOptions::default();
    options.iroh.listen = listen;
    let mut attempt = 1;
    loop {
        match AcceptorServer::start(dir, options.clone()).await {
            Err(AppError::Bind(_)) if attempt < BIND_ATTEMPTS_MAX => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

fn short(ticket: &Ticket) -> String {
    format!("{} at {:?}", plait_io_iroh::app::hex(&ticket.node.0[..6]), ticket.addresses)
}
