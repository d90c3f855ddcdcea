//! The served models (each mapped once and shared by every request) and the daemon state the
//! services share: readiness, draining, and the running requests that `Cancel` can reach.
//!
//! The model set is swapped whole by a reload (see `reload.rs`): a request takes an `Arc` of
//! its model when it starts, so a removed model stays alive for the streams already on it and
//! is unmapped when the last of them and its scheduler thread are gone.

use super::config::{Config, Limits, ModelConfig};
use super::proto;
use crate::engine::scheduler::{CancelFlag, Scheduler, SchedulerConfig};
use crate::engine::tokenizer::Tokenizer;
use crate::model::Model;
use anyhow::Context;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tokio::sync::watch;
use tonic::Status;

pub struct ServedModel {
    pub name: String,
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub scheduler: Scheduler,
    pub card: proto::ModelCard,
    /// What was loaded and how: a reload keeps this model only while its entry still says so.
    pub source: ModelSource,
    /// Streams running on this model (a removed model is unloaded once they are done).
    streams: watch::Sender<usize>,
    /// Set when a reload removed this model and its drain time is up: its streams are cancelled.
    retired: watch::Sender<bool>,
}

/// The identity of a loaded model: its file (by inode, size and mtime, so a file replaced on
/// disk counts as changed) and every setting that shapes it. Equal sources mean a reload keeps
/// the running model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSource {
    pub name: String,
    pub path: PathBuf,
    file: (u64, u64, u64, Option<SystemTime>),
    ctx_size: Option<usize>,
    mlock: bool,
    scheduler: SchedulerConfig,
}

impl ModelSource {
    /// Names the entry (default: the file name without its extension) and stats its file.
    pub fn of(
        config: &ModelConfig,
        mlock: bool,
        scheduler: &SchedulerConfig,
    ) -> anyhow::Result<ModelSource> {
        use std::os::unix::fs::MetadataExt;
        let path = &config.path;
        let name = match &config.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .with_context(|| format!("{} has no file name", path.display()))?,
        };
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot load model {}", path.display()))?;
        Ok(ModelSource {
            name,
            path: path.clone(),
            file: (meta.dev(), meta.ino(), meta.len(), meta.modified().ok()),
            ctx_size: config.ctx_size,
            mlock,
            scheduler: scheduler.clone(),
        })
    }

    /// The sources of a config's models, in order; names must be unique.
    pub fn of_config(config: &Config) -> anyhow::Result<Vec<ModelSource>> {
        let scheduler = config.scheduler.scheduler_config();
        let sources: Vec<ModelSource> = config
            .models
            .iter()
            .map(|m| ModelSource::of(m, config.mlock, &scheduler))
            .collect::<anyhow::Result<_>>()?;
        for (i, m) in sources.iter().enumerate() {
            if sources[..i].iter().any(|o| o.name == m.name) {
                anyhow::bail!("two models are named `{}`; give one a `name`", m.name);
            }
        }
        Ok(sources)
    }
}

impl ServedModel {
    /// Maps the model (and locks it when asked), builds its tokenizer and starts its scheduler.
    pub fn load(source: ModelSource) -> anyhow::Result<ServedModel> {
        let path = &source.path;
        let mut model =
            Model::load(path).with_context(|| format!("cannot load model {}", path.display()))?;
        if let Some(n) = source.ctx_size {
            if n > model.hparams.n_ctx_train {
                anyhow::bail!(
                    "ctx_size {n} of {} exceeds the model's context length {}",
                    path.display(),
                    model.hparams.n_ctx_train
                );
            }
            model.n_ctx = n;
        }
        let tokenizer = Tokenizer::from_metadata(&model.file.metadata)
            .with_context(|| format!("cannot build the tokenizer of {}", path.display()))?;
        if !tokenizer.can_encode() || tokenizer.vocab_size() > model.n_vocab() {
            anyhow::bail!("{} has no usable tokenizer", path.display());
        }
        // The tokenizer holds the vocabulary now; the metadata's copy is tens of MiB.
        model.release_vocabulary();
        if source.mlock {
            lock_model(&model, path)?;
        }
        let name = source.name.clone();
        let card = model_card(&name, &model);
        let model = Arc::new(model);
        let tokenizer = Arc::new(tokenizer);
        let scheduler =
            Scheduler::spawn(model.clone(), tokenizer.clone(), source.scheduler.clone())
                .context("cannot start the scheduler thread")?;
        Ok(ServedModel {
            name,
            model,
            tokenizer,
            scheduler,
            card,
            source,
            streams: watch::Sender::new(0),
            retired: watch::Sender::new(false),
        })
    }

    /// Waits until no stream runs on this model.
    pub async fn streams_finished(&self) {
        let mut rx = self.streams.subscribe();
        let _ = rx.wait_for(|&n| n == 0).await;
    }

    pub fn running_streams(&self) -> usize {
        *self.streams.borrow()
    }

    /// Cancels the streams still running on this (removed) model; each still ends with Done.
    pub fn close_streams(&self) {
        self.retired.send_replace(true);
    }
}

/// mlock(2) of the whole mapped file. Failing is a load error: the operator asked for it, and a
/// model that is silently paged out would be slow in exactly the way `mlock` is meant to prevent.
fn lock_model(model: &Model, path: &std::path::Path) -> anyhow::Result<()> {
    let bytes = model.file.file_bytes();
    let Err(err) = model.file.lock_in_memory() else {
        tracing::info!("{}: {bytes} bytes locked in RAM (mlock)", path.display());
        return Ok(());
    };
    let code = err.raw_os_error();
    if !matches!(code, Some(libc::ENOMEM | libc::EPERM | libc::EAGAIN)) {
        anyhow::bail!("cannot mlock {} ({bytes} bytes): {err}", path.display());
    }
    let locked = locked_bytes().unwrap_or(0);
    let needed = locked + bytes;
    let limit = match memlock_limit() {
        Some(None) => "unlimited".to_string(),
        Some(Some(n)) => format!("{n} bytes"),
        None => "unknown".to_string(),
    };
    anyhow::bail!(
        "cannot mlock {} ({bytes} bytes; `mlock = true` in the config): {err}. \
         RLIMIT_MEMLOCK is {limit} and {locked} bytes are already locked, so the process needs \
         at least {needed} bytes: set `LimitMEMLOCK=infinity` (or LimitMEMLOCK={needed}) in the \
         [Service] section of ggufd.service (`systemctl edit ggufd`), or `ulimit -l unlimited` \
         in the shell that starts ggufd, or set `mlock = false`. If the limit is already high \
         enough, the machine lacks the free RAM to hold the model.",
        path.display()
    )
}

/// The soft RLIMIT_MEMLOCK: None if it cannot be read, Some(None) when unlimited.
fn memlock_limit() -> Option<Option<u64>> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 {
        return None;
    }
    // rlim_t is 32 bits on some targets (32-bit Raspberry Pi OS).
    #[allow(clippy::unnecessary_cast)]
    Some((rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur as u64))
}

/// Bytes this process has locked already (`VmLck` of /proc/self/status).
fn locked_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn model_card(name: &str, model: &Model) -> proto::ModelCard {
    let c = model.card();
    proto::ModelCard {
        name: name.to_string(),
        architecture: c.architecture,
        kind: c.kind,
        parameters: c.parameters,
        active_parameters: c.active_parameters,
        file_bytes: c.file_bytes,
        // What this daemon serves, which `ctx_size` may have lowered.
        context_length: u32::try_from(model.n_ctx).unwrap_or(u32::MAX),
        layers: c.layers,
        layer_map: c.layer_map,
        experts: c.experts,
        experts_used: c.experts_used,
        has_chat_template: c.has_chat_template,
    }
}

/// The models being served, in config order; the first is the default.
pub type ModelSet = Arc<Vec<Arc<ServedModel>>>;

/// State shared by the services of every listener.
pub struct Daemon {
    /// None while the first set loads; a reload swaps the whole set at once.
    models: RwLock<Option<ModelSet>>,
    draining: AtomicBool,
    running: Mutex<HashMap<String, CancelFlag>>,
    /// Streams in flight; a drain waits for this to reach 0.
    streams: watch::Sender<usize>,
    /// Set when a drain's time is up: the streams still running are cancelled.
    closing: watch::Sender<bool>,
    pub limits: Limits,
}

impl Daemon {
    pub fn new(limits: Limits) -> Self {
        Daemon {
            models: RwLock::new(None),
            draining: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            streams: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            limits,
        }
    }

    /// Serves `models` from now on; returns the set it replaces. Requests already holding a
    /// model of the old set keep it until they are done.
    pub fn set_models(&self, models: Vec<Arc<ServedModel>>) -> Option<ModelSet> {
        let mut slot = self.models.write().unwrap_or_else(|e| e.into_inner());
        slot.replace(Arc::new(models))
    }

    /// The current set, draining or not.
    pub fn current_models(&self) -> Option<ModelSet> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn models(&self) -> Result<ModelSet, Status> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Status::unavailable("the daemon is shutting down"));
        }
        self.current_models()
            .ok_or_else(|| Status::unavailable("models are still loading"))
    }

    /// The model a request names; empty means the default (first) model.
    pub fn model(&self, name: &str) -> Result<Arc<ServedModel>, Status> {
        let models = self.models()?;
        let found = if name.is_empty() {
            models.first()
        } else {
            models.iter().find(|m| m.name == name)
        };
        found
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no model named `{name}`")))
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Cancels every running stream (each still ends with its Done).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Waits until no stream is running.
    pub async fn streams_finished(&self) {
        let mut rx = self.streams.subscribe();
        let _ = rx.wait_for(|&n| n == 0).await;
    }

    /// Records a starting stream; `request_id` (if any) becomes reachable by `Cancel` until the
    /// returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        request_id: &str,
        cancel: &CancelFlag,
        model: &Arc<ServedModel>,
    ) -> Result<RunningStream, Status> {
        let id = (!request_id.is_empty()).then(|| request_id.to_string());
        if let Some(id) = &id {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if running.contains_key(id) {
                return Err(Status::invalid_argument(format!(
                    "request_id `{id}` is already running"
                )));
            }
            running.insert(id.clone(), cancel.clone());
        }
        self.streams.send_modify(|n| *n += 1);
        model.streams.send_modify(|n| *n += 1);
        Ok(RunningStream {
            daemon: self.clone(),
            model: model.clone(),
            request_id: id,
        })
    }

    /// Cancels the running request with this id; false if there is none.
    pub fn cancel(&self, request_id: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.get(request_id) {
            Some(flag) => {
                flag.cancel();
                true
            }
            None => false,
        }
    }
}

/// A stream in flight (see [`Daemon::register`]).
pub struct RunningStream {
    daemon: Arc<Daemon>,
    model: Arc<ServedModel>,
    request_id: Option<String>,
}

impl RunningStream {
    /// Resolves once [`Daemon::close_streams`] is called, or [`ServedModel::close_streams`] for
    /// the stream's model.
    pub async fn closed_by_daemon(&self) {
        let mut closing = self.daemon.closing.subscribe();
        let mut retired = self.model.retired.subscribe();
        tokio::select! {
            _ = closing.wait_for(|&c| c) => {}
            _ = retired.wait_for(|&r| r) => {}
        }
    }
}

impl Drop for RunningStream {
    fn drop(&mut self) {
        if let Some(id) = &self.request_id {
            let mut running = self
                .daemon
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            running.remove(id);
        }
        self.daemon.streams.send_modify(|n| *n -= 1);
        self.model.streams.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &std::path::Path, name: Option<&str>, ctx_size: Option<usize>) -> ModelConfig {
        ModelConfig {
            path: path.to_path_buf(),
            name: name.map(str::to_string),
            ctx_size,
        }
    }

    #[test]
    fn a_reload_keeps_a_model_only_when_nothing_about_it_changed() {
        let dir = std::env::temp_dir().join(format!("ggufd-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tiny.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let sched = SchedulerConfig::default();
        let source = |c: &ModelConfig, mlock, s: &SchedulerConfig| ModelSource::of(c, mlock, s);
        let base = source(&entry(&file, None, None), false, &sched).unwrap();
        assert_eq!(base.name, "tiny", "default name: the file stem");
        assert_eq!(
            source(&entry(&file, None, None), false, &sched).unwrap(),
            base
        );
        assert_ne!(
            source(&entry(&file, Some("t"), None), false, &sched).unwrap(),
            base
        );
        assert_ne!(
            source(&entry(&file, None, Some(64)), false, &sched).unwrap(),
            base
        );
        assert_ne!(
            source(&entry(&file, None, None), true, &sched).unwrap(),
            base
        );
        let other = SchedulerConfig {
            max_batch: 3,
            ..sched.clone()
        };
        assert_ne!(
            source(&entry(&file, None, None), false, &other).unwrap(),
            base
        );
        // The same path with other contents is another file.
        std::fs::write(&file, b"GGUF and more").unwrap();
        assert_ne!(
            source(&entry(&file, None, None), false, &sched).unwrap(),
            base
        );

        let missing = dir.join("missing.gguf");
        let err = source(&entry(&missing, None, None), false, &sched).unwrap_err();
        assert!(format!("{err:#}").contains("missing.gguf"), "{err:#}");
        let config = Config {
            models: vec![entry(&file, None, None), entry(&file, None, None)],
            ..Config::default()
        };
        let err = ModelSource::of_config(&config).unwrap_err();
        assert!(
            err.to_string().contains("two models are named `tiny`"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
