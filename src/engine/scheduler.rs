//! Continuous batching for one model: a dedicated thread admits queued requests and advances every
//! active sequence by one token per forward pass, so N concurrent streams share each pass over the
//! weights instead of each paying for it.
//!
//! Requests arrive through a bounded queue (full → the caller reports RESOURCE_EXHAUSTED) and
//! report back through an unbounded event channel, so a slow reader never stalls the others.
//! A request stops at once when it is cancelled or its reader goes away.

use super::sampler::{Sampler, SamplingParams};
use super::sessions::{resume, CachedState, SessionCache};
use super::stop::{StopMatcher, StopOutcome};
use super::text_stream::Utf8Stream;
use super::tokenizer::Tokenizer;
use crate::model::state::StateSnapshot;
use crate::model::{Batch, Logits, Model, ModelError, SeqInput, SeqState};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Sequences advanced together per forward pass.
    pub max_batch: usize,
    /// Requests waiting for a batch slot before new ones are refused.
    pub queue_depth: usize,
    /// Byte budget of the session / prefix cache.
    pub cache_bytes: usize,
    /// Tokens one forward pass processes at most: every decoding sequence's next token, then
    /// prompt chunks, oldest request first. Long prompts are prefilled over several steps, so
    /// the other streams keep receiving tokens meanwhile.
    pub step_tokens: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch: 16,
            queue_depth: 64,
            cache_bytes: 512 << 20,
            step_tokens: 128,
        }
    }
}

/// Set from outside (Cancel RPC, deadline, dropped stream) to stop a request.
#[derive(Clone, Default, Debug)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub session_id: Option<String>,
    pub cancel: CancelFlag,
    pub events: UnboundedSender<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    StopSequence,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Delta {
        text: String,
        token_ids: Vec<u32>,
    },
    Done(Done),
    /// The request could not run (e.g. its prompt does not fit in the context).
    Failed(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the request queue is full")]
    QueueFull,
    #[error("the model's scheduler has stopped")]
    Stopped,
}

/// Handle to a model's scheduler thread. Dropping every handle stops the thread once its active
/// requests are done.
#[derive(Clone)]
pub struct Scheduler {
    queue: Sender<Job>,
    /// Jobs submitted and not yet admitted to a batch or discarded; the worker drops cancelled
    /// jobs from its queue at once, so abandoned requests do not hold queue places.
    waiting: Arc<AtomicUsize>,
    queue_depth: usize,
}

impl Scheduler {
    pub fn spawn(
        model: Arc<Model>,
        tokenizer: Arc<Tokenizer>,
        config: SchedulerConfig,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let queue_depth = config.queue_depth;
        let worker = Worker::new(model, tokenizer, config, waiting.clone());
        std::thread::Builder::new()
            .name("ggufd-scheduler".into())
            .spawn(move || worker.run(jobs))?;
        Ok(Scheduler {
            queue,
            waiting,
            queue_depth,
        })
    }

    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.queue_depth).then_some(n + 1)
            })
            .map_err(|_| SubmitError::QueueFull)?;
        self.send(job)
    }

    /// Like [`Scheduler::submit`] but never refused by a full queue: for the watchdog's
    /// liveness probes (a cancelled job, answered at the worker's next turn), which must not
    /// fail just because the model is busy.
    pub fn submit_probe(&self, job: Job) -> Result<(), SubmitError> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.send(job)
    }

    fn send(&self, job: Job) -> Result<(), SubmitError> {
        self.queue.send(job).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            SubmitError::Stopped
        })
    }
}

impl Job {
    /// Cancelled, or its reader went away.
    fn abandoned(&self) -> bool {
        self.cancel.is_cancelled() || self.events.is_closed()
    }
}

/// One request in flight.
struct Active {
    job: Job,
    state: SeqState,
    sampler: Sampler,
    /// Prompt and generated tokens, for the repeat penalty and the session cache.
    history: Vec<u32>,
    /// Tokens still to feed (the uncached prompt, then one token per step).
    pending: Vec<u32>,
    prompt_end: Option<StateSnapshot>,
    text: Utf8Stream,
    stops: StopMatcher,
    unsent_ids: Vec<u32>,
    cached_tokens: usize,
    generated: usize,
    started: Instant,
    first_token: Option<Instant>,
}

struct Worker {
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    config: SchedulerConfig,
    cache: SessionCache,
    waiting: Arc<AtomicUsize>,
}

impl Worker {
    fn new(
        model: Arc<Model>,
        tokenizer: Arc<Tokenizer>,
        config: SchedulerConfig,
        waiting: Arc<AtomicUsize>,
    ) -> Self {
        let cache = SessionCache::new(config.cache_bytes);
        Worker {
            model,
            tokenizer,
            config,
            cache,
            waiting,
        }
    }

    fn run(mut self, jobs: Receiver<Job>) {
        let mut active: Vec<Active> = Vec::new();
        let mut queue: VecDeque<Job> = VecDeque::new();
        loop {
            // Block for work only when idle; otherwise take whatever has arrived.
            if active.is_empty() && queue.is_empty() {
                // An idle daemon returns the memory of finished sequences.
                crate::alloc::release_freed_memory();
                match jobs.recv() {
                    Ok(job) => queue.push_back(job),
                    Err(_) => return,
                }
            }
            queue.extend(jobs.try_iter());
            queue.retain(|job| {
                let gone = job.abandoned();
                if gone {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    let _ = job.events.send(Event::Done(Done {
                        finish: Finish::Cancelled,
                        prompt_tokens: job.prompt.len(),
                        completion_tokens: 0,
                        cached_tokens: 0,
                        prompt_ms: 0.0,
                        generation_ms: 0.0,
                    }));
                }
                !gone
            });
            while active.len() < self.config.max_batch {
                let Some(job) = queue.pop_front() else { break };
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                self.admit(job, &mut active);
            }
            active.retain_mut(|a| {
                let gone = a.job.abandoned();
                if gone {
                    self.finish(a, Finish::Cancelled);
                }
                !gone
            });
            if !active.is_empty() {
                self.step(&mut active);
            }
        }
    }

    fn admit(&mut self, job: Job, active: &mut Vec<Active>) {
        // The server checks both before submitting; a job that slips through fails alone.
        let unfit = if job.prompt.is_empty() {
            Some(ModelError::EmptyInput)
        } else if job.prompt.len() > self.model.n_ctx {
            Some(ModelError::ContextOverflow {
                needed: job.prompt.len(),
                n_ctx: self.model.n_ctx,
            })
        } else {
            None
        };
        if let Some(e) = unfit {
            let _ = job.events.send(Event::Failed(e.to_string()));
            return;
        }
        let cached = self.cache.take(job.session_id.as_deref(), &job.prompt);
        let model = &self.model;
        let (state, cached_tokens) = resume(cached, &job.prompt, || model.new_state());
        let sampler = Sampler::new(job.sampling.clone());
        let stops = StopMatcher::new(job.stop.clone());
        active.push(Active {
            pending: job.prompt[cached_tokens..].to_vec(),
            history: job.prompt.clone(),
            state,
            sampler,
            prompt_end: None,
            text: Utf8Stream::default(),
            stops,
            unsent_ids: Vec::new(),
            cached_tokens,
            generated: 0,
            started: Instant::now(),
            first_token: None,
            job,
        });
    }

    /// One forward pass over the active sequences' next tokens (at most
    /// [`SchedulerConfig::step_tokens`]), then one sampled token for each sequence whose prompt
    /// is done.
    fn step(&mut self, active: &mut Vec<Active>) {
        let n_vocab = self.model.n_vocab();
        let decoding = active.iter().filter(|a| a.first_token.is_some()).count();
        let mut budget = self.config.step_tokens.saturating_sub(decoding).max(1);
        let inputs: Vec<Vec<u32>> = active
            .iter_mut()
            .map(|a| {
                let n = if a.first_token.is_some() {
                    a.pending.len()
                } else {
                    let n = a.pending.len().min(budget);
                    budget -= n;
                    n
                };
                a.pending.drain(..n).collect()
            })
            .collect();
        let mut batch = Batch {
            seqs: active
                .iter_mut()
                .zip(&inputs)
                .filter(|(_, tokens)| !tokens.is_empty())
                .map(|(a, tokens)| SeqInput {
                    tokens,
                    state: &mut a.state,
                    logits: Logits::Last,
                })
                .collect(),
        };
        // A panic in the forward pass must not take the scheduler (and every later request) down.
        let result = match catch_unwind(AssertUnwindSafe(|| self.model.forward(&mut batch))) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the forward pass panicked".to_string()),
        };
        drop(batch);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                // Inputs are checked at admission, so this is a model-level failure.
                for a in active.drain(..) {
                    let _ = a.job.events.send(Event::Failed(e.clone()));
                }
                return;
            }
        };
        let mut inputs = inputs.iter();
        let mut row = 0;
        active.retain_mut(|a| {
            if inputs.next().is_none_or(Vec::is_empty) {
                return true; // not in this pass
            }
            let row_logits = &logits[row * n_vocab..(row + 1) * n_vocab];
            row += 1;
            if !a.pending.is_empty() {
                return true; // still prefilling: this chunk's logits are not needed
            }
            if a.first_token.is_none() {
                a.first_token = Some(Instant::now());
                if !a.state.can_truncate() {
                    a.prompt_end = Some(a.state.snapshot());
                }
            }
            match self.advance(a, row_logits) {
                Some(finish) => {
                    self.finish(a, finish);
                    false
                }
                None => true,
            }
        });
    }

    /// Samples the next token of `a` and streams it; returns why the request ends, if it does.
    fn advance(&self, a: &mut Active, logits: &[f32]) -> Option<Finish> {
        let next = a.sampler.sample(logits, &a.history);
        if self.tokenizer.is_eog(next) {
            return Some(Finish::Stop);
        }
        a.history.push(next);
        a.generated += 1;
        a.unsent_ids.push(next);
        let piece = a.text.push(&self.tokenizer.token_bytes(next));
        match a.stops.push(&piece) {
            StopOutcome::Stopped(text) => {
                self.send_delta(a, text);
                return Some(Finish::StopSequence);
            }
            StopOutcome::Continue(text) if !text.is_empty() => self.send_delta(a, text),
            StopOutcome::Continue(_) => {}
        }
        if a.generated >= a.job.max_tokens || a.state.n_past >= self.model.n_ctx {
            return Some(Finish::Length);
        }
        a.pending.push(next);
        None
    }

    fn send_delta(&self, a: &mut Active, text: String) {
        let token_ids = std::mem::take(&mut a.unsent_ids);
        let _ = a.job.events.send(Event::Delta { text, token_ids });
    }

    /// Flushes held-back text, reports Done and, unless cancelled, keeps the state for reuse.
    fn finish(&mut self, a: &mut Active, mut finish: Finish) {
        if finish != Finish::StopSequence && finish != Finish::Cancelled {
            let tail = a.text.finish();
            let rest = match a.stops.push(&tail) {
                StopOutcome::Continue(t) => t + &a.stops.finish(),
                StopOutcome::Stopped(t) => {
                    finish = Finish::StopSequence;
                    t
                }
            };
            if !rest.is_empty() || !a.unsent_ids.is_empty() {
                self.send_delta(a, rest);
            }
        }
        let end = Instant::now();
        let first = a.first_token.unwrap_or(end);
        let done = Done {
            finish,
            prompt_tokens: a.job.prompt.len(),
            completion_tokens: a.generated,
            cached_tokens: a.cached_tokens,
            prompt_ms: (first - a.started).as_secs_f64() * 1e3,
            generation_ms: (end - first).as_secs_f64() * 1e3,
        };
        let _ = a.job.events.send(Event::Done(done));
        if finish == Finish::Cancelled || a.state.n_past == 0 {
            return; // a cancelled request's state is freed, not cached
        }
        // The state has consumed every token of the history but the last sampled one.
        let mut tokens = std::mem::take(&mut a.history);
        tokens.truncate(a.state.n_past);
        let state = std::mem::replace(
            &mut a.state,
            SeqState {
                n_past: 0,
                layers: Vec::new(),
            },
        );
        self.cache.put(
            a.job.session_id.clone(),
            CachedState {
                state,
                tokens,
                prompt_end: a.prompt_end.take(),
            },
        );
    }
}
