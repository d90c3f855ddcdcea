//! The served models (each mapped once and shared by every request) and the daemon state the
//! services share: readiness, draining, and the running requests that `Cancel` can reach.

use super::config::{Limits, ModelConfig};
use super::proto;
use crate::engine::scheduler::{CancelFlag, Scheduler, SchedulerConfig};
use crate::engine::tokenizer::Tokenizer;
use crate::model::Model;
use anyhow::Context;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;
use tonic::Status;

pub struct ServedModel {
    pub name: String,
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub scheduler: Scheduler,
    pub card: proto::ModelCard,
}

impl ServedModel {
    fn load(config: &ModelConfig, scheduler: &SchedulerConfig) -> anyhow::Result<ServedModel> {
        let path = &config.path;
        let mut model =
            Model::load(path).with_context(|| format!("cannot load model {}", path.display()))?;
        if let Some(n) = config.ctx_size {
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
        let name = match &config.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .with_context(|| format!("{} has no file name", path.display()))?,
        };
        let card = model_card(&name, &model);
        let model = Arc::new(model);
        let tokenizer = Arc::new(tokenizer);
        let scheduler = Scheduler::spawn(model.clone(), tokenizer.clone(), scheduler.clone())
            .context("cannot start the scheduler thread")?;
        Ok(ServedModel {
            name,
            model,
            tokenizer,
            scheduler,
            card,
        })
    }
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

/// Loads every configured model; the first is the default.
pub fn load_models(
    configs: &[ModelConfig],
    scheduler: &SchedulerConfig,
) -> anyhow::Result<Vec<ServedModel>> {
    let models: Vec<ServedModel> = configs
        .iter()
        .map(|c| ServedModel::load(c, scheduler))
        .collect::<anyhow::Result<_>>()?;
    for (i, m) in models.iter().enumerate() {
        if models[..i].iter().any(|o| o.name == m.name) {
            anyhow::bail!("two models are named `{}`; give one a `name`", m.name);
        }
    }
    Ok(models)
}

/// State shared by the services of every listener.
pub struct Daemon {
    models: OnceLock<Vec<ServedModel>>,
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
            models: OnceLock::new(),
            draining: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            streams: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            limits,
        }
    }

    pub fn set_models(&self, models: Vec<ServedModel>) {
        // Called once, after loading; a second call would be a bug in start-up.
        let _ = self.models.set(models);
    }

    pub fn models(&self) -> Result<&[ServedModel], Status> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Status::unavailable("the daemon is shutting down"));
        }
        self.models
            .get()
            .map(Vec::as_slice)
            .ok_or_else(|| Status::unavailable("models are still loading"))
    }

    /// The model a request names; empty means the default (first) model.
    pub fn model(&self, name: &str) -> Result<&ServedModel, Status> {
        let models = self.models()?;
        let found = if name.is_empty() {
            models.first()
        } else {
            models.iter().find(|m| m.name == name)
        };
        found.ok_or_else(|| Status::not_found(format!("no model named `{name}`")))
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
        Ok(RunningStream {
            daemon: self.clone(),
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
    request_id: Option<String>,
}

impl RunningStream {
    /// Resolves once [`Daemon::close_streams`] is called.
    pub async fn closed_by_daemon(&self) {
        let mut closing = self.daemon.closing.subscribe();
        let _ = closing.wait_for(|&c| c).await;
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
    }
}
