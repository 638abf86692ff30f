//! The host-app facade: a device node with one handle per document, so an app edits, watches
//! and invites without speaking `Input`/`Effect`. The `plait` binary is built on it.
//!
//! ```no_run
//! # async fn example() -> Result<(), plait_io_iroh::app::AppError> {
//! use plait_io_iroh::app::{DeviceApp, NodeOptions};
//! let app = DeviceApp::open("alice".as_ref(), NodeOptions::default()).await?;
//! let doc = app.document("notes")?;
//! doc.insert(0, "hello").await?;          // local and durable at once
//! let mut changes = doc.subscribe();       // other members' edits as they arrive (`changes_text`)
//! println!("{}", doc.text().await?);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use plait_kernel::mls::Role;
use plait_kernel::{AcceptorSet, Command, CommandError, Config, Device, Event, GroupId, NodeId, ValidConfig};
use plait_store_sqlite::{Store, StoreOptions};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::data_dir::{self, DataDir, DataDirError, NodeKind};
use crate::driver::{Driver, DriverHandle, NotRunning, Rebuild, Timers};
use crate::frames::AddressHint;
use crate::iroh_net::{BindError, IrohNetwork, IrohOptions};
use crate::links::{LinkLimits, Links};
use crate::network::Network;
use crate::ticket::Ticket;

mod events;

pub use events::{DocumentEvents, changes_text, event_group, wait_for};

/// How a node is set up.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// The iroh endpoint.
    pub iroh: IrohOptions,
    /// The link layer.
    pub links: LinkLimits,
    /// The kernel.
    pub config: Config,
    /// Never dial anyone: for work on the local store alone (reading the text, editing offline).
    /// Sends are dropped; the kernel makes them again at the next start that is online. Without
    /// it a short-lived process would also wait, as it stops, for the connections it had begun
    /// to open (QUIC's close waits up to ~3 s for a handshake in flight).
    pub offline: bool,
}

/// What can go wrong for an app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The SQLite store.
    #[error("store: {0}")]
    Store(#[from] plait_store_sqlite::StoreError),
    /// The network.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The node refused a command on the named document (as the command line reports it).
    #[error("{0}: {1}")]
    InDocument(String, CommandError),
    /// The node stopped (see its status).
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
    /// No document by that name on this device.
    #[error("no document named {0:?} on this device")]
    UnknownDocument(String),
    /// A document by that name exists already.
    #[error("a document named {0:?} exists already")]
    DocumentExists(String),
    /// A ticket or invite that does not parse.
    #[error("{0}")]
    BadInput(String),
    /// The invite's lifetime is over (by the inviter's clock, give or take `INVITE_CLOCK_SKEW_MS`).
    #[error("the invite expired: ask for a new one")]
    InviteExpired,
    /// Every acceptor of the invite said, for `INVITE_UNKNOWN_GRACE` after joining began, that it
    /// holds no mailbox for it.
    #[error("no acceptor of the invite knows it: it expired, or the code is wrong; ask for a new one")]
    InviteUnknown,
    /// The device was opened offline (`NodeOptions::offline`) and the call needs the network.
    #[error("opened offline: {0} needs the network")]
    Offline(&'static str),
    /// The node took a command without telling what it made (a bug in Plait).
    #[error("the node took the command but did not tell {0} (a bug: please report it)")]
    Untold(&'static str),
    /// Nothing happened in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// Nothing happened in time, and these acceptors could not be reached (ids and last errors).
    #[error("timed out after {0:?} waiting for {1}; unreachable: {2}")]
    Unreachable(Duration, &'static str, String),
    /// Nothing happened in time, and these acceptors refused to store edits (ids and why).
    #[error("timed out after {0:?} waiting for {1}; refused by: {2}")]
    Refused(Duration, &'static str, String),
}

/// What a device remembers about one document, beside the store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DocumentEntry {
    /// The group, hex.
    pub group: String,
    /// Tickets of acceptors this device was told about.
    pub acceptors: Vec<String>,
}

const DOCUMENTS_FILE: &str = "documents.json";

/// A running device node.
pub struct DeviceApp {
    data: DataDir,
    handle: DriverHandle<Device>,
    links: Links<IrohNetwork>,
    network: IrohNetwork,
    config: ValidConfig,
    documents: std::sync::Mutex<BTreeMap<String, DocumentEntry>>,
    task: tokio::task::JoinHandle<Result<(), crate::driver::DriverError>>,
    offline: bool,
}

/// A kernel node running on a data directory.
pub(crate) struct Booted<K> {
    pub(crate) handle: DriverHandle<K>,
    pub(crate) links: Links<IrohNetwork>,
    pub(crate) network: IrohNetwork,
    pub(crate) task: tokio::task::JoinHandle<Result<(), crate::driver::DriverError>>,
    pub(crate) config: ValidConfig,
}

/// Starts a kernel node of either kind on a data directory.
pub(crate) async fn boot<K: plait_kernel::Node + Send + 'static>(
    data: &DataDir,
    secret_key: [u8; 32],
    options: &NodeOptions,
    mut make: impl FnMut(ValidConfig, NodeId, plait_kernel::Restored, u64) -> (K, plait_kernel::Outputs) + Send + 'static,
) -> Result<Booted<K>, AppError> {
    let config = options.config.clone().validate().map_err(|error| AppError::Config(error.to_string()))?;
    let me = data_dir::node_id(&secret_key);
    let store_options = StoreOptions { prefill_log: !options.offline, ..StoreOptions::default() };
    let mut store = Store::open_with(data.database(), me, store_options).await?;
    let restored = store.load().await?;
    let network = IrohNetwork::bind(secret_key, options.iroh.clone()).await?;
    let seed = data_dir::boot_seed();
    let (node, first) = make(config.clone(), me, restored, seed);
    // A node built again (after a contained panic: `Outputs::rebuild_from_storage`) draws a
    // fresh boot seed, as a restarted process does.
    let node_config = config.clone();
    let rebuild: Rebuild<K> = Box::new(move |restored| make(node_config.clone(), me, restored, data_dir::boot_seed()));
    let timers = if options.offline { Timers::Held } else { Timers::Fed };
    let parts = (Clock::wall(), network.clone(), store);
    let (handle, links, task) = Driver::start_with(node, first, parts, options.links.clone(), seed, (timers, Some(rebuild)));
    Ok(Booted { handle, links, network, task, config })
}

impl DeviceApp {
    /// Opens the device in `dir` (making its keys on first use) and starts it.
    pub async fn open(dir: &Path, options: NodeOptions) -> Result<DeviceApp, AppError> {
        let data = DataDir::open(dir, NodeKind::Device)?;
        let secret_key = data.secret_key()?;
        DeviceApp::start(data, secret_key, options).await
    }

    /// Opens a device that must exist already.
    pub async fn open_existing(dir: &Path, options: NodeOptions) -> Result<DeviceApp, AppError> {
        let data = DataDir::open(dir, NodeKind::Device)?;
        let secret_key = data.existing_secret_key()?;
        DeviceApp::start(data, secret_key, options).await
    }

    async fn start(data: DataDir, secret_key: [u8; 32], mut options: NodeOptions) -> Result<DeviceApp, AppError> {
        if options.offline {
            options.iroh.relays = false;
            options.iroh.public_lookup = false;
            options.iroh.mdns = false;
        }
        let identity = data_dir::identity_seed(&secret_key);
        let Booted { handle, links, network, task, config } =
            boot(&data, secret_key, &options, move |config, me, restored, seed| {
                Device::new(config, me, identity, seed, restored)
            })
            .await?;
        let documents: BTreeMap<String, DocumentEntry> = data.read_json(DOCUMENTS_FILE)?;
        let documents = std::sync::Mutex::new(documents);
        let app = DeviceApp { data, handle, links, network, config, documents, task, offline: options.offline };
        app.tell_network_about_acceptors();
        Ok(app)
    }

    /// This device's id.
    pub fn id(&self) -> NodeId {
        self.network.id()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    /// The link layer's view of each peer: connected or not, and the last error.
    pub fn link_stats(&self) -> crate::links::LinkStats {
        self.links.stats()
    }

    /// The driver, for what the facade does not cover.
    pub fn driver(&self) -> &DriverHandle<Device> {
        &self.handle
    }

    /// Names of the documents on this device.
    pub fn document_names(&self) -> Vec<String> {
        self.documents.lock().expect("documents lock").keys().cloned().collect()
    }

    /// The document called `name`.
    pub fn document(&self, name: &str) -> Result<DocumentHandle, AppError> {
        let documents = self.documents.lock().expect("documents lock");
        let entry = documents.get(name).ok_or_else(|| AppError::UnknownDocument(name.to_owned()))?;
        let group = parse_group(&entry.group)?;
        Ok(DocumentHandle { name: name.to_owned(), group, handle: self.handle.clone(), acceptors_max: self.config.acceptors_max })
    }

    /// Creates a document served by these acceptors, with this device as its only member and admin.
    pub async fn create_document(&self, name: &str, acceptors: &[Ticket]) -> Result<DocumentHandle, AppError> {
        if self.documents.lock().expect("documents lock").contains_key(name) {
            return Err(AppError::DocumentExists(name.to_owned()));
        }
        let ids = acceptors.iter().map(|ticket| ticket.node).collect();
        let set = AcceptorSet::new(ids, self.config.acceptors_max)
            .ok_or_else(|| AppError::BadInput("between 1 and acceptors_max acceptors".into()))?;
        let nonce = data_dir::boot_seed();
        let told = self.handle.command_telling(Command::CreateGroup { acceptors: set, nonce, rotation_interval_ms: 0 }).await?;
        let group = made_by(told, "the group it created", |event| match event {
            Event::GroupCreated { group, .. } => Some(group),
            _ => None,
        })?;
        self.handle.durable().await?;
        self.remember(name, group, acceptors)?;
        self.document(name)
    }

    /// Joins a document with an invite code from [`DocumentHandle::invite`]; returns once an
    /// admin device has added this one (it must be online meanwhile). On a timeout the device
    /// goes on redeeming the code whenever it is online (it is on disk); `join` again with the
    /// same code waits for it, or names the document at once if the device got in meanwhile.
    pub async fn join(&self, code: &str, timeout: Duration) -> Result<DocumentHandle, AppError> {
        Ok(self.join_reporting(code, timeout).await?.document)
    }

    /// [`DeviceApp::join`], also telling how many of its own edits this device dropped if it was
    /// removed from the document before and is now invited back (see [`Joined`]).
    pub async fn join_reporting(&self, code: &str, timeout: Duration) -> Result<Joined, AppError> {
        let invite: Invite = code.parse()?;
        let inner = plait_kernel::invite::InviteCode::parse(&invite.code);
        // The device keeps redeeming a code across restarts, so an earlier `join` that stopped
        // waiting may have got in since (at any later start of this device), even if the invite
        // expired meanwhile.
        if let Ok(inner) = &inner
            && let Some(group) = self.joined_through(inner.mailbox).await?
        {
            return Ok(Joined { document: self.name_joined(&invite, group)?, edits_dropped: 0 });
        }
        if self.offline {
            return Err(AppError::Offline("joining"));
        }
        let usable_until = invite.expires_at_ms.saturating_add(INVITE_CLOCK_SKEW_MS);
        let left = usable_until.saturating_sub(wall_clock_ms());
        if left == 0 {
            return Err(AppError::InviteExpired);
        }
        if self.documents.lock().expect("documents lock").contains_key(&invite.name) {
            // The name is free again only if this device was removed from that document: an
            // admin may invite it back, and the node then drops its old copy of the group
            // (`Event::GroupForgotten`). A device that has not heard of its removal yet learns
            // of it at its next sync.
            let held = self.document(&invite.name)?.status().await;
            if !matches!(held, Ok(DocumentStatus { role: None, .. }) | Err(AppError::Command(CommandError::UnknownGroup(_)))) {
                return Err(AppError::DocumentExists(invite.name));
            }
        }
        for ticket in &invite.acceptors {
            self.network.learn(ticket.node, &ticket.addresses);
        }
        let ids = invite.acceptors.iter().map(|ticket| ticket.node).collect();
        let set = AcceptorSet::new(ids, self.config.acceptors_max)
            .ok_or_else(|| AppError::BadInput("the invite names no acceptors".into()))?;
        let mailbox = inner.map_err(|error| AppError::Command(CommandError::InvalidInvite(error.to_string())))?.mailbox;
        let mut events = self.handle.subscribe();
        let told = self.handle.command_telling(Command::AcceptInvite { code: invite.code.clone(), acceptors: set }).await?;
        refusal(&told)?;
        let expires_first = Duration::from_millis(left) < timeout;
        let began = std::time::Instant::now();
        let deadline = began + timeout.min(Duration::from_millis(left));
        // A device invited back drops its old copy of the group first (`GroupForgotten`, told
        // with the `Joined`). One entry per group this device held: bounded by `groups_max`.
        let mut forgotten = BTreeMap::new();
        loop {
            // Events are the whole node's: another join's `Joined`, or another command's refusal,
            // may come meanwhile. A refusal of this join is about an invite; a `Joined` is this
            // join's if the group it names was joined through this code's mailbox.
            let waited = wait_for(
                &mut events,
                deadline.saturating_duration_since(std::time::Instant::now()),
                "an admin to add this device",
                |event| match event {
                    Event::Joined { .. } => Some(Ok(())),
                    Event::GroupForgotten { group, unsafe_dropped } => {
                        forgotten.insert(*group, *unsafe_dropped);
                        None
                    }
                    Event::CommandFailed { error: error @ (CommandError::InvalidInvite(_) | CommandError::InviteExpired) } => {
                        Some(Err(AppError::Command(error.clone())))
                    }
                    Event::InviteUnknown { mailbox: unknown }
                        if *unknown == mailbox && began.elapsed() >= INVITE_UNKNOWN_GRACE =>
                    {
                        Some(Err(AppError::InviteUnknown))
                    }
                    _ => None,
                },
            )
            .await;
            // A subscriber that fell behind may have missed the `Joined`: look before giving up.
            if matches!(waited, Ok(Ok(())) | Err(AppError::Timeout(..)))
                && let Some(group) = self.joined_through(mailbox).await?
            {
                let edits_dropped = forgotten.get(&group).copied().unwrap_or(0);
                return Ok(Joined { document: self.name_joined(&invite, group)?, edits_dropped });
            }
            match waited {
                Ok(Ok(())) => {}
                Err(AppError::Timeout(..)) if expires_first => return Err(AppError::InviteExpired),
                other => other??,
            }
        }
    }

    /// The group this device joined through an invite's mailbox, if it did.
    async fn joined_through(&self, mailbox: plait_kernel::invite::Mailbox) -> Result<Option<GroupId>, AppError> {
        let through = move |device: &Device| device.groups().find(|g| g.joined_through() == Some(mailbox)).map(|g| g.id());
        Ok(self.handle.inspect(through).await?)
    }

    /// Names `group`, which this device joined through `invite`, as the invite says (once: a
    /// second `join` with the same code finds the name taken by the same group).
    fn name_joined(&self, invite: &Invite, group: GroupId) -> Result<DocumentHandle, AppError> {
        let named = self.documents.lock().expect("documents lock").get(&invite.name).map(|entry| entry.group.clone());
        match named {
            Some(named) if parse_group(&named)? != group => return Err(AppError::DocumentExists(invite.name.clone())),
            // Joined again after a removal, perhaps through other acceptors by now.
            Some(_) => invite.acceptors.iter().try_for_each(|ticket| self.add_acceptor_ticket(&invite.name, ticket))?,
            None => self.remember(&invite.name, group, &invite.acceptors)?,
        }
        self.document(&invite.name)
    }

    /// Records that `ticket` serves the document (for `add-acceptor`), in place of any older
    /// ticket of the same acceptor (one that moved).
    pub fn add_acceptor_ticket(&self, name: &str, ticket: &Ticket) -> Result<(), AppError> {
        let mut documents = self.documents.lock().expect("documents lock");
        let entry = documents.get_mut(name).ok_or_else(|| AppError::UnknownDocument(name.to_owned()))?;
        entry.acceptors.retain(|text| text.parse::<Ticket>().map_or(true, |old| old.node != ticket.node));
        entry.acceptors.push(ticket.to_string());
        self.data.write_json(DOCUMENTS_FILE, &*documents)?;
        drop(documents);
        self.tell_network_about_acceptors();
        Ok(())
    }

    /// The tickets of the acceptors this device knows for a document.
    pub fn acceptor_tickets(&self, name: &str) -> Result<Vec<Ticket>, AppError> {
        let documents = self.documents.lock().expect("documents lock");
        let entry = documents.get(name).ok_or_else(|| AppError::UnknownDocument(name.to_owned()))?;
        Ok(entry.acceptors.iter().filter_map(|text| text.parse().ok()).collect())
    }

    /// Stops the node: what was persisted stays, the rest the kernel redoes at the next start.
    pub async fn shutdown(self) {
        self.handle.stop().await;
        let _ = self.task.await;
        self.network.close().await;
    }

    fn remember(&self, name: &str, group: GroupId, acceptors: &[Ticket]) -> Result<(), AppError> {
        let mut documents = self.documents.lock().expect("documents lock");
        let entry = DocumentEntry { group: hex(&group.0), acceptors: acceptors.iter().map(Ticket::to_string).collect() };
        documents.insert(name.to_owned(), entry);
        self.data.write_json(DOCUMENTS_FILE, &*documents)?;
        drop(documents);
        self.tell_network_about_acceptors();
        Ok(())
    }

    /// Every acceptor ticket this device knows goes into the address book and into the hints
    /// it tells acceptors (so acceptors can reach each other without a discovery service).
    /// Offline, the address book stays empty: every dial fails at once for want of an address.
    fn tell_network_about_acceptors(&self) {
        if self.offline {
            return;
        }
        let documents = self.documents.lock().expect("documents lock");
        let mut hints: BTreeMap<NodeId, Vec<std::net::SocketAddr>> = BTreeMap::new();
        for ticket in documents.values().flat_map(|entry| entry.acceptors.iter()).filter_map(|text| text.parse::<Ticket>().ok()) {
            self.network.learn(ticket.node, &ticket.addresses);
            hints.entry(ticket.node).or_default().extend(ticket.addresses);
        }
        let hints = hints
            .into_iter()
            .take(crate::frames::HINT_NODES_MAX)
            .map(|(node, mut addresses)| {
                addresses.truncate(crate::frames::HINT_ADDRESSES_MAX);
                AddressHint { node, addresses }
            })
            .collect();
        self.links.set_hints(hints);
    }
}

/// One document on a running device.
#[derive(Clone)]
pub struct DocumentHandle {
    name: String,
    group: GroupId,
    handle: DriverHandle<Device>,
    acceptors_max: usize,
}

/// A document joined through an invite ([`DeviceApp::join_reporting`]).
pub struct Joined {
    /// The document.
    pub document: DocumentHandle,
    /// Edits of this device's own dropped because the group never stored them: it was removed
    /// from the document before, and wrote them after the removal or had them unacknowledged
    /// when it came. 0 for a first join (and if the events telling it were missed).
    pub edits_dropped: usize,
}

/// A document's state on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentStatus {
    /// The MLS epoch.
    pub epoch: u64,
    /// This device's role (`None` once removed).
    pub role: Option<Role>,
    /// The members and their roles.
    pub members: Vec<(NodeId, Role)>,
    /// The acceptors.
    pub acceptors: Vec<NodeId>,
    /// This device's edits not yet stored by a write quorum of acceptors.
    pub unsafe_messages: usize,
    /// Whether the device has nothing left to do for the document: no proposal in flight, and
    /// its record of which edits are safe is on disk (so a restart would not post them again).
    pub idle: bool,
    /// Whether it is fetching a snapshot because it lacks messages a compaction covers.
    pub catching_up: bool,
}

impl DocumentHandle {
    /// The document's local name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Inserts `text` at `position` (characters); durable when this returns.
    pub async fn insert(&self, position: usize, text: &str) -> Result<(), AppError> {
        self.edit(position, 0, text).await
    }

    /// Deletes `length` characters at `position`; durable when this returns.
    pub async fn delete(&self, position: usize, length: usize) -> Result<(), AppError> {
        self.edit(position, length, "").await
    }

    /// Appends `text`; durable when this returns.
    pub async fn append(&self, text: &str) -> Result<(), AppError> {
        let length = self.text().await?.chars().count();
        self.edit(length, 0, text).await
    }

    /// Replaces `delete` characters at `position` with `insert`; durable when this returns.
    pub async fn edit(&self, position: usize, delete: usize, insert: &str) -> Result<(), AppError> {
        self.run(Command::Edit { group: self.group, position, delete, insert: insert.to_owned() }).await
    }

    /// The text now, with every update applied so far: another member's may not be durable on
    /// this device yet (it is at an acceptor; see [`DriverHandle::peek`]), so an app shows it
    /// as soon as `DocumentChanged` says it came.
    pub async fn text(&self) -> Result<String, AppError> {
        let group = self.group;
        Ok(self.handle.peek(move |device| device.group(group).and_then(|view| view.text())).await?.unwrap_or_default())
    }

    /// A Loro snapshot of the document, which any Loro client can open.
    pub async fn export_snapshot(&self) -> Result<Vec<u8>, AppError> {
        let group = self.group;
        let snapshot = self.handle.inspect(move |device| device.group(group).and_then(|view| view.snapshot())).await?;
        snapshot.ok_or(AppError::Command(CommandError::UnknownGroup(group)))
    }

    /// Epoch, role, members, acceptors and unsafe edits.
    pub async fn status(&self) -> Result<DocumentStatus, AppError> {
        let group = self.group;
        let status = self
            .handle
            .inspect(move |device| {
                device.group(group).map(|view| DocumentStatus {
                    epoch: view.epoch().unwrap_or(0),
                    role: view.role(),
                    members: view.members(),
                    acceptors: view.acceptors().members().to_vec(),
                    unsafe_messages: view.unsafe_messages(),
                    idle: view.is_idle() && view.is_safe_mark_written(),
                    catching_up: view.is_catching_up(),
                })
            })
            .await?;
        status.ok_or(AppError::Command(CommandError::UnknownGroup(group)))
    }

    /// Other members' changes (and this document's other events) from now on.
    pub fn subscribe(&self) -> DocumentEvents {
        DocumentEvents::new(self.group, self.handle.subscribe())
    }

    /// Opens an invite (admins); the returned code carries the acceptors' tickets.
    pub async fn invite(&self, role: Role, lifetime: Duration, acceptors: Vec<Ticket>) -> Result<String, AppError> {
        let lifetime_ms = lifetime.as_millis() as u64;
        let told = self.handle.command_telling(Command::CreateInvite { group: self.group, lifetime_ms, role }).await?;
        let code = made_by(told, "the invite it created", |event| match event {
            Event::InviteCreated { code, .. } => Some(code),
            _ => None,
        })?;
        self.handle.durable().await?;
        let expires_at_ms = wall_clock_ms().saturating_add(lifetime_ms);
        Ok(Invite { code, name: self.name.clone(), acceptors, expires_at_ms }.to_string())
    }

    /// Removes a member (admins).
    pub async fn remove_member(&self, member: NodeId) -> Result<(), AppError> {
        self.run(Command::RemoveMember { group: self.group, member }).await
    }

    /// Commits a fresh key for this device.
    pub async fn rotate(&self) -> Result<(), AppError> {
        self.run(Command::RotateKeys { group: self.group }).await
    }

    /// Hands the document to a new acceptor set (admins).
    pub async fn change_acceptors(&self, acceptors: Vec<NodeId>) -> Result<(), AppError> {
        let set = AcceptorSet::new(acceptors, self.acceptors_max)
            .ok_or_else(|| AppError::BadInput("between 1 and acceptors_max acceptors".into()))?;
        self.run(Command::ChangeAcceptors { group: self.group, acceptors: set }).await
    }

    /// Sends a command; returns its refusal, or `Ok` once its writes are durable. Concurrent
    /// edits share one commit.
    async fn run(&self, command: Command) -> Result<(), AppError> {
        let told = self.handle.command_telling(command).await?;
        refusal(&told)?;
        self.handle.durable().await?;
        Ok(())
    }
}

/// The refusal among the events a command told, if any.
fn refusal(told: &[Event]) -> Result<(), AppError> {
    match told.iter().find_map(|event| match event {
        Event::CommandFailed { error } => Some(error),
        _ => None,
    }) {
        Some(error) => Err(AppError::Command(error.clone())),
        None => Ok(()),
    }
}

/// What a command that the node took made (`what`, as `made` finds it among the events it
/// told), or its refusal.
fn made_by<T>(told: Vec<Event>, what: &'static str, made: impl Fn(Event) -> Option<T>) -> Result<T, AppError> {
    refusal(&told)?;
    told.into_iter().find_map(made).ok_or(AppError::Untold(what))
}

/// An invite as handed to a joiner: the kernel's code, the document's name and its acceptors.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Invite {
    code: String,
    name: String,
    acceptors: Vec<Ticket>,
    /// When the acceptors stop honouring it, by the inviter's clock (ms since the Unix epoch).
    expires_at_ms: u64,
}

/// How far the inviter's and the joiner's clocks may disagree before a joiner calls an invite
/// expired on its own.
pub const INVITE_CLOCK_SKEW_MS: u64 = 60_000;

/// How long a joiner believes acceptors that say they hold no mailbox for its invite before it
/// gives up: an admin's open may still be on its way when the code is handed over at once (the
/// command line's `invite` prints the code only once its acceptors are idle).
pub const INVITE_UNKNOWN_GRACE: Duration = Duration::from_secs(5);

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

const INVITE_PREFIX: &str = "plaitinvite1";

impl std::fmt::Display for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ticket::encode_text(INVITE_PREFIX, self))
    }
}

impl std::str::FromStr for Invite {
    type Err = AppError;

    fn from_str(text: &str) -> Result<Invite, AppError> {
        let bad = || AppError::BadInput("not a Plait invite code (it starts with plaitinvite1)".into());
        let invite: Invite = crate::ticket::decode_text(INVITE_PREFIX, text).ok_or_else(bad)?;
        let valid_name = !invite.name.is_empty() && invite.name.len() <= 128;
        if !valid_name || invite.acceptors.is_empty() || invite.acceptors.len() > 64 {
            return Err(bad());
        }
        Ok(invite)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_group(text: &str) -> Result<GroupId, AppError> {
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .map_err(|_| AppError::BadInput(format!("bad group id {text}")))?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| AppError::BadInput(format!("bad group id {text}")))?;
    Ok(GroupId(bytes))
}
