//! `plait device --data-dir DIR SUBCOMMAND`.

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use plait_io_iroh::app::{AppError, DeviceApp, DocumentHandle, NodeOptions, hex};
use plait_io_iroh::ticket::Ticket;
use plait_kernel::mls::Role;
use plait_kernel::updates::PostRefusal;
use plait_kernel::wire::GroupRefusal;
use plait_kernel::{Event, NodeId};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Make this device's keys.
    Init {
        /// A name for this device (shown by `status` and `members` here).
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a document served by these acceptors.
    Create {
        /// The document's local name.
        doc: String,
        /// An acceptor's ticket (repeat for each).
        #[arg(long = "acceptor", required = true)]
        acceptors: Vec<String>,
    },
    /// Invite someone (admins); the last line is `invite CODE`.
    Invite {
        /// The document.
        doc: String,
        /// Their role.
        #[arg(long, default_value = "writer")]
        role: String,
        /// How long the code works (e.g. 30s, 10m, 2h).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Join with an invite code; waits until an admin device adds this one.
    Join {
        /// The code.
        code: String,
        /// How long to wait.
        #[arg(long, default_value = "60s")]
        timeout: String,
    },
    /// Append text (local and durable at once; works offline).
    Append { doc: String, text: String },
    /// Insert text at a character position (local and durable at once; works offline).
    Insert { doc: String, pos: usize, text: String },
    /// Delete characters (local and durable at once; works offline).
    Delete { doc: String, pos: usize, len: usize },
    /// Push local edits, admit pending joiners (admins), carry out membership changes, pull.
    /// Without `--for`, runs until idle: every local edit safe and nothing new arriving.
    Sync {
        /// Only this document (default: all).
        doc: Option<String>,
        /// Return once idle (the default without `--for`).
        #[arg(long)]
        until_idle: bool,
        /// Stay online this long.
        #[arg(long = "for")]
        for_: Option<String>,
        /// Fail if not idle by then.
        #[arg(long, default_value = "60s")]
        timeout: String,
    },
    /// Print the document's text, exactly.
    Cat { doc: String },
    /// Print `key: value` lines: epoch, role, members, acceptors, unsafe.
    Status { doc: String },
    /// Print the members and their roles.
    Members { doc: String },
    /// Remove a member (admins), by id or unique id prefix.
    RemoveMember { doc: String, member: String },
    /// Add an acceptor to the document's set (admins); the new ticket of one already in the set
    /// (it moved) only updates where this device reaches it.
    AddAcceptor { doc: String, ticket: String },
    /// Remove an acceptor from the document's set (admins), by id or unique id prefix.
    RemoveAcceptor { doc: String, acceptor: String },
    /// Commit a fresh key for this device.
    Rotate { doc: String },
    /// Write a Loro snapshot any Loro client can open.
    Export {
        doc: String,
        #[arg(long)]
        loro: std::path::PathBuf,
    },
    /// Stay online and print changes as they arrive (until Ctrl-C).
    Watch { doc: String },
}

impl DeviceCommand {
    /// Whether the command needs only the local store (it opens the device offline).
    fn is_local(&self) -> bool {
        match self {
            DeviceCommand::Init { .. }
            | DeviceCommand::Append { .. }
            | DeviceCommand::Insert { .. }
            | DeviceCommand::Delete { .. }
            | DeviceCommand::Cat { .. }
            | DeviceCommand::Status { .. }
            | DeviceCommand::Members { .. }
            | DeviceCommand::Export { .. } => true,
            DeviceCommand::Create { .. }
            | DeviceCommand::Invite { .. }
            | DeviceCommand::Join { .. }
            | DeviceCommand::Sync { .. }
            | DeviceCommand::RemoveMember { .. }
            | DeviceCommand::AddAcceptor { .. }
            | DeviceCommand::RemoveAcceptor { .. }
            | DeviceCommand::Rotate { .. }
            | DeviceCommand::Watch { .. } => false,
        }
    }
}

impl DeviceCommand {
    /// The document the command names, if it names one.
    fn document(&self) -> Option<&str> {
        match self {
            DeviceCommand::Create { doc, .. }
            | DeviceCommand::Invite { doc, .. }
            | DeviceCommand::Append { doc, .. }
            | DeviceCommand::Insert { doc, .. }
            | DeviceCommand::Delete { doc, .. }
            | DeviceCommand::Cat { doc }
            | DeviceCommand::Status { doc }
            | DeviceCommand::Members { doc }
            | DeviceCommand::RemoveMember { doc, .. }
            | DeviceCommand::AddAcceptor { doc, .. }
            | DeviceCommand::RemoveAcceptor { doc, .. }
            | DeviceCommand::Rotate { doc }
            | DeviceCommand::Export { doc, .. }
            | DeviceCommand::Watch { doc } => Some(doc),
            DeviceCommand::Sync { doc, .. } => doc.as_deref(),
            DeviceCommand::Init { .. } | DeviceCommand::Join { .. } => None,
        }
    }
}

const DEVICE_FILE: &str = "device.json";
/// A device reaches acceptors wherever they are.
const ANY_ADDRESS: std::net::SocketAddr = std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
/// How long nothing new must arrive before a device counts as idle.
const QUIET: Duration = Duration::from_millis(2_000);

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct DeviceInfo {
    name: Option<String>,
}

pub async fn run(dir: &Path, command: DeviceCommand) -> Result<(), AppError> {
    let options = NodeOptions { offline: command.is_local(), ..options_from_environment() };
    if let DeviceCommand::Init { name } = &command {
        let app = DeviceApp::open(dir, options).await?;
        app.data_dir().write_json(DEVICE_FILE, &DeviceInfo { name: name.clone() })?;
        println!("device {}", hex(&app.id().0));
        app.shutdown().await;
        return Ok(());
    }
    let app = DeviceApp::open_existing(dir, options).await?;
    let doc = command.document().map(str::to_owned);
    let result = run_on(&app, command).await.map_err(|error| match (error, doc) {
        (AppError::Command(error), Some(doc)) => AppError::InDocument(doc, error),
        (error, _) => error,
    });
    app.shutdown().await;
    result
}

async fn run_on(app: &DeviceApp, command: DeviceCommand) -> Result<(), AppError> {
    match command {
        DeviceCommand::Init { .. } => unreachable!("handled before opening"),
        DeviceCommand::Create { doc, acceptors } => {
            let tickets = acceptors
                .iter()
                .map(|text| text.parse::<Ticket>().map_err(|error| AppError::BadInput(error.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            // Subscribed first: an acceptor's refusal to host may come before the creation
            // returns, and is told once.
            let events = app.driver().subscribe();
            let handle = app.create_document(&doc, &tickets).await?;
            until_idle_from(app, events, std::slice::from_ref(&handle), Duration::from_secs(30)).await?;
            println!("created {doc} group={}", hex(&handle.group().0));
        }
        DeviceCommand::Invite { doc, role, ttl } => {
            let role = parse_role(&role)?;
            let handle = app.document(&doc)?;
            let code = handle.invite(role, parse_duration(&ttl)?, app.acceptor_tickets(&doc)?).await?;
            until_idle(app, &[handle], Duration::from_secs(30)).await?;
            println!("invite {code}");
        }
        DeviceCommand::Join { code, timeout } => {
            let joined = app.join_reporting(&code, parse_duration(&timeout)?).await?;
            let handle = joined.document;
            if joined.edits_dropped > 0 {
                // The last line stays `joined DOC epoch=E`.
                println!(
                    "dropped {} edit(s) this device made that {} never stored (it had been removed)",
                    joined.edits_dropped,
                    handle.name()
                );
            }
            until_idle(app, std::slice::from_ref(&handle), Duration::from_secs(30)).await?;
            println!("joined {} epoch={}", handle.name(), handle.status().await?.epoch);
        }
        DeviceCommand::Append { doc, text } => app.document(&doc)?.append(&text).await?,
        DeviceCommand::Insert { doc, pos, text } => app.document(&doc)?.insert(pos, &text).await?,
        DeviceCommand::Delete { doc, pos, len } => app.document(&doc)?.delete(pos, len).await?,
        DeviceCommand::Sync { doc, until_idle: _, for_, timeout } => {
            let handles = match &doc {
                Some(name) => vec![app.document(name)?],
                None => app.document_names().iter().map(|name| app.document(name)).collect::<Result<_, _>>()?,
            };
            match for_ {
                Some(duration) => tokio::time::sleep(parse_duration(&duration)?).await,
                None => until_idle(app, &handles, parse_duration(&timeout)?).await?,
            }
            for handle in handles {
                let status = handle.status().await?;
                println!("synced {} epoch={} unsafe={}", handle.name(), status.epoch, status.unsafe_messages);
            }
        }
        DeviceCommand::Cat { doc } => {
            use std::io::Write;
            let text = app.document(&doc)?.text().await?;
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        }
        DeviceCommand::Status { doc } => {
            let status = app.document(&doc)?.status().await?;
            println!("epoch: {}", status.epoch);
            println!("role: {}", status.role.map_or("none (removed)".to_owned(), role_name));
            println!("members: {}", status.members.len());
            println!("acceptors: {}", status.acceptors.len());
            println!("unsafe: {}", status.unsafe_messages);
        }
        DeviceCommand::Members { doc } => {
            let info: DeviceInfo = app.data_dir().read_json(DEVICE_FILE)?;
            for (member, role) in app.document(&doc)?.status().await?.members {
                let me = if member == app.id() {
                    format!(" (this device{})", info.name.as_ref().map(|n| format!(": {n}")).unwrap_or_default())
                } else {
                    String::new()
                };
                println!("{} {}{me}", hex(&member.0), role_name(role));
            }
        }
        DeviceCommand::RemoveMember { doc, member } => {
            let handle = app.document(&doc)?;
            let members: Vec<NodeId> = handle.status().await?.members.into_iter().map(|(id, _)| id).collect();
            let gone = find_id(&members, &member)?;
            handle.remove_member(gone).await?;
            until_idle(app, &[handle], Duration::from_secs(30)).await?;
            println!("member removed {}", hex(&gone.0));
        }
        DeviceCommand::AddAcceptor { doc, ticket } => {
            let ticket: Ticket =
                ticket.parse().map_err(|error: plait_io_iroh::ticket::TicketError| AppError::BadInput(error.to_string()))?;
            let handle = app.document(&doc)?;
            app.add_acceptor_ticket(&doc, &ticket)?;
            let mut acceptors = handle.status().await?.acceptors;
            if acceptors.contains(&ticket.node) {
                // An acceptor that moved: its new address is all that changes, with no commit.
                until_idle(app, &[handle], Duration::from_secs(30)).await?;
                println!("acceptor already in the set, address updated {}", hex(&ticket.node.0));
                return Ok(());
            }
            acceptors.push(ticket.node);
            handle.change_acceptors(acceptors).await?;
            until_idle(app, &[handle], Duration::from_secs(30)).await?;
            println!("acceptor added {}", hex(&ticket.node.0));
        }
        DeviceCommand::RemoveAcceptor { doc, acceptor } => {
            let handle = app.document(&doc)?;
            let acceptors = handle.status().await?.acceptors;
            let gone = find_id(&acceptors, &acceptor)?;
            handle.change_acceptors(acceptors.into_iter().filter(|id| *id != gone).collect()).await?;
            until_idle(app, &[handle], Duration::from_secs(30)).await?;
            println!("acceptor removed {}", hex(&gone.0));
        }
        DeviceCommand::Rotate { doc } => {
            let handle = app.document(&doc)?;
            handle.rotate().await?;
            until_idle(app, std::slice::from_ref(&handle), Duration::from_secs(30)).await?;
            println!("rotated {doc} epoch={}", handle.status().await?.epoch);
        }
        DeviceCommand::Export { doc, loro } => {
            let snapshot = app.document(&doc)?.export_snapshot().await?;
            std::fs::write(&loro, &snapshot).map_err(|error| AppError::BadInput(format!("{}: {error}", loro.display())))?;
            println!("exported {doc} to {} ({} bytes)", loro.display(), snapshot.len());
        }
        DeviceCommand::Watch { doc } => {
            let handle = app.document(&doc)?;
            let mut events = handle.subscribe();
            println!("watching {doc} (Ctrl-C to stop)\n{}", handle.text().await?);
            let stop = crate::shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    event = events.next() => match event {
                        Some(Event::DocumentChanged { id, .. }) => {
                            println!("--- change from {} (#{})\n{}", hex(&id.sender.0[..6]), id.seq, handle.text().await?);
                        }
                        Some(Event::SnapshotImported { covered_messages, .. }) => {
                            println!("--- caught up from a snapshot of {covered_messages} messages\n{}", handle.text().await?);
                        }
                        Some(Event::EpochChanged { epoch, members, .. }) => println!("--- epoch {epoch}, {} members", members.len()),
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        }
    }
    Ok(())
}

/// Runs until every document's local edits are safe, its proposer is idle, and no new update,
/// commit or membership change arrived for `QUIET`. An acceptor refusing to store an edit or to
/// host a document is said on stderr at once (it may take it later: a full one keeps being
/// asked) and named in the error if the edits are still not safe by the timeout.
async fn until_idle(app: &DeviceApp, documents: &[DocumentHandle], timeout: Duration) -> Result<(), AppError> {
    until_idle_from(app, app.driver().subscribe(), documents, timeout).await
}

/// [`until_idle`] from `events`, subscribed before the work it waits for began.
async fn until_idle_from(
    app: &DeviceApp,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    documents: &[DocumentHandle],
    timeout: Duration,
) -> Result<(), AppError> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut last_news = started;
    let mut refusals = Refusals::default();
    loop {
        tokio::select! {
            event = events.recv() => {
                if let Ok(event) = &event {
                    refusals.note(event, documents);
                }
                if matches!(event, Ok(Event::DocumentChanged { .. } | Event::SnapshotImported { .. } | Event::Applied { .. } | Event::EpochChanged { .. } | Event::Welcome { .. } | Event::Joined { .. }) | Err(_)) {
                    last_news = tokio::time::Instant::now();
                }
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let now = tokio::time::Instant::now();
        let mut settled = now.duration_since(last_news) >= QUIET;
        for document in documents {
            let status = document.status().await?;
            settled &= status.unsafe_messages == 0 && status.idle && !status.catching_up;
        }
        if settled {
            return Ok(());
        }
        if now >= deadline {
            let waiting_for = "every edit to be safe and the acceptors to go quiet";
            let mut acceptors = Vec::new();
            for document in documents {
                acceptors.extend(document.status().await?.acceptors);
            }
            if let Some(refused) = refusals.describe() {
                return Err(AppError::Refused(timeout, waiting_for, refused));
            }
            return Err(match unreachable(app, &acceptors) {
                None => AppError::Timeout(timeout, waiting_for),
                Some(unreachable) => AppError::Unreachable(timeout, waiting_for, unreachable),
            });
        }
    }
}

/// What acceptors refused while a command waited: the latest reason of each (at most one entry
/// per acceptor of the documents).
#[derive(Default)]
struct Refusals(std::collections::BTreeMap<NodeId, &'static str>);

impl Refusals {
    /// Notes a refusal about one of `documents`, and says it on stderr the first time.
    fn note(&mut self, event: &Event, documents: &[DocumentHandle]) {
        let (group, acceptor, what, why, next) = match event {
            Event::PostRefused { group, acceptor, reason, .. } => {
                let next =
                    if *reason == PostRefusal::QuotaExceeded { "asking again until it has room" } else { "not asking it again" };
                (group, acceptor, "store an edit of", post_refusal(*reason), next)
            }
            Event::GroupRefused { group, acceptor, reason: GroupRefusal::Full } => {
                (group, acceptor, "host", "full: it hosts as many documents as it may", "asking again at each sync")
            }
            _ => return,
        };
        let Some(document) = documents.iter().find(|document| document.group() == *group) else { return };
        if self.0.insert(*acceptor, why).is_none() {
            eprintln!("warning: acceptor {} refused to {what} {}: {why}; {next}", hex(&acceptor.0[..6]), document.name());
        }
    }

    /// `ID (why), …`, if any acceptor refused.
    fn describe(&self) -> Option<String> {
        let described: Vec<String> = self.0.iter().map(|(acceptor, why)| format!("{} ({why})", hex(&acceptor.0[..6]))).collect();
        (!described.is_empty()).then(|| described.join(", "))
    }
}

/// Why an acceptor would not store an edit, for people.
fn post_refusal(reason: PostRefusal) -> &'static str {
    match reason {
        PostRefusal::QuotaExceeded => "full: the document's quota or the acceptor's budget is used up",
        PostRefusal::TooLarge => "the edit is larger than it stores",
        PostRefusal::StaleEpoch { .. } | PostRefusal::Busy => "asked for the edit again later",
    }
}

/// Which of `acceptors` the links are not connected to, with each one's last error; `None` if
/// every one is connected. (A device syncing talks to every acceptor of its documents.)
fn unreachable(app: &DeviceApp, acceptors: &[NodeId]) -> Option<String> {
    let stats = app.link_stats();
    let described: std::collections::BTreeSet<String> = acceptors
        .iter()
        .filter_map(|acceptor| {
            let peer = stats.peers.get(acceptor);
            if peer.is_some_and(|peer| peer.connected) {
                return None;
            }
            let why = match peer.and_then(|peer| peer.last_error.as_ref()) {
                Some((kind, detail)) => format!("{}: {detail}", kind.name()),
                None => "no connection yet".to_owned(),
            };
            Some(format!("{} ({why})", hex(&acceptor.0[..6])))
        })
        .collect();
    (!described.is_empty()).then(|| described.into_iter().collect::<Vec<_>>().join(", "))
}

/// A device's network switches: `PLAIT_RELAYS=1`, `PLAIT_PUBLIC_LOOKUP=1`, `PLAIT_MDNS=1`
/// (all off by default), and `PLAIT_LISTEN=ADDR` (default `0.0.0.0:0`).
fn options_from_environment() -> NodeOptions {
    let on = |name: &str| std::env::var(name).is_ok_and(|value| value == "1" || value == "true");
    let mut options = NodeOptions::default();
    options.iroh.relays = on("PLAIT_RELAYS");
    options.iroh.public_lookup = on("PLAIT_PUBLIC_LOOKUP");
    options.iroh.mdns = on("PLAIT_MDNS");
    options.iroh.listen = std::env::var("PLAIT_LISTEN").ok().and_then(|text| text.parse().ok()).unwrap_or(ANY_ADDRESS);
    options
}

fn parse_role(text: &str) -> Result<Role, AppError> {
    match text {
        "admin" => Ok(Role::Admin),
        "writer" => Ok(Role::Writer),
        "reader" => Ok(Role::Reader),
        other => Err(AppError::BadInput(format!("unknown role {other:?}: admin, writer or reader"))),
    }
}

fn role_name(role: Role) -> String {
    match role {
        Role::Admin => "admin",
        Role::Writer => "writer",
        Role::Reader => "reader",
    }
    .to_owned()
}

/// `500ms`, `30s`, `10m`, `2h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, AppError> {
    let bad = || AppError::BadInput(format!("bad duration {text:?} (examples: 500ms, 30s, 10m, 2h)"));
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(bad()),
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

fn find_id(candidates: &[NodeId], text: &str) -> Result<NodeId, AppError> {
    let text = text.to_ascii_lowercase();
    let matches: Vec<NodeId> = candidates.iter().copied().filter(|id| hex(&id.0).starts_with(&text)).collect();
    match matches.as_slice() {
        [one] if !text.is_empty() => Ok(*one),
        [] | [_] => Err(AppError::BadInput(format!("no member or acceptor {text}"))),
        _ => Err(AppError::BadInput(format!("{text} matches {} ids: give more of it", matches.len()))),
    }
}
