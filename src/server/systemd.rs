//! systemd integration without a dependency: the `sd_notify` protocol (READY, STATUS, WATCHDOG,
//! STOPPING, RELOADING datagrams to `$NOTIFY_SOCKET`, abstract `@` names included) and socket
//! activation (`LISTEN_FDS` / `LISTEN_PID` / `LISTEN_FDNAMES`, fds from 3). Every notification
//! is a no-op when the daemon was not started by systemd.
//!
//! std's `UnixDatagram` and two `libc` calls (already a dependency) cover both; `nix` would add a
//! crate for the same few lines.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, read once at start-up.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (`WATCHDOG_PID`, when set, must be ours).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let addr = notify_addr(&path)?;
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, addr))
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0 && ours)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog timeout systemd enforces, if any (pings go at half of it).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Sends `state` (newline-separated `KEY=value` lines); failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some((sock, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
            tracing::warn!("sd_notify failed: {e}");
        }
    }

    pub fn status(&self, text: &str) {
        // One line: a newline would start another assignment.
        self.notify(&format!("STATUS={}", text.replace('\n', " ")));
    }
}

fn notify_addr(path: &std::ffi::OsStr) -> Option<std::os::unix::net::SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    match bytes.first()? {
        b'@' => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..]).ok()
        }
        b'/' => std::os::unix::net::SocketAddr::from_pathname(path).ok(),
        _ => None, // vsock and other forms are not supported
    }
}

/// A listening socket handed over by systemd.
pub enum Inherited {
    Tcp(std::net::TcpListener, String),
    Unix(std::os::unix::net::UnixListener, String),
}

const SD_LISTEN_FDS_START: RawFd = 3;

/// Takes the sockets systemd passed (`LISTEN_PID` must be this process) and clears the
/// variables so children do not inherit them. Empty when not socket-activated.
///
/// Call before any thread is started (it edits the environment).
pub fn take_listen_fds() -> anyhow::Result<Vec<Inherited>> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<i32>().ok());
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    // SAFETY (edition 2021: safe to call): single-threaded at this point, see above.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let (true, Some(count)) = (pid_ok, count) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for i in 0..count.max(0) {
        let fd = SD_LISTEN_FDS_START + i;
        let name = names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("fd{fd}"));
        out.push(adopt(fd, name)?);
    }
    Ok(out)
}

fn adopt(fd: RawFd, name: String) -> anyhow::Result<Inherited> {
    // SAFETY: plain syscalls on an fd number; nothing is dereferenced but our own buffers.
    let family = unsafe {
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
            anyhow::bail!(
                "socket activation: fd {fd} ({name}): {}",
                std::io::Error::last_os_error()
            );
        }
        let mut accepting: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let ok = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        ) == 0;
        if !ok || accepting == 0 {
            anyhow::bail!("socket activation: fd {fd} ({name}) is not a listening stream socket");
        }
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) < 0
        {
            anyhow::bail!(
                "socket activation: fd {fd} ({name}): {}",
                std::io::Error::last_os_error()
            );
        }
        addr.ss_family as libc::c_int
    };
    // SAFETY: systemd passed us ownership of this fd; it is adopted exactly once.
    match family {
        libc::AF_INET | libc::AF_INET6 => {
            let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            l.set_nonblocking(true)?;
            Ok(Inherited::Tcp(l, name))
        }
        libc::AF_UNIX => {
            let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            l.set_nonblocking(true)?;
            Ok(Inherited::Unix(l, name))
        }
        other => anyhow::bail!("socket activation: fd {fd} ({name}) has address family {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_addresses() {
        assert!(notify_addr("@ggufd/notify".as_ref()).is_some());
        assert!(notify_addr("/run/systemd/notify".as_ref()).is_some());
        assert!(notify_addr("relative".as_ref()).is_none());
        assert!(notify_addr("".as_ref()).is_none());
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ggufd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), addr)),
            watchdog: None,
        };
        n.status("two\nlines");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=two lines");
    }
}
