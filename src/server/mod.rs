//! The daemon: the gRPC API of DESIGN.md §3 over TCP and/or Unix sockets, with health,
//! reflection, optional bearer-token auth and (mutual) TLS.
//!
//! Requests are validated and turned into scheduler jobs here; forward passes run on each
//! model's scheduler thread and the rayon compute pool, never on the (few) tokio workers.

mod auth;
pub mod config;
mod deadline;
mod inference;
mod models;
mod registry;
mod reload;
pub mod systemd;

/// The generated messages, clients and servers of `ggufd.v1`.
#[allow(clippy::all)]
pub mod proto {
    tonic::include_proto!("ggufd.v1");
    /// Encoded file descriptor set of ggufd.proto, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ggufd_descriptor.bin"));
}

use anyhow::Context;
use config::{Config, ListenAddr};
use proto::inference_server::InferenceServer;
use proto::models_server::ModelsServer;
use registry::Daemon;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

/// Async workers: they only move messages; compute runs elsewhere.
const TOKIO_WORKERS: usize = 2;
/// How long cancelled streams, then the servers' connections, get to close after a drain.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Runs the daemon until SIGTERM / SIGINT, then drains. `ready_file`, if given, receives the
/// bound addresses (one per line) once every model is loaded and warmed up. Under systemd it
/// speaks sd_notify (see [`systemd`]) and serves the sockets systemd passed instead of
/// `config.listen`; SIGHUP re-reads `config_path`.
pub fn run(
    config: Config,
    ready_file: Option<PathBuf>,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    config.validate()?;
    // Before the runtime starts any thread: this edits the environment.
    let inherited = systemd::take_listen_fds()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TOKIO_WORKERS)
        .thread_name("ggufd-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config, ready_file, config_path, inherited))
}

fn tls_config(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let read = |field: &str, path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read tls.{field} {}", path.display()))
    };
    let identity = Identity::from_pem(read("cert", &tls.cert)?, read("key", &tls.key)?);
    let mut server = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        server = server.client_ca_root(Certificate::from_pem(read("client_ca", ca)?));
    }
    Ok(Some(server))
}

enum Listener {
    Tcp(TcpListener),
    /// The socket file to remove at exit (none for a socket systemd owns).
    Unix(UnixListener, Option<PathBuf>),
}

async fn bind(addr: &ListenAddr) -> anyhow::Result<(Listener, String)> {
    match addr {
        ListenAddr::Tcp(a) => {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?;
            let bound = l.local_addr()?.to_string();
            Ok((Listener::Tcp(l), bound))
        }
        ListenAddr::Unix(path) => {
            // A socket file left by a previous run would make bind fail; anything else is kept.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            let l = UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            Ok((
                Listener::Unix(l, Some(path.clone())),
                format!("unix:{}", path.display()),
            ))
        }
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

async fn serve_incoming<S, IO, IE>(
    server: Server,
    routes: Routes,
    incoming: S,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error>
where
    S: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut server = server;
    let signal = async move {
        let _ = shutdown.wait_for(|&stop| stop).await;
    };
    server
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
}

async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in ["", "ggufd.v1.Inference", "ggufd.v1.Models"] {
        reporter.set_service_status(service, status).await;
    }
}

fn adopt(inherited: systemd::Inherited) -> anyhow::Result<(Listener, String)> {
    Ok(match inherited {
        systemd::Inherited::Tcp(l, name) => {
            let bound = l.local_addr()?.to_string();
            tracing::info!("socket activation: {name} is {bound}");
            (Listener::Tcp(TcpListener::from_std(l)?), bound)
        }
        systemd::Inherited::Unix(l, name) => {
            let bound = match l.local_addr()?.as_pathname() {
                Some(p) => format!("unix:{}", p.display()),
                None => format!("unix:({name})"),
            };
            tracing::info!("socket activation: {name} is {bound}");
            (Listener::Unix(UnixListener::from_std(l)?, None), bound)
        }
    })
}

async fn serve(
    config: Config,
    ready_file: Option<PathBuf>,
    config_path: Option<PathBuf>,
    inherited: Vec<systemd::Inherited>,
) -> anyhow::Result<()> {
    let notifier = Arc::new(systemd::Notifier::from_env());
    notifier.status("starting");
    let tls = tls_config(&config)?;
    let token = config.auth_token()?;
    let limits = config.limits.clone();
    let daemon = Arc::new(Daemon::new(limits.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let auth = auth::BearerAuth::new(token.clone());
    let inference = InferenceServer::new(inference::InferenceService {
        daemon: daemon.clone(),
    })
    .max_decoding_message_size(limits.max_message_bytes)
    .max_encoding_message_size(limits.max_message_bytes);
    let models = ModelsServer::new(models::ModelsService {
        daemon: daemon.clone(),
    })
    .max_decoding_message_size(limits.max_message_bytes)
    .max_encoding_message_size(limits.max_message_bytes);
    // Health and reflection stay open: probes and tooling need no token, and neither reveals
    // more than the public proto.
    let routes = Routes::new(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(InterceptedService::new(inference, auth.clone()))
        .add_service(InterceptedService::new(models, auth))
        .prepare();
    let per_connection = limits.max_requests_per_connection;
    let server = Server::builder()
        .concurrency_limit_per_connection(per_connection)
        .max_concurrent_streams(u32::try_from(per_connection).unwrap_or(u32::MAX))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut bound = Vec::new();
    let mut socket_files = Vec::new();
    let mut listeners = Vec::new();
    if inherited.is_empty() {
        for addr in config.listen_addrs()? {
            listeners.push(bind(&addr).await?);
        }
    } else {
        if !config.listen.is_empty() {
            tracing::info!("socket-activated: the configured listen addresses are not used");
        }
        for i in inherited {
            listeners.push(adopt(i)?);
        }
    }
    for (listener, name) in listeners {
        println!("ggufd: listening on {name}");
        match listener {
            Listener::Tcp(l) => {
                let ip = l.local_addr()?.ip();
                if !ip.is_loopback() && tls.is_none() {
                    let risk = if token.is_some() {
                        "the auth token travels in clear text"
                    } else {
                        "anyone on the network can use it (no TLS, no auth token)"
                    };
                    tracing::warn!("listening on non-loopback {name} without TLS: {risk}");
                }
                let mut server = server.clone();
                if let Some(tls) = &tls {
                    server = server
                        .tls_config(tls.clone())
                        .context("invalid TLS config")?;
                }
                let incoming = TcpListenerStream::new(l);
                servers.spawn(serve_incoming(
                    server,
                    routes.clone(),
                    incoming,
                    shutdown_rx.clone(),
                ));
            }
            Listener::Unix(l, path) => {
                socket_files.extend(path);
                let incoming = UnixListenerStream::new(l);
                servers.spawn(serve_incoming(
                    server.clone(),
                    routes.clone(),
                    incoming,
                    shutdown_rx.clone(),
                ));
            }
        }
        bound.push(name);
    }

    notifier.status(&format!("loading {} model(s)", config.models.len()));
    let sources = registry::ModelSource::of_config(&config)?;
    let loaded = reload::load_models(&notifier, sources).await?;
    let serving_status = reload::serving_status(&loaded, &bound);
    // Handlers go in before anyone is told we are ready: a SIGHUP or SIGTERM sent right after
    // READY=1 must reach them, not the default action (which would kill the process).
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    daemon.set_models(loaded);
    set_health(&health, ServingStatus::Serving).await;
    if let Some(path) = &ready_file {
        let text: String = bound.iter().map(|b| format!("{b}\n")).collect();
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    tracing::info!("serving");
    notifier.notify(&format!("READY=1\nSTATUS={serving_status}"));
    let mut running = reload::Running::new(config, config_path.as_deref(), bound, serving_status);
    let watchdog = notifier
        .watchdog()
        .map(|timeout| tokio::spawn(watchdog_loop(notifier.clone(), daemon.clone(), timeout)));

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(ended) = servers.join_next() => {
                // A server only stops on its own when its listener fails.
                ended.context("a server task failed")?.context("a server failed")?;
                break;
            }
            Some(()) = hangup.recv() => {
                // A stop request during a long reload wins: the half-done reload is dropped.
                let reload = reload::reload(&daemon, &notifier, config_path.as_deref(), &mut running);
                tokio::select! {
                    () = reload => {}
                    _ = terminate.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
    }
    notifier.notify("STOPPING=1\nSTATUS=draining");
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("draining");
    daemon.start_draining();
    set_health(&health, ServingStatus::NotServing).await;
    let drain = Duration::from_secs(limits.drain_seconds);
    if tokio::time::timeout(drain, daemon.streams_finished())
        .await
        .is_err()
    {
        tracing::warn!("streams still running after {drain:?}; cancelling them");
        daemon.close_streams();
        let _ = tokio::time::timeout(CLOSE_GRACE, daemon.streams_finished()).await;
    }
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    for path in socket_files {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Submits a liveness probe to every model's scheduler and waits for all answers: a job
/// cancelled before it is sent costs no compute and is answered at the scheduler's next turn,
/// i.e. between two forward passes. A scheduler stuck in a forward pass (or hung) answers late
/// or never; a dead one never. Returns false when a scheduler is gone for good.
async fn probe_schedulers(daemon: &Daemon, slow: Duration) -> bool {
    use crate::engine::scheduler::{CancelFlag, Job};
    let Some(models) = daemon.current_models() else {
        return true; // still loading: start-up has its own timeout
    };
    for m in models.iter() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancelFlag::default();
        cancel.cancel();
        let probe = Job {
            prompt: vec![0],
            max_tokens: 0,
            sampling: Default::default(),
            stop: Vec::new(),
            session_id: None,
            cancel,
            events: tx,
        };
        if let Err(e) = m.scheduler.submit_probe(probe) {
            tracing::error!(model = %m.name, "watchdog probe not accepted: {e}");
            return false;
        }
        let t0 = tokio::time::Instant::now();
        let answer = match tokio::time::timeout(slow, rx.recv()).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(
                    model = %m.name,
                    "the scheduler has not answered the watchdog probe for {slow:?} (a forward pass \
                     this long, or a hang): watchdog pings are held back until it does"
                );
                let answer = rx.recv().await;
                if answer.is_some() {
                    tracing::info!(model = %m.name, "the scheduler answered the watchdog probe after {:?}", t0.elapsed());
                }
                answer
            }
        };
        if answer.is_none() {
            tracing::error!(model = %m.name, "the scheduler thread is gone");
            return false;
        }
    }
    true
}

/// Pings WATCHDOG=1 every half timeout, each time only after every scheduler answered a probe:
/// a scheduler stuck for longer than the timeout gets the service killed (WatchdogSec).
async fn watchdog_loop(notifier: Arc<systemd::Notifier>, daemon: Arc<Daemon>, timeout: Duration) {
    let period = timeout / 2;
    loop {
        let next = tokio::time::Instant::now() + period;
        if !probe_schedulers(&daemon, period).await {
            // No more pings: systemd restarts the service when the timeout is up.
            return;
        }
        notifier.notify("WATCHDOG=1");
        // After a late answer, a full period from now (not at once: that would ping twice).
        let now = tokio::time::Instant::now();
        tokio::time::sleep_until(if next > now { next } else { now + period }).await;
    }
}
