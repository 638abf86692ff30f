//! End to end with real processes: 3 `plait acceptor` processes and 2 devices driven through the
//! `plait device` command line on loopback, with `kill -9` of an acceptor during edits and of a
//! device in the middle of a sync.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const PLAIT: &str = env!("CARGO_BIN_EXE_plait");

struct AcceptorProcess {
    child: Running,
    dir: PathBuf,
    listen: String,
    ticket: String,
    http: String,
    config: Option<PathBuf>,
}

impl AcceptorProcess {
    fn start(dir: &Path, listen: &str) -> AcceptorProcess {
        AcceptorProcess::start_with(dir, listen, None)
    }

    /// Started with `--config FILE`.
    fn start_with(dir: &Path, listen: &str, config: Option<&Path>) -> AcceptorProcess {
        let mut command = Command::new(PLAIT);
        command.args(["acceptor", "--data-dir"]).arg(dir).args(["--listen", listen]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start an acceptor");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = lines.next().expect("a ready line").expect("utf-8");
        let ticket =
            ready.strip_prefix("acceptor ready: ").unwrap_or_else(|| panic!("unexpected first line {ready:?}")).to_owned();
        let http = lines.next().expect("an http line").expect("utf-8").strip_prefix("http: ").expect("http: ADDR").to_owned();
        std::thread::spawn(move || for _ in lines {});
        assert_eq!(std::fs::read_to_string(dir.join("ticket")).expect("ticket file").trim(), ticket);
        let parsed: plait_io_iroh::ticket::Ticket = ticket.parse().expect("a valid ticket");
        let listen = parsed.addresses[0].to_string();
        AcceptorProcess {
            child: Running(child),
            dir: dir.to_path_buf(),
            listen,
            ticket,
            http,
            config: config.map(Path::to_path_buf),
        }
    }

    fn kill_9(&mut self) {
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reaped");
    }

    fn restart(&mut self) {
        let again = AcceptorProcess::start_with(&self.dir, &self.listen, self.config.as_deref());
        assert_eq!(again.ticket, self.ticket, "same key and address after a restart");
        *self = again;
    }
}

/// A child process killed when the test lets go of it, even by panicking.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `plait device --data-dir DIR ARGS…`, not yet started.
fn device_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(PLAIT);
    command.arg("device").arg("--data-dir").arg(dir).args(args);
    command
}

fn device(dir: &Path, args: &[&str]) -> Output {
    let output = device_command(dir, args).output().expect("run plait device");
    if !output.status.success() {
        panic!(
            "plait device {args:?} failed: {}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_owned()
}

fn cat(dir: &Path) -> String {
    String::from_utf8(device(dir, &["cat", "doc"]).stdout).expect("utf-8 text")
}

fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the http port");
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("list").flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            files_contain(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
        }
    })
}

#[test]
fn three_acceptor_processes_and_two_devices_converge_through_kills_and_restarts() {
    let root = tempfile::tempdir().expect("temporary folder");
    let mut acceptors: Vec<AcceptorProcess> =
        (0..3).map(|index| AcceptorProcess::start(&root.path().join(format!("acceptor-{index}")), "127.0.0.1:0")).collect();
    let health = http_get(&acceptors[0].http, "/health");
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("\"status\":\"ok\""), "{health}");

    let alice = root.path().join("alice");
    let bob = root.path().join("bob");
    device(&alice, &["init", "--name", "alice"]);
    device(&bob, &["init", "--name", "bob"]);
    let mut create = vec!["create", "doc"];
    for acceptor in &acceptors {
        create.extend(["--acceptor", acceptor.ticket.as_str()]);
    }
    device(&alice, &create);
    // Typed before Bob is even invited: it reaches him through a snapshot (compaction).
    device(&alice, &["append", "doc", "zulu-marker-0 "]);

    // Bob waits to be admitted while Alice's device is online.
    admit(&alice, &[(&bob, invite(&alice, "writer"))]);

    // Offline edits on both devices (no process is online for either).
    device(&alice, &["append", "doc", "alpha-marker-1 "]);
    device(&bob, &["append", "doc", "bravo-marker-2 "]);
    device(&alice, &["insert", "doc", "0", "charlie-marker-3 "]);

    // An acceptor dies hard in the middle of syncing edits, and comes back later.
    acceptors[1].kill_9();
    device(&alice, &["sync", "doc", "--until-idle"]);
    device(&bob, &["sync", "doc", "--until-idle"]);
    device(&bob, &["append", "doc", "delta-marker-4 "]);

    // A device dies hard between its local edit and the end of its sync.
    let mut syncing = device_command(&bob, &["sync", "doc", "--for", "30s"]).spawn().expect("bob syncs");
    std::thread::sleep(Duration::from_millis(300));
    syncing.kill().expect("SIGKILL");
    syncing.wait().expect("reaped");
    acceptors[1].restart();

    for _ in 0..2 {
        assert!(last_line(&device(&bob, &["sync", "doc", "--until-idle"])).ends_with("unsafe=0"));
        assert!(last_line(&device(&alice, &["sync", "doc", "--until-idle"])).ends_with("unsafe=0"));
    }
    let (alice_text, bob_text) = (cat(&alice), cat(&bob));
    assert_eq!(alice_text, bob_text);
    for marker in ["zulu-marker-0", "alpha-marker-1", "bravo-marker-2", "charlie-marker-3", "delta-marker-4"] {
        assert!(alice_text.contains(marker), "{marker} missing from {alice_text:?}");
    }
    let status = String::from_utf8(device(&bob, &["status", "doc"]).stdout).expect("utf-8");
    for line in ["role: writer", "members: 2", "acceptors: 3", "unsafe: 0"] {
        assert!(status.lines().any(|l| l == line), "{line} missing from {status}");
    }
    // The add, Bob's role and at least one compaction each started an epoch.
    let epoch = status.lines().find_map(|l| l.strip_prefix("epoch: ")).and_then(|e| e.parse::<u64>().ok());
    assert!(epoch.is_some_and(|epoch| epoch >= 2), "{status}");

    // Acceptors only ever held ciphertext.
    drop(acceptors);
    for index in 0..3 {
        let dir = root.path().join(format!("acceptor-{index}"));
        for marker in ["zulu-marker", "alpha-marker", "bravo-marker", "charlie-marker", "delta-marker"] {
            assert!(!files_contain(&dir, marker.as_bytes()), "acceptor {index} stored plaintext {marker}");
        }
    }
    // The devices did store it (so the search above can find what it looks for).
    assert!(files_contain(&alice, b"alpha-marker"));
}

/// Runs `plait device` expecting it to fail; returns its standard error.
fn device_fails(dir: &Path, args: &[&str]) -> String {
    let output = device_command(dir, args).output().expect("run plait device");
    assert!(!output.status.success(), "plait device {args:?} succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `status DOC` as its `key: value` lines.
fn status(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let output = String::from_utf8(device(dir, &["status", "doc"]).stdout).expect("utf-8");
    output.lines().filter_map(|line| line.split_once(": ")).map(|(key, value)| (key.to_owned(), value.to_owned())).collect()
}

/// `members DOC` as (id, the rest of the line).
fn members(dir: &Path) -> Vec<(String, String)> {
    let output = String::from_utf8(device(dir, &["members", "doc"]).stdout).expect("utf-8");
    output.lines().filter_map(|line| line.split_once(' ')).map(|(id, rest)| (id.to_owned(), rest.to_owned())).collect()
}

fn epoch(dir: &Path) -> u64 {
    status(dir)["epoch"].parse().expect("a number")
}

/// Admits the devices in `joiners` (joining with `codes`) while `admin` syncs.
fn admit(admin: &Path, joiners: &[(&Path, String)]) {
    let joining: Vec<_> = joiners
        .iter()
        .map(|(dir, code)| {
            let (dir, code) = (dir.to_path_buf(), code.clone());
            std::thread::spawn(move || last_line(&device(&dir, &["join", &code, "--timeout", "60s"])))
        })
        .collect();
    device(admin, &["sync", "--for", "20s"]);
    for joined in joining {
        let joined = joined.join().expect("join thread");
        assert!(joined.starts_with("joined doc"), "{joined}");
    }
}

fn invite(admin: &Path, role: &str) -> String {
    let line = last_line(&device(admin, &["invite", "doc", "--role", role, "--ttl", "10m"]));
    line.strip_prefix("invite ").expect("invite CODE").to_owned()
}

/// Every device subcommand the README lists besides those above, through the binary: roles,
/// `members`, `watch`, `delete`, `rotate`, acceptors added and removed, a member removed and
/// invited back, and `export` read back by Loro itself.
#[test]
fn an_admin_manages_members_and_acceptors_from_the_command_line() {
    let root = tempfile::tempdir().expect("temporary folder");
    let acceptors: Vec<AcceptorProcess> =
        (0..4).map(|index| AcceptorProcess::start(&root.path().join(format!("acceptor-{index}")), "127.0.0.1:0")).collect();
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|name| root.path().join(name));
    for (dir, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        device(dir, &["init", "--name", name]);
    }
    let mut create = vec!["create", "doc"];
    for acceptor in &acceptors[..3] {
        create.extend(["--acceptor", acceptor.ticket.as_str()]);
    }
    device(&alice, &create);
    device(&alice, &["append", "doc", "hello world"]);
    let (writer_code, reader_code) = (invite(&alice, "writer"), invite(&alice, "reader"));
    admit(&alice, &[(&bob, writer_code), (&carol, reader_code)]);

    let everyone = members(&alice);
    let id_of = |role: &str| everyone.iter().find(|(_, line)| line == role).map(|(id, _)| id.clone()).expect(role);
    assert_eq!(everyone.len(), 3, "{everyone:?}");
    id_of("admin (this device: alice)");
    let (bob_id, carol_id) = (id_of("writer"), id_of("reader"));

    // A reader reads, and may not edit. (Joiners get the text from before they joined through a
    // snapshot, which a sync brings.)
    for joiner in [&bob, &carol] {
        device(joiner, &["sync", "doc", "--until-idle"]);
        assert_eq!(cat(joiner), "hello world");
    }
    assert_eq!(status(&carol)["role"], "reader");
    let refusal = device_fails(&carol, &["append", "doc", " carol was here"]);
    assert!(refusal.contains("reader"), "{refusal}");

    // The reader watches while the others edit concurrently and sync.
    let mut watch = Running(device_command(&carol, &["watch", "doc"]).stdout(Stdio::piped()).spawn().expect("carol watches"));
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.0.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(lines.recv_timeout(Duration::from_secs(30)).expect("watch starts"), "watching doc (Ctrl-C to stop)");
    device(&bob, &["insert", "doc", "0", "Bob says: "]);
    device(&alice, &["delete", "doc", "0", "6"]);
    device(&bob, &["sync", "doc", "--until-idle"]);
    device(&alice, &["sync", "doc", "--until-idle"]);
    device(&bob, &["sync", "doc", "--until-idle"]);
    let merged = "Bob says: world";
    assert_eq!(cat(&alice), merged);
    assert_eq!(cat(&bob), merged);
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(merged) {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen.push(line),
            Err(error) => panic!("watch never printed {merged:?} ({error}); it printed {seen:?}"),
        }
    }
    assert!(seen.iter().any(|line| line.starts_with("--- change from ")), "{seen:?}");
    drop(watch);

    // A writer rotates its key: a new epoch that everyone reaches.
    let before = epoch(&bob);
    let rotated = last_line(&device(&bob, &["rotate", "doc"]));
    let after = epoch(&bob);
    assert!(after > before && rotated == format!("rotated doc epoch={after}"), "{rotated} (from epoch {before})");
    device(&alice, &["sync", "doc", "--until-idle"]);
    assert_eq!(epoch(&alice), after);

    // The admin moves the document from acceptor 0 to acceptor 3; edits go on through the new set.
    let ticket = |index: usize| acceptors[index].ticket.parse::<plait_io_iroh::ticket::Ticket>().expect("a ticket");
    let added = last_line(&device(&alice, &["add-acceptor", "doc", &acceptors[3].ticket]));
    assert_eq!(added, format!("acceptor added {}", plait_io_iroh::app::hex(&ticket(3).node.0)));
    assert_eq!(status(&alice)["acceptors"], "4");
    let first = plait_io_iroh::app::hex(&ticket(0).node.0);
    let removed = last_line(&device(&alice, &["remove-acceptor", "doc", &first[..8]]));
    assert_eq!(removed, format!("acceptor removed {first}"));
    assert_eq!(status(&alice)["acceptors"], "3");
    let unknown = device_fails(&alice, &["remove-acceptor", "doc", &first[..8]]);
    assert!(unknown.contains(&format!("no member or acceptor {}", &first[..8])), "{unknown}");
    device(&bob, &["sync", "doc", "--until-idle"]);
    assert_eq!(status(&bob)["acceptors"], "3");
    device(&bob, &["append", "doc", "!"]);
    device(&bob, &["sync", "doc", "--until-idle"]);
    device(&alice, &["sync", "doc", "--until-idle"]);
    assert_eq!(cat(&alice), "Bob says: world!");

    // The admin removes the reader, who learns it at its next sync; the others go on.
    let removed = last_line(&device(&alice, &["remove-member", "doc", &carol_id[..8]]));
    assert_eq!(removed, format!("member removed {carol_id}"));
    let remaining = members(&alice);
    assert!(remaining.len() == 2 && remaining.iter().any(|(id, _)| *id == bob_id), "{remaining:?}");
    device(&carol, &["sync", "doc", "--until-idle"]);
    assert_eq!(status(&carol)["role"], "none (removed)");
    device(&bob, &["sync", "doc", "--until-idle"]);
    assert_eq!(status(&bob)["members"], "2");

    // The admin invites the removed device back, as a writer: it drops its old copy of the
    // group, gets the text again, and its edits reach the others.
    let code = invite(&alice, "writer");
    admit(&alice, &[(&carol, code)]);
    device(&carol, &["sync", "doc", "--until-idle"]);
    assert_eq!(cat(&carol), "Bob says: world!");
    assert_eq!(status(&carol)["role"], "writer");
    device(&carol, &["append", "doc", " Carol is back."]);
    device(&carol, &["sync", "doc", "--until-idle"]);
    device(&alice, &["sync", "doc", "--until-idle"]);
    let text = "Bob says: world! Carol is back.";
    assert_eq!(cat(&alice), text);
    assert_eq!(status(&alice)["members"], "3");

    // The export is a Loro snapshot Loro opens by itself.
    let file = root.path().join("doc.loro");
    device(&alice, &["export", "doc", "--loro", file.to_str().expect("a utf-8 path")]);
    let document = loro::LoroDoc::new();
    document.import(&std::fs::read(&file).expect("the export")).expect("a Loro snapshot");
    assert_eq!(document.get_text(plait_kernel::document::TEXT_CONTAINER).to_string(), text);
}

/// A counter of an acceptor's `/metrics`.
fn metric(acceptor: &AcceptorProcess, name: &str) -> u64 {
    let response = http_get(&acceptor.http, "/metrics");
    let line = response.lines().find(|line| line.split_once(' ').is_some_and(|(key, _)| key == name));
    line.and_then(|line| line.split_once(' ')).and_then(|(_, value)| value.parse().ok()).unwrap_or_else(|| panic!("no {name}"))
}

/// An acceptor started without a port keeps the one it got the first time, so the tickets devices
/// hold still reach it; one that moves anyway is reached again once `add-acceptor` is given its
/// new ticket, which changes no epoch.
#[test]
fn an_acceptor_keeps_its_port_and_one_that_moved_is_reached_from_its_new_ticket() {
    let root = tempfile::tempdir().expect("temporary folder");
    let mut acceptor = AcceptorProcess::start(&root.path().join("acceptor"), "127.0.0.1:0");
    let alice = root.path().join("alice");
    device(&alice, &["init"]);
    device(&alice, &["create", "doc", "--acceptor", &acceptor.ticket]);

    let first = acceptor.ticket.clone();
    acceptor.kill_9();
    acceptor = AcceptorProcess::start(&acceptor.dir.clone(), "127.0.0.1:0");
    assert_eq!(acceptor.ticket, first, "port 0 again: the port of the last start");
    device(&alice, &["append", "doc", "before"]);
    device(&alice, &["sync", "doc", "--until-idle", "--timeout", "30s"]);

    let elsewhere = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|socket| socket.local_addr()).expect("a free port");
    acceptor.kill_9();
    acceptor = AcceptorProcess::start(&acceptor.dir.clone(), &elsewhere.to_string());
    assert_ne!(acceptor.ticket, first);
    device(&alice, &["append", "doc", " after"]);
    let id = &acceptor.ticket.parse::<plait_io_iroh::ticket::Ticket>().expect("a ticket").node.0[..6];
    let error = device_fails(&alice, &["sync", "doc", "--timeout", "3s"]);
    assert!(error.contains(&format!("unreachable: {}", plait_io_iroh::app::hex(id))), "{error}");
    let epoch_before = epoch(&alice);
    let updated = last_line(&device(&alice, &["add-acceptor", "doc", &acceptor.ticket]));
    assert!(updated.starts_with("acceptor already in the set, address updated"), "{updated}");
    assert_eq!(status(&alice)["unsafe"], "0", "the edit reached the acceptor at its new address");
    assert_eq!(epoch(&alice), epoch_before);
    assert_eq!(cat(&alice), "before after");
}

/// The commands that read or write only the local store stay offline (before, each dialled every
/// acceptor and then waited ~3 s on its way out for QUIC to close the handshakes it had begun),
/// and an offline edit goes out at the next `sync`.
#[test]
fn commands_on_the_local_store_stay_offline() {
    let root = tempfile::tempdir().expect("temporary folder");
    let acceptor = AcceptorProcess::start(&root.path().join("acceptor"), "127.0.0.1:0");
    let alice = root.path().join("alice");
    device(&alice, &["init"]);
    device(&alice, &["create", "doc", "--acceptor", &acceptor.ticket]);

    let seen = |acceptor: &AcceptorProcess| {
        (metric(acceptor, "plait_frames_received_total"), metric(acceptor, "plait_failed_handshakes_total"))
    };
    let before = seen(&acceptor);
    device(&alice, &["append", "doc", "offline"]);
    device(&alice, &["insert", "doc", "0", "all "]);
    device(&alice, &["delete", "doc", "0", "4"]);
    assert_eq!(cat(&alice), "offline");
    assert_ne!(status(&alice)["unsafe"], "0", "written, not yet posted");
    assert_eq!(members(&alice).len(), 1);
    device(&alice, &["export", "doc", "--loro", &root.path().join("doc.loro").to_string_lossy()]);
    assert_eq!(seen(&acceptor), before, "no frame and no handshake reached the acceptor");

    device(&alice, &["sync", "doc", "--until-idle", "--timeout", "30s"]);
    assert_eq!(status(&alice)["unsafe"], "0", "the offline edits were posted at the sync");
    assert!(seen(&acceptor).0 > before.0);
}

/// An acceptor at its memory budget refuses an edit: `sync` names it and says why, on stderr as
/// it happens and in its error at the timeout, and the device keeps the edit. Once the operator
/// raises the budget and restarts the acceptor, the edit gets in. One at its maximum of
/// documents refuses a new one, and `create` says so.
#[test]
fn sync_names_a_full_acceptor_and_the_edit_gets_in_once_its_budget_is_raised() {
    let root = tempfile::tempdir().expect("temporary folder");
    let config = root.path().join("acceptor.toml");
    std::fs::write(&config, "groups_max = 1\ngroup_store_bytes_max = 300000\nnode_store_bytes_max = 300000\n")
        .expect("write config");
    let mut acceptor = AcceptorProcess::start_with(&root.path().join("acceptor"), "127.0.0.1:0", Some(&config));
    let alice = root.path().join("alice");
    device(&alice, &["init"]);
    device(&alice, &["create", "doc", "--acceptor", &acceptor.ticket]);
    // Four edits of ~90 KB, each its own message: the acceptor has room for three.
    for letter in ["a", "b", "c", "d"] {
        device(&alice, &["append", "doc", &letter.repeat(90_000)]);
    }
    let output = device_command(&alice, &["sync", "doc", "--timeout", "5s"]).output().expect("run plait device");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the fourth edit could not be made safe");
    let id = plait_io_iroh::app::hex(&acceptor.ticket.parse::<plait_io_iroh::ticket::Ticket>().expect("a ticket").node.0[..6]);
    assert!(stderr.contains(&format!("warning: acceptor {id} refused to store an edit of doc: full: the document's quota or the acceptor's budget is used up; asking again until it has room")), "{stderr}");
    assert!(stderr.contains(&format!("refused by: {id} (full: ")), "{stderr}");
    assert_eq!(status(&alice)["unsafe"], "1");
    let stored = metric(&acceptor, "plait_stored_bytes");
    assert!((270_000..=300_000).contains(&stored), "three edits stored: {stored} bytes");
    assert_eq!(metric(&acceptor, "plait_stored_bytes_max"), 300_000);

    std::fs::write(&config, "groups_max = 1\ngroup_store_bytes_max = 1000000\nnode_store_bytes_max = 1000000\n")
        .expect("write config");
    acceptor.kill_9();
    acceptor.restart();
    let synced = last_line(&device(&alice, &["sync", "doc", "--until-idle", "--timeout", "30s"]));
    assert!(synced.ends_with("unsafe=0"), "{synced}");
    assert!(metric(&acceptor, "plait_stored_bytes") > 360_000);
    assert_eq!(cat(&alice).len(), 360_000);

    let created = device(&alice, &["create", "doc2", "--acceptor", &acceptor.ticket]);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(stderr.contains(&format!("warning: acceptor {id} refused to host doc2: full")), "{stderr}");
    assert_eq!(metric(&acceptor, "plait_groups"), 1);
}

/// A `join` that times out leaves the device redeeming its code (it is on disk): the admin adds
/// the key package it posted, a later `sync` of the joiner gets it in, and `join` again with the
/// same code names the document. (Before, the key package was lost with the process and the code
/// was spent on it.)
#[test]
fn a_join_that_timed_out_goes_on_and_the_same_code_names_the_document() {
    let root = tempfile::tempdir().expect("temporary folder");
    let acceptor = AcceptorProcess::start(&root.path().join("acceptor"), "127.0.0.1:0");
    let [alice, bob] = ["alice", "bob"].map(|name| root.path().join(name));
    for (dir, name) in [(&alice, "alice"), (&bob, "bob")] {
        device(dir, &["init", "--name", name]);
    }
    device(&alice, &["create", "doc", "--acceptor", acceptor.ticket.as_str()]);
    device(&alice, &["append", "doc", "hello"]);
    let code = invite(&alice, "writer");

    // The admin is offline: the key package waits in the mailbox.
    let waited = device_command(&bob, &["join", &code, "--timeout", "2s"]).output().expect("run plait device");
    assert!(!waited.status.success(), "nobody could add it");
    assert!(String::from_utf8_lossy(&waited.stderr).contains("timed out"), "{waited:?}");

    // The admin adds it while the joiner is down.
    for _ in 0..10 {
        if members(&alice).len() == 2 {
            break;
        }
        device(&alice, &["sync", "--for", "2s"]);
    }
    assert_eq!(members(&alice).len(), 2, "the admin added the key package the joiner posted");

    // The joiner's next time online gets it in; the same code then names the document.
    device(&bob, &["sync", "--for", "3s"]);
    assert!(last_line(&device(&bob, &["join", &code, "--timeout", "60s"])).starts_with("joined doc"));
    // It is a member: what it writes reaches the admin. (It may not have the text from before it
    // joined yet, which comes in a snapshot: then its append is concurrent with "hello", and
    // the CRDT orders the two either way.)
    device(&bob, &["append", "doc", " world"]);
    device(&bob, &["sync", "doc", "--until-idle"]);
    device(&alice, &["sync", "doc", "--until-idle"]);
    let text = cat(&alice);
    assert!(text == "hello world" || text == " worldhello", "{text:?}");
}
