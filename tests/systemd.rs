//! `ggufd serve` under a fake systemd: sd_notify datagrams on a socket the test binds (READY
//! after loading, STATUS, watchdog pings, RELOADING on SIGHUP, STOPPING on SIGTERM), socket
//! activation with an inherited listener, and the example config in deploy/.

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
