//! Loading the model set, and swapping it on SIGHUP (`systemctl reload ggufd`).
//!
//! A reload re-reads the config file, then diffs its models against the running ones by
//! [`ModelSource`] (name, file identity, ctx_size, mlock, `[scheduler]`):
//!
//! - unchanged models keep running: same scheduler, same streams, same session cache;
//! - new models (and changed ones, which are a removal plus an addition) are mapped, locked
//!   when `mlock = true`, and warmed up *before* the new set is published and READY=1 is sent;
//! - removed models stop taking requests at the swap (NOT_FOUND), their running streams may
//!   finish for `limits.drain_seconds`, then are cancelled (Done CANCELLED); the model is
//!   unmapped when its last stream and its scheduler thread are gone.
//!
//! Anything wrong with the new config (parse or validation error, a missing file, a model that
//! fails to load or warm up) aborts the reload before the swap: the old set keeps serving and the
//! error is logged and put in the STATUS that comes with READY=1.
//!
//! Everything else (`listen`, `threads`, `[limits]`, `[auth]`, `[tls]`) is read at start-up
//! only: a reload that changes it logs a warning that a restart is needed.

use super::config::Config;
use super::registry::{Daemon, ModelSource, ServedModel};
use super::systemd::Notifier;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long cancelled streams of a removed model get to end, and its scheduler to stop.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Maps, (mlocks,) and warms up `sources` in order; the first error is returned and whatever was
/// loaded is dropped (their scheduler threads stop).
pub async fn load_models(
    notifier: &Notifier,
    sources: Vec<ModelSource>,
) -> anyhow::Result<Vec<Arc<ServedModel>>> {
    let mut loaded = Vec::new();
    for source in sources {
        let name = source.name.clone();
        notifier.status(&format!("loading {name}"));
        let m = tokio::task::spawn_blocking(move || ServedModel::load(source))
            .await
            .context("model loading failed")??;
        tracing::info!(model = %m.name, arch = %m.card.architecture, n_ctx = m.model.n_ctx, "model loaded");
        loaded.push(Arc::new(m));
    }
    for m in &loaded {
        notifier.status(&format!("warming up {}", m.name));
        warm_up(m)
            .await
            .with_context(|| format!("the warm-up pass of model {} failed", m.name))?;
    }
    Ok(loaded)
}

/// One forward pass per model before it is served, so the first request does not pay for page
/// faults and a model that cannot run is a load failure rather than a failed request.
async fn warm_up(m: &ServedModel) -> anyhow::Result<()> {
    use crate::engine::scheduler::{CancelFlag, Event, Job};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prompt = m
        .tokenizer
        .bos()
        .map(|b| vec![b])
        .unwrap_or_else(|| m.tokenizer.encode("Hello", false, false));
    let prompt = if prompt.is_empty() { vec![0] } else { prompt };
    m.scheduler.submit(Job {
        prompt,
        max_tokens: 1,
        sampling: Default::default(),
        stop: Vec::new(),
        session_id: None,
        cancel: CancelFlag::default(),
        events: tx,
    })?;
    while let Some(event) = rx.recv().await {
        match event {
            Event::Delta { .. } => {}
            Event::Done(_) => return Ok(()),
            Event::Failed(e) => anyhow::bail!("{e}"),
        }
    }
    anyhow::bail!("the scheduler stopped")
}

/// The STATUS line of a serving daemon.
pub fn serving_status(models: &[Arc<ServedModel>], bound: &[String]) -> String {
    format!(
        "serving {} on {}",
        models
            .iter()
            .map(|m| format!(
                "{} ({}, ctx {})",
                m.name, m.card.architecture, m.model.n_ctx
            ))
            .collect::<Vec<_>>()
            .join(", "),
        bound.join(", ")
    )
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// What the daemon runs with, as far as a reload is concerned.
pub struct Running {
    /// The effective config: the file at start-up with the command-line flags on top, and the
    /// model parts of each successful reload since.
    pub config: Config,
    /// Set when flags replaced the file's models (`--model`): a reload then keeps them.
    pub models_from_flags: bool,
    /// Set when flags changed `[scheduler]` (`--max-batch`, `--queue-depth`): a reload keeps it.
    pub scheduler_from_flags: bool,
    pub bound: Vec<String>,
    /// The STATUS sent with READY=1.
    pub status: String,
}

impl Running {
    /// Notes which parts of `config` came from flags rather than the file at `path`.
    pub fn new(config: Config, path: Option<&Path>, bound: Vec<String>, status: String) -> Self {
        let file = path.and_then(|p| Config::from_file(p).ok());
        let models_from_flags = file.as_ref().is_some_and(|f| f.models != config.models);
        let scheduler_from_flags = file
            .as_ref()
            .is_some_and(|f| f.scheduler != config.scheduler);
        Running {
            config,
            models_from_flags,
            scheduler_from_flags,
            bound,
            status,
        }
    }
}

/// SIGHUP: RELOADING=1, apply the config file's model changes (or keep everything on any
/// error), READY=1 with a STATUS saying what happened.
pub async fn reload(
    daemon: &Arc<Daemon>,
    notifier: &Notifier,
    path: Option<&Path>,
    running: &mut Running,
) {
    notifier.notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
        monotonic_usec()
    ));
    let report = match path {
        None => "reload: no config file (started without --config); nothing to re-read".into(),
        Some(path) => match apply(daemon, notifier, path, running).await {
            Ok(report) => {
                tracing::info!("{report}");
                report
            }
            Err(e) => {
                tracing::error!("reload failed, keeping the running models: {e:#}");
                format!("reload failed, keeping the running models: {e:#}")
            }
        },
    };
    notifier.notify(&format!(
        "READY=1\nSTATUS={}; {}",
        running.status,
        report.replace('\n', " ")
    ));
}

/// The settings a reload does not apply, by config key, that differ between `a` and `b`.
fn restart_only_changes(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if a.listen != b.listen {
        changed.push("listen");
    }
    if a.threads != b.threads {
        changed.push("threads");
    }
    if a.limits != b.limits {
        changed.push("limits");
    }
    if a.auth != b.auth {
        changed.push("auth");
    }
    if a.tls != b.tls {
        changed.push("tls");
    }
    changed
}

async fn apply(
    daemon: &Arc<Daemon>,
    notifier: &Notifier,
    path: &Path,
    running: &mut Running,
) -> anyhow::Result<String> {
    let mut new = Config::from_file(path)?;
    if running.models_from_flags {
        new.models = running.config.models.clone();
    }
    if running.scheduler_from_flags {
        new.scheduler = running.config.scheduler.clone();
    }
    new.validate()?;
    let sources = ModelSource::of_config(&new)?;
    let current = daemon.current_models().unwrap_or_default();

    // The new set in config order; None where a model has to be loaded.
    let mut next: Vec<Option<Arc<ServedModel>>> = Vec::new();
    let mut to_load = Vec::new();
    for source in sources {
        match current.iter().find(|m| m.source == source) {
            Some(m) => next.push(Some(m.clone())),
            None => {
                next.push(None);
                to_load.push(source);
            }
        }
    }
    let mut loaded = load_models(notifier, to_load).await?.into_iter();
    let next: Vec<Arc<ServedModel>> = next
        .into_iter()
        .map(|m| m.or_else(|| loaded.next()))
        .collect::<Option<_>>()
        .context("internal error: a loaded model is missing")?;
    let removed: Vec<Arc<ServedModel>> = current
        .iter()
        .filter(|m| !next.iter().any(|n| Arc::ptr_eq(n, m)))
        .cloned()
        .collect();

    let names = |it: &mut dyn Iterator<Item = &Arc<ServedModel>>| {
        it.map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let is_current = |m: &Arc<ServedModel>| current.iter().any(|c| Arc::ptr_eq(c, m));
    let was_named = |m: &Arc<ServedModel>| current.iter().any(|c| c.name == m.name);
    let mut parts = Vec::new();
    let added = names(&mut next.iter().filter(|m| !is_current(m) && !was_named(m)));
    let changed = names(&mut next.iter().filter(|m| !is_current(m) && was_named(m)));
    let gone = names(
        &mut removed
            .iter()
            .filter(|m| !next.iter().any(|n| n.name == m.name)),
    );
    let kept = names(&mut next.iter().filter(|m| is_current(m)));
    for (what, list) in [
        ("added", added),
        ("reloaded", changed),
        ("removed", gone),
        ("kept", kept),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what} {list}"));
        }
    }

    running.status = serving_status(&next, &running.bound);
    daemon.set_models(next);
    let drain = Duration::from_secs(daemon.limits.drain_seconds);
    for m in removed {
        tokio::spawn(retire(m, drain));
    }

    let restart = restart_only_changes(&running.config, &new);
    running.config.models = new.models;
    running.config.mlock = new.mlock;
    running.config.scheduler = new.scheduler;
    let mut report = format!("config re-read: {}", parts.join("; "));
    if !restart.is_empty() {
        let keys = restart.join(", ");
        tracing::warn!(
            "reload: `{keys}` changed; that takes effect after a restart (systemctl restart ggufd)"
        );
        report.push_str(&format!("; `{keys}` changes need a restart"));
    }
    Ok(report)
}

/// A model a reload removed: lets its streams finish within `drain`, cancels the rest, and
/// reports when it is unloaded.
async fn retire(model: Arc<ServedModel>, drain: Duration) {
    let name = model.name.clone();
    let n = model.running_streams();
    if n > 0 {
        tracing::info!(model = %name, "removed: {n} running stream(s) may finish for {drain:?}");
    }
    if tokio::time::timeout(drain, model.streams_finished())
        .await
        .is_err()
    {
        tracing::warn!(model = %name, "removed: streams still running after {drain:?}; cancelling them");
        model.close_streams();
        let _ = tokio::time::timeout(RETIRE_GRACE, model.streams_finished()).await;
    }
    // The scheduler thread stops once the last handle is gone and it is idle; it and any request
    // still holding the model keep the map alive until then.
    let weak = Arc::downgrade(&model.model);
    drop(model);
    let t0 = tokio::time::Instant::now();
    while weak.strong_count() > 0 {
        if t0.elapsed() > RETIRE_GRACE {
            tracing::warn!(model = %name, "removed, but still in use: unmapped when the last request holding it ends");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(model = %name, "removed and unloaded");
}
