//! `ggufd serve` under a fake systemd: sd_notify datagrams on a socket the test binds (READY
//! after loading, STATUS, watchdog pings, RELOADING on SIGHUP, STOPPING on SIGTERM), socket
//! activation with an inherited listener, and the example config in deploy/. Reloads that add,
//! remove and keep models while streams run, and reloads that fail; watchdog pings held back
//! while a scheduler is stuck in a long forward pass; `mlock = true` and its RLIMIT_MEMLOCK error.

mod common;
mod grpc_common;

use grpc_common::{smollm, TempDir, MODEL};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon process, killed (by its pid) if a test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, sig) }, 0);
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(t0.elapsed() < limit, "ggufd did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A fake `$NOTIFY_SOCKET`.
struct Notify {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    /// Every datagram received so far.
    seen: Vec<String>,
}

impl Notify {
    fn bind(dir: &TempDir) -> Notify {
        let path = dir.path("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notify {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram with the line `line`; returns that datagram.
    fn expect(&mut self, line: &str, limit: Duration, child: &mut Guard) -> String {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 4096];
        loop {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == line) {
                    return msg;
                }
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!(
                    "ggufd exited ({status}) before sending {line}; got {:?}",
                    self.seen
                );
            }
            assert!(
                t0.elapsed() < limit,
                "no {line} within {limit:?}; got {:?}",
                self.seen
            );
        }
    }
}

fn write_config(dir: &TempDir, model: &Path, listen: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "listen = [{listen:?}]\nthreads = 2\n{extra}\n[[models]]\npath = {:?}\nname = \"{MODEL}\"\n",
        model.display().to_string()
    );
    let path = dir.path("ggufd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ggufd serve --config CONFIG` reporting to `notify`'s socket; `extra` adds environment or
/// redirections.
fn serve_notified(
    config: &std::path::Path,
    notify: &Notify,
    extra: impl FnOnce(&mut Command) -> &mut Command,
) -> Guard {
    let mut cmd = Command::new(common::ggufd());
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null());
    extra(&mut cmd);
    Guard(cmd.spawn().unwrap())
}

#[test]
fn notify_ready_status_watchdog_reload_and_stopping() {
    let Some(model) = smollm() else { return };
    let dir = TempDir::new("sd-notify");
    let config = write_config(&dir, &model, "127.0.0.1:0", "");
    let mut notify = Notify::bind(&dir);
    let mut child = serve_notified(&config, &notify, |c| {
        c.env("WATCHDOG_USEC", "1000000").env("RUST_LOG", "warn")
    });
    let ready = notify.expect("READY=1", Duration::from_secs(20), &mut child);
    assert!(
        ready.contains("STATUS=serving smol (llama"),
        "READY without the served models: {ready:?}"
    );
    assert!(
        notify
            .seen
            .iter()
            .any(|m| m.starts_with("STATUS=warming up smol")),
        "no warm-up status before READY: {:?}",
        notify.seen
    );
    // 1 s timeout: a ping every 0.5 s.
    for _ in 0..2 {
        notify.expect("WATCHDOG=1", Duration::from_secs(3), &mut child);
    }

    write_config(
        &dir,
        &model,
        "127.0.0.1:0",
        "[limits]\ndefault_max_tokens = 8\n",
    );
    child.signal(libc::SIGHUP);
    let reloading = notify.expect("RELOADING=1", Duration::from_secs(5), &mut child);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    let again = notify.expect("READY=1", Duration::from_secs(5), &mut child);
    assert!(again.contains("config re-read"), "{again:?}");
    // Still pinging after the reload.
    notify.expect("WATCHDOG=1", Duration::from_secs(3), &mut child);

    child.signal(libc::SIGTERM);
    notify.expect("STOPPING=1", Duration::from_secs(5), &mut child);
    let status = child.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "ggufd exited with {status}");
}

#[test]
fn a_broken_config_on_reload_keeps_serving() {
    let Some(model) = smollm() else { return };
    let dir = TempDir::new("sd-badreload");
    let config = write_config(&dir, &model, "127.0.0.1:0", "");
    let mut notify = Notify::bind(&dir);
    let mut child = serve_notified(&config, &notify, |c| {
        c.env("RUST_LOG", "error").stderr(Stdio::null())
    });
    notify.expect("READY=1", Duration::from_secs(20), &mut child);
    std::fs::write(&config, "lisen = 3\n").unwrap();
    child.signal(libc::SIGHUP);
    notify.expect("RELOADING=1", Duration::from_secs(5), &mut child);
    let again = notify.expect("READY=1", Duration::from_secs(5), &mut child);
    assert!(again.contains("reload failed"), "{again:?}");
    assert!(
        again.contains("lisen"),
        "the bad key is not named: {again:?}"
    );
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
}

#[tokio::test]
async fn socket_activation_serves_the_inherited_tcp_and_unix_listeners() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let Some(model) = smollm() else { return };
    let dir = TempDir::new("sd-activation");
    // Were the configured address used, bind would fail: the inherited socket must win.
    let config = write_config(&dir, &model, "unix:/nonexistent-dir/ggufd.sock", "");
    let mut notify = Notify::bind(&dir);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = dir.path("activated.sock");
    let unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Moved out of the way of the targets 3 and 4 first, so neither dup2 clobbers the other.
    // SAFETY: fcntl(F_DUPFD) on fds this test owns.
    let (tcp_fd, unix_fd) = unsafe {
        (
            libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10),
            libc::fcntl(unix.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10),
        )
    };
    assert!(tcp_fd >= 10 && unix_fd >= 10);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            r#"LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=grpc:local exec "$0" serve --config "$1""#,
        )
        .arg(common::ggufd())
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    // SAFETY: only async-signal-safe calls (dup2) between fork and exec; dup2's copies are
    // inherited (no FD_CLOEXEC).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(tcp_fd, 3) < 0 || libc::dup2(unix_fd, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Guard(cmd.spawn().unwrap());
    // The child holds its own copies.
    // SAFETY: closing the duplicates made above, once.
    unsafe {
        libc::close(tcp_fd);
        libc::close(unix_fd);
    }
    drop(listener);
    drop(unix);
    let ready = notify.expect("READY=1", Duration::from_secs(20), &mut child);
    assert!(ready.contains(&addr.to_string()), "{ready:?}");
    assert!(
        ready.contains(&format!("unix:{}", socket.display())),
        "{ready:?}"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the inherited socket");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "ggufd.v1.Inference".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    child.signal(libc::SIGTERM);
    notify.expect("STOPPING=1", Duration::from_secs(5), &mut child);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
    assert!(
        socket.exists(),
        "an activated socket belongs to systemd: the daemon must not remove it"
    );
}

#[test]
fn the_example_config_parses_and_validates() {
    let path = common::repo_root().join("deploy/ggufd.toml");
    let config = ggufd::server::config::Config::from_file(&path).unwrap();
    config.validate().unwrap();
    assert!(!config.models.is_empty());
}

/// deploy/'s units pass `systemd-analyze verify`, and the service's `security` exposure stays
/// low (offline: no running systemd needed). Skipped, loudly, where systemd-analyze is absent.
#[test]
fn the_units_verify_and_stay_hardened() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("\n!!!!!!!! SKIPPING: systemd-analyze not installed !!!!!!!!\n");
        return;
    };
    assert!(out.status.success());
    let deploy = common::repo_root().join("deploy");
    let dir = TempDir::new("sd-units");
    // verify checks that ExecStart exists: point it at the binary under test.
    let service = std::fs::read_to_string(deploy.join("ggufd.service"))
        .unwrap()
        .replace("/usr/bin/ggufd", &common::ggufd().display().to_string());
    std::fs::write(dir.path("ggufd.service"), service).unwrap();
    std::fs::copy(deploy.join("ggufd.socket"), dir.path("ggufd.socket")).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path("ggufd.service"))
        .arg(dir.path("ggufd.socket"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(dir.path("ggufd.service"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ggufd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

// ---- reload: models added, removed and kept; broken configs; watchdog; mlock ----

const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// The Gemma-3-270M test model (a second, distinct file), or None after a loud message.
fn gemma() -> Option<std::path::PathBuf> {
    let path = common::model_dir().join(GEMMA);
    common::require(&path, "Gemma-3-270M test model").then_some(path)
}

/// A config serving `models` (name, file) on a free loopback port.
fn write_models(dir: &TempDir, extra: &str, models: &[(&str, &Path)]) -> std::path::PathBuf {
    let mut text = format!("listen = [\"127.0.0.1:0\"]\nthreads = 2\n{extra}\n");
    for (name, path) in models {
        text.push_str(&format!(
            "[[models]]\npath = {:?}\nname = {name:?}\n",
            path.display().to_string()
        ));
    }
    let path = dir.path("ggufd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Notify {
    /// After a SIGHUP: RELOADING=1, then exactly one READY=1 (returned), nothing out of order.
    fn expect_reload(&mut self, child: &mut Guard) -> String {
        let from = self.seen.len();
        let ready = self.expect("READY=1", Duration::from_secs(60), child);
        let lines: Vec<&str> = self.seen[from..]
            .iter()
            .filter(|m| !m.starts_with("WATCHDOG=1"))
            .map(String::as_str)
            .collect();
        let reloading = lines
            .iter()
            .position(|m| m.lines().any(|l| l == "RELOADING=1"));
        let readies: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].lines().any(|l| l == "READY=1"))
            .collect();
        assert!(
            reloading.is_some_and(|r| readies == [lines.len() - 1] && r < lines.len() - 1),
            "not RELOADING=1 … READY=1: {lines:?}"
        );
        ready
    }
}

/// The first line of the ready file (`--ready-file`), once written.
fn ready_addr(path: &Path, child: &mut Guard) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.lines().next().unwrap().to_string();
            }
        }
        assert!(child.0.try_wait().unwrap().is_none(), "ggufd exited");
        assert!(t0.elapsed() < Duration::from_secs(60), "no ready file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon started with `--ready-file` under a fake NOTIFY_SOCKET, past READY=1, with a
/// channel and an Inference client connected to it.
struct ReadyDaemon {
    notify: Notify,
    child: Guard,
    channel: tonic::transport::Channel,
    client: ggufd::server::proto::inference_client::InferenceClient<tonic::transport::Channel>,
}

async fn serve_ready(dir: &TempDir, config: &Path, rust_log: &str, stderr: Stdio) -> ReadyDaemon {
    let mut notify = Notify::bind(dir);
    let ready_file = dir.path("ready");
    let mut child = serve_notified(config, &notify, |c| {
        c.arg("--ready-file")
            .arg(&ready_file)
            .env("RUST_LOG", rust_log)
            .stderr(stderr)
    });
    tokio::task::block_in_place(|| notify.expect("READY=1", Duration::from_secs(60), &mut child));
    let addr = ready_addr(&ready_file, &mut child);
    let channel = connect(&addr).await;
    let client = ggufd::server::proto::inference_client::InferenceClient::new(channel.clone());
    ReadyDaemon {
        notify,
        child,
        channel,
        client,
    }
}

async fn connect(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the daemon")
}

async fn model_names(channel: &tonic::transport::Channel) -> Vec<String> {
    use ggufd::server::proto::models_client::ModelsClient;
    ModelsClient::new(channel.clone())
        .list_models(ggufd::server::proto::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models
        .into_iter()
        .map(|m| m.name)
        .collect()
}

fn request(model: &str, max_tokens: u32) -> ggufd::server::proto::GenerateRequest {
    ggufd::server::proto::GenerateRequest {
        model: model.to_string(),
        ..grpc_common::prompt_request("The capital of France is", max_tokens)
    }
}

/// Text, ids and finish reason of a stream whose first message was already read.
async fn finish_stream(
    first: ggufd::server::proto::GenerateResponse,
    mut rest: tonic::Streaming<ggufd::server::proto::GenerateResponse>,
) -> (String, Vec<u32>, ggufd::server::proto::FinishReason) {
    use ggufd::server::proto::generate_response::Event;
    let (mut text, mut ids) = (String::new(), Vec::new());
    let mut msg = Some(first);
    while let Some(m) = msg {
        match m.event.expect("an event") {
            Event::Delta(d) => {
                text.push_str(&d.text);
                ids.extend(d.token_ids);
            }
            Event::Done(done) => return (text, ids, done.finish_reason()),
        }
        msg = rest.message().await.expect("the stream failed");
    }
    panic!("the stream ended without Done");
}

fn outcome(o: &grpc_common::Output) -> (String, Vec<u32>, ggufd::server::proto::FinishReason) {
    (o.text.clone(), o.ids.clone(), o.finish())
}

fn maps(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap()
}

/// SIGHUP with a config that drops `gemma` and adds `smol2` while a stream runs on each of
/// `smol` (kept) and `gemma` (removed): both streams end intact, the new model is loaded before
/// READY=1, the removed one refuses new requests and is unmapped once its stream is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_models_without_dropping_streams() {
    let (Some(smol), Some(gemma)) = (smollm(), gemma()) else {
        return;
    };
    let dir = TempDir::new("sd-reload");
    let config = write_models(&dir, "", &[("smol", &smol), ("gemma", &gemma)]);
    let log = std::fs::File::create(dir.path("stderr")).unwrap();
    let ReadyDaemon {
        mut notify,
        mut child,
        channel,
        mut client,
    } = serve_ready(&dir, &config, "info", log.into()).await;
    assert_eq!(model_names(&channel).await, ["smol", "gemma"]);
    let reference_smol = outcome(
        &grpc_common::generate(&mut client, request("smol", 48))
            .await
            .unwrap(),
    );
    let reference_gemma = outcome(
        &grpc_common::generate(&mut client, request("gemma", 48))
            .await
            .unwrap(),
    );
    assert!(!reference_smol.1.is_empty() && !reference_gemma.1.is_empty());
    assert!(maps(child.0.id()).contains(GEMMA));

    // One stream per model, read up to the first message only: both are in flight (registered,
    // not done) until the test reads the rest, whatever the machine's speed.
    let mut smol_stream = client
        .generate(request("smol", 48))
        .await
        .unwrap()
        .into_inner();
    let smol_first = smol_stream.message().await.unwrap().unwrap();
    let mut gemma_stream = client
        .generate(request("gemma", 48))
        .await
        .unwrap()
        .into_inner();
    let gemma_first = gemma_stream.message().await.unwrap().unwrap();

    write_models(&dir, "", &[("smol", &smol), ("smol2", &smol)]);
    child.signal(libc::SIGHUP);
    let ready = tokio::task::block_in_place(|| notify.expect_reload(&mut child));
    for part in [
        "added smol2",
        "removed gemma",
        "kept smol",
        "serving smol (llama",
    ] {
        assert!(ready.contains(part), "no `{part}` in {ready:?}");
    }
    assert_eq!(model_names(&channel).await, ["smol", "smol2"]);
    let status = grpc_common::generate(&mut client, request("gemma", 4))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        maps(child.0.id()).contains(GEMMA),
        "gemma unmapped while its stream runs"
    );

    assert_eq!(finish_stream(smol_first, smol_stream).await, reference_smol);
    assert_eq!(
        finish_stream(gemma_first, gemma_stream).await,
        reference_gemma
    );
    let added = grpc_common::generate(&mut client, request("smol2", 48))
        .await
        .unwrap();
    assert_eq!(outcome(&added), reference_smol);

    let t0 = Instant::now();
    while maps(child.0.id()).contains(GEMMA) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "gemma still mapped after its stream ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
    let log = std::fs::read_to_string(dir.path("stderr")).unwrap();
    assert!(log.contains("removed and unloaded"), "{log}");
}

/// Reloads that cannot be applied — a missing model file, a file that is not GGUF, a bad key —
/// keep the running set serving, say why in the STATUS, and still end with READY=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_reloads_keep_the_running_models() {
    let Some(smol) = smollm() else { return };
    let dir = TempDir::new("sd-brokenreload");
    let config = write_models(&dir, "", &[("smol", &smol)]);
    let ReadyDaemon {
        mut notify,
        mut child,
        channel,
        mut client,
    } = serve_ready(&dir, &config, "off", Stdio::null()).await;
    let reference = outcome(
        &grpc_common::generate(&mut client, request("smol", 16))
            .await
            .unwrap(),
    );

    let junk = dir.path("junk.gguf");
    std::fs::write(&junk, b"this is not a model").unwrap();
    let missing = dir.path("missing.gguf");
    // (models, extra config, what the error must name)
    type Case<'a> = (&'a [(&'a str, &'a Path)], &'a str, &'a str);
    let cases: [Case; 3] = [
        (&[("smol", &smol), ("ghost", &missing)], "", "missing.gguf"),
        (&[("smol", &smol), ("junk", &junk)], "", "not a GGUF file"),
        (
            &[("smol", &smol)],
            "[scheduler]\nmax_bach = 2\n",
            "max_bach",
        ),
    ];
    for (models, extra, why) in cases {
        write_models(&dir, extra, models);
        child.signal(libc::SIGHUP);
        let ready = tokio::task::block_in_place(|| notify.expect_reload(&mut child));
        assert!(
            ready.contains("reload failed") && ready.contains(why),
            "no `reload failed` … `{why}` in {ready:?}"
        );
        assert!(ready.contains("STATUS=serving smol (llama"), "{ready:?}");
        assert_eq!(model_names(&channel).await, ["smol"]);
        let again = grpc_common::generate(&mut client, request("smol", 16))
            .await
            .unwrap();
        assert_eq!(outcome(&again), reference);
    }
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
}

/// WATCHDOG=1 goes out only while every scheduler answers a probe between forward passes. A
/// real, long forward pass (a 512-token prompt prefilled in one step on one thread) keeps the
/// scheduler from answering: no ping for as long as it runs, pings again right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_pings_stop_while_a_scheduler_is_stuck() {
    use std::sync::{Arc, Mutex};
    let Some(smol) = smollm() else { return };
    let dir = TempDir::new("sd-stuck");
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nthreads = 1\n[scheduler]\nstep_tokens = 512\n\
         [[models]]\npath = {:?}\nname = \"smol\"\n",
        smol.display().to_string()
    );
    let config = dir.path("ggufd.toml");
    std::fs::write(&config, text).unwrap();
    let mut notify = Notify::bind(&dir);
    let ready_file = dir.path("ready");
    let period = Duration::from_millis(200);
    let mut child = serve_notified(&config, &notify, |c| {
        c.arg("--ready-file")
            .arg(&ready_file)
            .env("WATCHDOG_USEC", "400000")
            .env("RUST_LOG", "off")
            .stderr(Stdio::null())
    });
    tokio::task::block_in_place(|| {
        notify.expect("READY=1", Duration::from_secs(60), &mut child);
        notify.expect("WATCHDOG=1", Duration::from_secs(5), &mut child);
    });
    let addr = ready_addr(&ready_file, &mut child);
    let mut client =
        ggufd::server::proto::inference_client::InferenceClient::new(connect(&addr).await);

    // Every ping's arrival time, from a thread of its own.
    let pings = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sock = notify.sock.try_clone().unwrap();
    let collector = {
        let (pings, stop) = (pings.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if buf[..n].split(|&b| b == b'\n').any(|l| l == b"WATCHDOG=1") {
                        pings.lock().unwrap().push(Instant::now());
                    }
                }
            }
        })
    };
    std::thread::sleep(period * 4);
    let ids: Vec<u32> = (0..512).map(|i| 1000 + i * 7).collect();
    let sent = Instant::now();
    let out = grpc_common::generate(
        &mut client,
        ggufd::server::proto::GenerateRequest {
            input: Some(ggufd::server::proto::generate_request::Input::Tokens(
                ggufd::server::proto::TokenIds { ids },
            )),
            max_tokens: 1,
            sampling: Some(grpc_common::greedy()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let done = Instant::now();
    assert_eq!(out.usage().prompt_tokens, 512);
    std::thread::sleep(period * 4);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    collector.join().unwrap();
    let pings = pings.lock().unwrap().clone();
    let longest_gap = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "forward pass {:?}; longest gap between pings {longest_gap:?}",
        done - sent
    );

    assert!(
        pings.iter().filter(|&&t| t < sent).count() >= 2,
        "no pings before the request"
    );
    // The probe already answered when the pass began may still be pinged a period later; the
    // one answered when it ends is pinged a moment before the client sees Done.
    let stuck = (sent + period * 2)..(done - period / 2);
    assert!(
        stuck.end > stuck.start + period * 2,
        "the forward pass took only {:?}: too fast to show the watchdog",
        done - sent
    );
    let during: Vec<Duration> = pings
        .iter()
        .filter(|t| stuck.contains(t))
        .map(|&t| t - sent)
        .collect();
    assert!(
        during.is_empty(),
        "pinged at {during:?} during a {:?} forward pass",
        done - sent
    );
    let resumed = pings.iter().filter(|&&t| t >= done).count();
    assert!(resumed >= 2, "pings did not resume after the pass");
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
}

/// `mlock = true` locks the whole model in RAM (VmLck covers the file).
#[test]
fn mlock_locks_the_model() {
    let Some(smol) = smollm() else { return };
    let size = std::fs::metadata(&smol).unwrap().len();
    if memlock_limit() < size && unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "\n!!!!!!!! SKIPPING: RLIMIT_MEMLOCK below the model size (ulimit -l) !!!!!!!!\n"
        );
        return;
    }
    let dir = TempDir::new("sd-mlock");
    let config = write_models(&dir, "mlock = true", &[("smol", &smol)]);
    let mut notify = Notify::bind(&dir);
    let mut child = serve_notified(&config, &notify, |c| c.env("RUST_LOG", "warn"));
    notify.expect("READY=1", Duration::from_secs(60), &mut child);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        locked_kb * 1024 >= size,
        "VmLck {locked_kb} kB < {size} bytes"
    );
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
}

fn memlock_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) }, 0);
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
    let limit = rl.rlim_cur as u64;
    limit
}

/// With RLIMIT_MEMLOCK too low (and no CAP_IPC_LOCK), `mlock = true` is a start-up error that
/// names the limit, the bytes needed and the fix.
#[test]
fn mlock_over_the_limit_names_the_fix() {
    let Some(smol) = smollm() else { return };
    let size = std::fs::metadata(&smol).unwrap().len();
    let dir = TempDir::new("sd-mlock-limit");
    let config = write_models(&dir, "mlock = true", &[("smol", &smol)]);
    let mut cmd = Command::new(common::ggufd());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec. root ignores RLIMIT_MEMLOCK
    // (CAP_IPC_LOCK), so it becomes `nobody` first (which drops every capability).
    unsafe {
        cmd.pre_exec(|| {
            let rl = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::geteuid() == 0 && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "cannot mlock",
        "RLIMIT_MEMLOCK is 1048576 bytes",
        &format!("at least {size} bytes"),
        "LimitMEMLOCK=",
        "ulimit -l",
    ] {
        assert!(stderr.contains(part), "no `{part}` in {stderr}");
    }
}

/// A stream on a model a reload removed may run for `limits.drain_seconds`, then it is
/// cancelled (it still ends with Done, CANCELLED) and the model is unloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_models_streams_are_cancelled_after_the_drain_time() {
    let (Some(smol), Some(gemma)) = (smollm(), gemma()) else {
        return;
    };
    let dir = TempDir::new("sd-retire");
    let extra = "[limits]\ndrain_seconds = 1\n";
    let config = write_models(&dir, extra, &[("smol", &smol), ("gemma", &gemma)]);
    let ReadyDaemon {
        mut notify,
        mut child,
        channel,
        mut client,
    } = serve_ready(&dir, &config, "off", Stdio::null()).await;
    // Counting goes on for thousands of tokens: far longer than the drain time.
    let long = ggufd::server::proto::GenerateRequest {
        model: "gemma".into(),
        ..grpc_common::prompt_request("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", 4000)
    };
    let mut stream = client.generate(long).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let reader = tokio::spawn(finish_stream(first, stream));

    write_models(&dir, extra, &[("smol", &smol)]);
    child.signal(libc::SIGHUP);
    let ready = tokio::task::block_in_place(|| notify.expect_reload(&mut child));
    assert!(ready.contains("removed gemma"), "{ready:?}");
    let reloaded = Instant::now();
    let (text, ids, finish) = tokio::time::timeout(Duration::from_secs(15), reader)
        .await
        .expect("the removed model's stream was not cancelled after the drain time")
        .unwrap();
    assert_eq!(finish, ggufd::server::proto::FinishReason::Cancelled);
    assert!(
        reloaded.elapsed() >= Duration::from_millis(900),
        "cancelled before the drain time"
    );
    assert!(!ids.is_empty() && text.starts_with(" 13,"), "{text:?}");
    let t0 = Instant::now();
    while maps(child.0.id()).contains(GEMMA) {
        assert!(t0.elapsed() < Duration::from_secs(10), "gemma still mapped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(model_names(&channel).await, ["smol"]);
    child.signal(libc::SIGTERM);
    assert!(child.wait_exit(Duration::from_secs(10)).success());
}
