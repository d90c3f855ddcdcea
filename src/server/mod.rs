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
/// bound addresses (one per line) once every model is loaded.
pub fn run(config: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    config.validate()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TOKIO_WORKERS)
        .thread_name("ggufd-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config, ready_file))
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
    Unix(UnixListener, PathBuf),
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
                Listener::Unix(l, path.clone()),
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

async fn serve(config: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
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
    for addr in config.listen_addrs()? {
        let (listener, name) = bind(&addr).await?;
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
                socket_files.push(path);
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

    let model_configs = config.models.clone();
    let scheduler_config = config.scheduler.scheduler_config();
    let loaded = tokio::task::spawn_blocking(move || {
        registry::load_models(&model_configs, &scheduler_config)
    })
    .await
    .context("model loading failed")??;
    for m in &loaded {
        tracing::info!(model = %m.name, arch = %m.card.architecture, n_ctx = m.model.n_ctx, "model ready");
    }
    daemon.set_models(loaded);
    set_health(&health, ServingStatus::Serving).await;
    if let Some(path) = &ready_file {
        let text: String = bound.iter().map(|b| format!("{b}\n")).collect();
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    tracing::info!("serving");

    tokio::select! {
        () = shutdown_signal() => {}
        Some(ended) = servers.join_next() => {
            // A server only stops on its own when its listener fails.
            ended.context("a server task failed")?.context("a server failed")?;
        }
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

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
