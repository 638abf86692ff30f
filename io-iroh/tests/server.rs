//! Bad input against a live acceptor: wrong ALPN, garbage, unknown and oversized frames, one
//! peer opening many connections; bad invite codes and a data directory from a newer Plait at
//! the command line. The server keeps serving everyone else throughout. And a peer that vanishes
//! without a word is found dead within the idle timeout.

use std::process::Command;
use std::time::Duration;

use iroh::{Endpoint, EndpointAddr, TransportAddr};
use plait_io_iroh::Network;
use plait_io_iroh::app::{DeviceApp, DocumentHandle, DocumentStatus, NodeOptions};
use plait_io_iroh::iroh_net::{ALPN, IrohNetwork, IrohOptions, bare_endpoint};
use plait_io_iroh::links::{LinkLimits, Links};
use plait_io_iroh::server::AcceptorServer;
use plait_io_iroh::ticket::Ticket;
use plait_kernel::faults;
use plait_kernel::mls::Role;
use tokio::io::AsyncWriteExt;

const PLAIT: &str = env!("CARGO_BIN_EXE_plait");

async fn endpoint(alpn: &[u8], key: u8) -> Endpoint {
    bare_endpoint([key; 32], alpn, &IrohOptions::default()).await.expect("endpoint")
}

fn address(ticket: &Ticket) -> EndpointAddr {
    let key = iroh::PublicKey::from_bytes(&ticket.node.0).expect("key");
    EndpointAddr::from_parts(key, ticket.addresses.iter().copied().map(TransportAddr::Ip))
}

/// A device can still create a document on the acceptors and have its edit stored.
async fn still_serves(root: &std::path::Path, name: &str, tickets: &[Ticket]) {
    let device = DeviceApp::open(&root.join(name), NodeOptions::default()).await.expect("device");
    let doc = device.create_document("doc", tickets).await.expect("create");
    doc.append("still served").await.expect("edit");
    let mut events = doc.subscribe();
    while doc.status().await.expect("status").unsafe_messages > 0 {
        tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("the edit becomes safe");
    }
    device.shutdown().await;
}

/// `count` acceptors in `root/a0`, `root/a1`, ….
async fn start_acceptors(root: &std::path::Path, count: usize) -> Vec<AcceptorServer> {
    let mut servers = Vec::new();
    for index in 0..count {
        servers.push(AcceptorServer::start(&root.join(format!("a{index}")), NodeOptions::default()).await.expect("acceptor"));
    }
    servers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_acceptor_survives_bad_peers_and_keeps_serving() {
    let root = tempfile::tempdir().expect("temporary folder");
    let servers = start_acceptors(root.path(), 3).await;
    let tickets: Vec<Ticket> = servers.iter().map(AcceptorServer::ticket).collect();
    let target = address(&tickets[0]);

    // A wrong ALPN is refused in the handshake.
    let stranger = endpoint(b"not-plait/1", 1).await;
    assert!(stranger.connect(target.clone(), b"not-plait/1").await.is_err());

    // Garbage inside a valid frame is a kernel rejection; an unknown tag and an oversized frame
    // close the link. Each from its own peer.
    let garbage_kernel_frame: &[u8] = &[0, 0, 0, 5, 0, 1, 0xff, 0xff, 0xff]; // tag, version 1, garbage
    let unknown_tag: &[u8] = &[0, 0, 0, 3, 9, 1, 2];
    let oversized: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0];
    for (key, bytes) in [(2u8, garbage_kernel_frame), (3, unknown_tag), (4, oversized)] {
        let rogue = endpoint(ALPN, key).await;
        let connection = rogue.connect(target.clone(), ALPN).await.expect("the handshake succeeds");
        let (mut send, _recv) = connection.open_bi().await.expect("a stream");
        send.write_all(bytes).await.expect("write");
        let _ = send.flush().await;
        // The link closes (or stays, for the kernel-level garbage) on the server's side.
        let _ = tokio::time::timeout(Duration::from_millis(500), connection.closed()).await;
    }

    // One peer opening many connections gets a bounded number of links.
    let greedy = endpoint(ALPN, 5).await;
    let mut connections = Vec::new();
    for _ in 0..12 {
        let connection = greedy.connect(target.clone(), ALPN).await.expect("connect");
        let (mut send, recv) = connection.open_bi().await.expect("a stream");
        send.write_all(garbage_kernel_frame).await.expect("write");
        connections.push((connection, send, recv));
    }

    still_serves(root.path(), "device", &tickets).await;

    let metrics = http_metrics(&servers[0]).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    assert!(value("plait_failed_handshakes_total ") >= 1.0, "wrong ALPN counted");
    assert!(value("plait_rejections_total{reason=\"malformed\"} ") >= 1.0, "garbage counted by the kernel:\n{metrics}");
    assert!(value("plait_link_errors_total{kind=\"protocol\"} ") >= 2.0, "unknown tag and oversized frame counted");
    assert!(value("plait_links_refused_total ") >= 1.0, "links beyond links_per_peer_max refused");
    assert!(value("plait_stored_messages ") >= 1.0);
    drop(connections);
    for server in servers {
        server.shutdown().await;
    }
}

async fn http_metrics(server: &AcceptorServer) -> String {
    use tokio::io::AsyncReadExt;
    let address = server.serve_http("127.0.0.1:0".parse().expect("address")).await.expect("http");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

fn plait(args: &[&str]) -> std::process::Output {
    Command::new(PLAIT).args(args).output().expect("run plait")
}

#[test]
fn bad_invite_codes_and_a_newer_data_directory_are_clear_errors() {
    let root = tempfile::tempdir().expect("temporary folder");
    let device = root.path().join("device");
    let device = device.to_str().expect("utf-8 path");
    assert!(plait(&["device", "--data-dir", device, "init"]).status.success());
    for code in ["", "hello", "plaitinvite1", "plaitinvite1aaaa"] {
        let output = plait(&["device", "--data-dir", device, "join", code, "--timeout", "1s"]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not a Plait invite code"), "{code:?}: {stderr}");
    }
    // An expired invite is told apart from a slow admin.
    let expired = plait_io_iroh::ticket::encode_text(
        "plaitinvite1",
        &(
            "code".to_owned(),
            "doc".to_owned(),
            vec![Ticket { node: plait_kernel::NodeId([7; 32]), addresses: Vec::new() }],
            1_000u64,
        ),
    );
    let output = plait(&["device", "--data-dir", device, "join", &expired, "--timeout", "5s"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the invite expired"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = plait(&["device", "--data-dir", device, "cat", "nothing"]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("no document named"));

    // A database a newer Plait migrated is refused, and left as it was.
    let database = root.path().join("device/node.sqlite");
    let newer = plait_store_sqlite::schema_version_supported() + 1;
    rusqlite::Connection::open(&database)
        .expect("open with rusqlite")
        .execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?1, 'from the future', 1, x'00', 0)",
            [newer],
        )
        .expect("pretend a newer Plait migrated the file");
    let before = std::fs::read(&database).expect("read");
    let output = plait(&["device", "--data-dir", device, "status", "doc"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("newer"), "{stderr}");
    assert_eq!(std::fs::read(&database).expect("read"), before);

    // A second process on the same data directory is refused while the first holds it.
    let acceptor = root.path().join("acceptor");
    let mut first = Command::new(PLAIT)
        .args(["acceptor", "--data-dir", acceptor.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    // Wait for the ready line (the lock is taken before it is printed).
    let mut stdout = first.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\n") {
        std::io::Read::read_exact(&mut stdout, &mut byte).expect("ready line");
        seen.push(byte[0]);
    }
    first.stdout = Some(stdout);
    let output = plait(&["acceptor", "--data-dir", acceptor.to_str().expect("utf-8")]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("in use"));

    // SIGTERM stops it cleanly.
    let pid = first.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let output = first.wait_with_output().expect("stops");
    assert!(output.status.success(), "{:?}", output.status);
    assert!(String::from_utf8_lossy(&output.stdout).contains("stopped"));
}

#[tokio::test]
async fn an_acceptor_listening_on_every_interface_names_reachable_addresses_in_its_ticket() {
    let root = tempfile::tempdir().expect("temporary folder");
    let mut options = NodeOptions::default();
    options.iroh.listen = "0.0.0.0:0".parse().expect("address");
    let server = AcceptorServer::start(root.path(), options).await.expect("acceptor");
    let ticket = server.ticket();
    let port = ticket.addresses[0].port();
    assert_eq!(ticket.addresses[0], std::net::SocketAddr::from(([127, 0, 0, 1], port)), "loopback first");
    assert!(ticket.addresses.iter().all(|address| !address.ip().is_unspecified() && address.port() == port), "{ticket:?}");
    let written = std::fs::read_to_string(root.path().join("ticket")).expect("DIR/ticket");
    assert_eq!(written.trim(), ticket.to_string());
    server.shutdown().await;
}

/// A well-formed invite whose mailbox no acceptor holds (it expired there, or the code is wrong)
/// is told apart from a slow admin: the joiner gives up once every acceptor has said so for
/// `INVITE_UNKNOWN_GRACE`, long before its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_no_acceptor_knows_is_a_clear_error() {
    let root = tempfile::tempdir().expect("temporary folder");
    let servers = start_acceptors(root.path(), 2).await;
    let tickets: Vec<Ticket> = servers.iter().map(AcceptorServer::ticket).collect();
    let code = plait_kernel::invite::InviteCode::generate(&mut plait_kernel::rng::NodeRng::from_seed(7)).to_text();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    let invite = plait_io_iroh::ticket::encode_text("plaitinvite1", &(code, "doc".to_owned(), tickets, now_ms + 600_000));

    let device = DeviceApp::open(&root.path().join("joiner"), NodeOptions::default()).await.expect("device");
    let joined = device.join(&invite, Duration::from_secs(60)).await;
    assert!(matches!(joined, Err(plait_io_iroh::app::AppError::InviteUnknown)), "{:?}", joined.err());
    device.shutdown().await;
    for server in servers {
        server.shutdown().await;
    }
}

/// A device refuses an acceptor's data directory and the other way round, whatever else is in it;
/// before, each opened the other's store and mixed their records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kind_of_node_refuses_the_other_kinds_data_directory() {
    let root = tempfile::tempdir().expect("temporary folder");
    let (acceptor_dir, device_dir) = (root.path().join("acceptor"), root.path().join("device"));
    AcceptorServer::start(&acceptor_dir, NodeOptions::default()).await.expect("acceptor").shutdown().await;
    DeviceApp::open(&device_dir, NodeOptions::default()).await.expect("device").shutdown().await;

    let refused = DeviceApp::open(&acceptor_dir, NodeOptions::default()).await.err().expect("refused");
    assert!(refused.to_string().contains("is the data directory of an acceptor; a device needs"), "{refused}");
    let refused = AcceptorServer::start(&device_dir, NodeOptions::default()).await.err().expect("refused");
    assert!(refused.to_string().contains("is the data directory of a device; an acceptor needs"), "{refused}");

    // A directory from before the `kind` file is told by its other files.
    std::fs::remove_file(acceptor_dir.join("kind")).expect("remove");
    assert!(DeviceApp::open(&acceptor_dir, NodeOptions::default()).await.is_err());
    AcceptorServer::start(&acceptor_dir, NodeOptions::default()).await.expect("the acceptor again").shutdown().await;
    assert_eq!(std::fs::read_to_string(acceptor_dir.join("kind")).expect("written back").trim(), "acceptor");
}

/// An edit the node refuses fails alone: another edit handled at the same time, which the node
/// took, returns `Ok` (each used to read every refusal told while it waited, so it failed too
/// though it had been applied, and an app that retried it would have written it twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_does_not_fail_another_made_at_the_same_time() {
    let root = tempfile::tempdir().expect("temporary folder");
    let servers = start_acceptors(root.path(), 1).await;
    let tickets: Vec<Ticket> = servers.iter().map(AcceptorServer::ticket).collect();
    let device = DeviceApp::open(&root.path().join("d"), NodeOptions::default()).await.expect("device");
    let doc = device.create_document("doc", &tickets).await.expect("create");
    let (refused, taken) = tokio::join!(doc.insert(5, "beyond the end"), doc.insert(0, "hello"));
    assert!(
        matches!(refused, Err(plait_io_iroh::app::AppError::Command(plait_kernel::CommandError::Document(_)))),
        "the edit out of range: {refused:?}"
    );
    taken.expect("the edit the node took");
    assert_eq!(doc.text().await.expect("text"), "hello");
    device.shutdown().await;
}

/// A join waits for its own admission: another command refused meanwhile (edits out of range on
/// another document, again and again) is not its failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_not_failed_by_another_commands_refusal() {
    let root = tempfile::tempdir().expect("temporary folder");
    let servers = start_acceptors(root.path(), 1).await;
    let tickets: Vec<Ticket> = servers.iter().map(AcceptorServer::ticket).collect();
    let admin = DeviceApp::open(&root.path().join("admin"), NodeOptions::default()).await.expect("admin");
    let doc = admin.create_document("doc", &tickets).await.expect("create");
    let code = doc.invite(plait_kernel::mls::Role::Writer, Duration::from_secs(600), tickets.clone()).await.expect("invite");
    let joiner = DeviceApp::open(&root.path().join("joiner"), NodeOptions::default()).await.expect("joiner");
    let mine = joiner.create_document("mine", &tickets).await.expect("create");
    let refusing = async {
        loop {
            assert!(mine.insert(99, "beyond the end").await.is_err(), "an edit out of range");
            // Paces the refusals so that they come throughout the join's wait.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let joined = tokio::select! {
        joined = joiner.join(&code, Duration::from_secs(60)) => joined,
        () = refusing => unreachable!("the refusals go on"),
    };
    let joined = joined.expect("the join");
    assert_eq!(joined.name(), "doc");
    joiner.shutdown().await;
    admin.shutdown().await;
}

/// Polls `doc` until `holds` of its status and text, for up to 60 s.
async fn until(doc: &DocumentHandle, what: &str, holds: impl Fn(&DocumentStatus, &str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = (doc.status().await.expect("status"), doc.text().await.expect("text"));
        if holds(&status, &text) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: still {status:?} with {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An admin's document with "hello" in it, and bob, a writer it invited who has the text, on
/// one acceptor in `root`.
struct AdminAndBob {
    _servers: Vec<AcceptorServer>,
    tickets: Vec<Ticket>,
    admin: DeviceApp,
    doc: DocumentHandle,
    bob: DeviceApp,
    bob_doc: DocumentHandle,
}

async fn admin_and_bob(root: &std::path::Path) -> AdminAndBob {
    let servers = start_acceptors(root, 1).await;
    let tickets: Vec<Ticket> = servers.iter().map(AcceptorServer::ticket).collect();
    let admin = DeviceApp::open(&root.join("admin"), NodeOptions::default()).await.expect("admin");
    let doc = admin.create_document("doc", &tickets).await.expect("create");
    doc.append("hello").await.expect("edit");
    let code = doc.invite(Role::Writer, Duration::from_secs(600), tickets.clone()).await.expect("invite");
    let bob = DeviceApp::open(&root.join("bob"), NodeOptions::default()).await.expect("bob");
    let bob_doc = bob.join(&code, Duration::from_secs(60)).await.expect("join");
    until(&bob_doc, "bob gets the text", |_, text| text == "hello").await;
    AdminAndBob { _servers: servers, tickets, admin, doc, bob, bob_doc }
}

/// A device removed from a document while it was away, which typed meanwhile, is invited back:
/// it drops the edit the group never stored (and says so), gets the text again, and its edits
/// reach the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_invited_back_after_its_removal_drops_what_the_group_refused_and_edits_again() {
    let root = tempfile::tempdir().expect("temporary folder");
    let AdminAndBob { _servers, tickets, admin, doc, bob, .. } = admin_and_bob(root.path()).await;
    let invite = || doc.invite(Role::Writer, Duration::from_secs(600), tickets.clone());
    let bob_dir = root.path().join("bob");
    let bob_id = bob.id();
    bob.shutdown().await;

    doc.remove_member(bob_id).await.expect("remove bob");
    let offline = NodeOptions { offline: true, ..NodeOptions::default() };
    let bob = DeviceApp::open_existing(&bob_dir, offline).await.expect("bob offline");
    bob.document("doc").expect("doc").append(" (bob, removed)").await.expect("an edit made offline");
    bob.shutdown().await;
    let bob = DeviceApp::open_existing(&bob_dir, NodeOptions::default()).await.expect("bob online");
    let bob_doc = bob.document("doc").expect("doc");
    until(&bob_doc, "bob learns of its removal", |status, _| status.role.is_none()).await;
    assert_eq!(bob_doc.status().await.expect("status").unsafe_messages, 1, "the edit the group refused");

    let code = invite().await.expect("invite again");
    let joined = bob.join_reporting(&code, Duration::from_secs(60)).await.expect("join again");
    assert_eq!(joined.edits_dropped, 1);
    let bob_doc = joined.document;
    until(&bob_doc, "bob is back", |status, text| status.role == Some(Role::Writer) && text == "hello").await;
    bob_doc.append(", bob").await.expect("an edit after coming back");
    until(&doc, "the admin gets it", |_, text| text == "hello, bob").await;
    bob.shutdown().await;
    admin.shutdown().await;
}

/// A member's update that the document library panics on (as on a Loro bug) is refused by the
/// device that reads it, which is built again from its SQLite store in the same process and
/// goes on: it keeps its text, and its next edit reaches the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_document_library_panics_on_an_update_is_rebuilt_from_its_store_and_goes_on() {
    let root = tempfile::tempdir().expect("temporary folder");
    let AdminAndBob { _servers, admin, doc, bob, bob_doc, .. } = admin_and_bob(root.path()).await;

    // The switch is one for the process: the marker is this test's own.
    faults::panic_on_updates_containing(b"POISON-server");
    doc.append(" POISON-server").await.expect("edit");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while bob.driver().status().rebuilds == 0 {
        assert!(std::time::Instant::now() < deadline, "bob never met the update: {:?}", bob.driver().status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    faults::stop_panicking(faults::Library::Loro);
    assert_eq!(bob_doc.text().await.expect("text"), "hello", "rebuilt with what it had");
    bob_doc.insert(0, "bob: ").await.expect("an edit after the rebuild");
    until(&doc, "the admin gets it", |_, text| text == "bob: hello POISON-server").await;
    let status = bob.driver().status();
    assert_eq!((status.rebuilds, status.stopped), (1, None), "rebuilt once, and running");
    bob.shutdown().await;
    admin.shutdown().await;
}

/// A peer that vanishes without closing its connection (its process killed, its machine gone)
/// is found dead within `idle_timeout_ms`, not QUIC's default 30 s, so a link we opened to it
/// is dialed again soon (an acceptor killed and restarted can push to its devices again).
#[test]
fn a_peer_that_vanishes_without_a_word_is_found_dead_within_the_idle_timeout() {
    let options = IrohOptions { idle_timeout_ms: 1_000, ..IrohOptions::default() };
    let runtime = |name| tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all().build();
    // The peer runs on a runtime of its own, shut down without closing anything: as if killed.
    let peer_runtime = runtime("peer").expect("runtime");
    let (peer, _peer_links, _peer_inbound) = peer_runtime.block_on(async {
        let network = IrohNetwork::bind([9; 32], options.clone()).await.expect("bind");
        let ticket = network.ticket();
        let (links, inbound) = Links::start(network, LinkLimits::default(), 1);
        (ticket, links, inbound)
    });
    runtime("us").expect("runtime").block_on(async move {
        let network = IrohNetwork::bind([8; 32], options).await.expect("bind");
        network.learn(peer.node, &peer.addresses);
        let (links, _inbound) = Links::start(network, LinkLimits::default(), 2);
        let connected = |links: &Links<IrohNetwork>| links.stats().peers.get(&peer.node).is_some_and(|p| p.connected);
        links.send(peer.node, b"hello");
        let up = tokio::time::timeout(Duration::from_secs(10), async {
            while !connected(&links) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        up.await.expect("the link comes up");
        peer_runtime.shutdown_background();
        // QUIC's own idle timeout is 30 s: the link must be found dead well before.
        let down = tokio::time::timeout(Duration::from_secs(20), async {
            while connected(&links) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        down.await.expect("the silent peer's link is found dead");
    });
}
