//! The `Inference` service: request validation, prompt preparation, and the bridge from a
//! scheduler's event channel to a gRPC stream with deadline and cancellation.

use super::deadline;
use super::proto::generate_request::Input;
use super::proto::{self, inference_server::Inference};
use super::registry::{Daemon, RunningStream, ServedModel};
use crate::engine::chat::{chat_prompt_tokens, Message};
use crate::engine::sampler::SamplingParams;
use crate::engine::scheduler::{CancelFlag, Done, Event, Finish, Job, SubmitError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Responses buffered per stream before the forwarder waits for the client to read.
const STREAM_BUFFER: usize = 16;
/// How long a stream that hit its deadline waits to deliver the DEADLINE_EXCEEDED status.
const STATUS_SEND_GRACE: Duration = Duration::from_secs(1);

pub struct InferenceService {
    pub daemon: Arc<Daemon>,
}

type ResponseItem = Result<proto::GenerateResponse, Status>;

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// Runs CPU-bound request work (tokenization, chat templates) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("request processing failed"))
}

/// The proto's sampling fields; 0 means "off" for top_p and repeat_penalty, as documented.
fn sampling_params(s: Option<&proto::Sampling>, n_vocab: usize) -> Result<SamplingParams, Status> {
    let s = s.cloned().unwrap_or_default();
    let off_if_zero = |v: f32| if v == 0.0 { 1.0 } else { v };
    let params = SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k as usize,
        top_p: off_if_zero(s.top_p),
        min_p: s.min_p,
        repeat_penalty: off_if_zero(s.repeat_penalty),
        repeat_last_n: SamplingParams::default().repeat_last_n,
        seed: s.seed,
    };
    if params.top_k > n_vocab {
        return Err(invalid(format!(
            "sampling parameter `top_k` is invalid: {} exceeds the vocabulary of {n_vocab}",
            params.top_k
        )));
    }
    params.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(params)
}

fn check_id(field: &str, id: &str, max_bytes: usize) -> Result<(), Status> {
    if id.len() > max_bytes {
        return Err(invalid(format!(
            "`{field}` is longer than {max_bytes} bytes"
        )));
    }
    Ok(())
}

/// The prompt's token ids, checked against the model's vocabulary and context.
async fn prompt_tokens(served: &ServedModel, input: Option<Input>) -> Result<Vec<u32>, Status> {
    let n_vocab = served.model.n_vocab();
    let tokenizer = served.tokenizer.clone();
    let tokens = match input {
        None => return Err(invalid("the request has no input (prompt, chat or tokens)")),
        Some(Input::Prompt(text)) => {
            if text.is_empty() {
                return Err(invalid("`prompt` is empty"));
            }
            blocking(move || tokenizer.encode(&text, true, true)).await?
        }
        Some(Input::Chat(chat)) => {
            if chat.messages.is_empty() {
                return Err(invalid("`chat.messages` is empty"));
            }
            if let Some(i) = chat.messages.iter().position(|m| m.role.is_empty()) {
                return Err(invalid(format!("`chat.messages[{i}].role` is empty")));
            }
            let messages: Vec<Message> = chat
                .messages
                .into_iter()
                .map(|m| Message {
                    role: m.role,
                    content: m.content,
                })
                .collect();
            let model = served.model.clone();
            blocking(move || chat_prompt_tokens(&model.file.metadata, &tokenizer, &messages))
                .await?
                .map_err(|e| invalid(e.to_string()))?
        }
        Some(Input::Tokens(t)) => {
            if let Some(&id) = t.ids.iter().find(|&&id| id as usize >= n_vocab) {
                return Err(invalid(format!(
                    "token id {id} is out of range (vocabulary has {n_vocab} tokens)"
                )));
            }
            t.ids
        }
    };
    if tokens.is_empty() {
        return Err(invalid("the input is empty"));
    }
    let n_ctx = served.model.n_ctx;
    if tokens.len() > n_ctx {
        return Err(Status::resource_exhausted(format!(
            "the prompt has {} tokens, more than the context of {n_ctx}",
            tokens.len()
        )));
    }
    Ok(tokens)
}

fn finish_reason(f: Finish) -> proto::FinishReason {
    match f {
        Finish::Stop => proto::FinishReason::Stop,
        Finish::Length => proto::FinishReason::Length,
        Finish::StopSequence => proto::FinishReason::StopSequence,
        Finish::Cancelled => proto::FinishReason::Cancelled,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn done_message(d: Done) -> proto::Done {
    proto::Done {
        finish_reason: finish_reason(d.finish) as i32,
        usage: Some(proto::Usage {
            prompt_tokens: count(d.prompt_tokens),
            completion_tokens: count(d.completion_tokens),
            cached_tokens: count(d.cached_tokens),
        }),
        timings: Some(proto::Timings {
            prompt_ms: d.prompt_ms,
            generation_ms: d.generation_ms,
        }),
    }
}

/// The gRPC message for a scheduler event, and whether it ends the stream.
fn response(event: Option<Event>) -> (ResponseItem, bool) {
    use proto::generate_response::Event as Out;
    let message = |e| Ok(proto::GenerateResponse { event: Some(e) });
    match event {
        Some(Event::Delta { text, token_ids }) => {
            (message(Out::Delta(proto::Delta { text, token_ids })), false)
        }
        Some(Event::Done(d)) => (message(Out::Done(done_message(d))), true),
        Some(Event::Failed(e)) => (Err(Status::internal(e)), true),
        None => (
            Err(Status::internal("generation ended without a result")),
            true,
        ),
    }
}

/// Copies scheduler events to the client until Done, the deadline, or the client leaving; the
/// last two cancel the generation so its batch slot and state are freed at the next step.
async fn forward_events(
    mut events: mpsc::UnboundedReceiver<Event>,
    tx: mpsc::Sender<ResponseItem>,
    cancel: CancelFlag,
    deadline: Option<Instant>,
    running: RunningStream,
) {
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let closed = running.closed_by_daemon();
    tokio::pin!(expired, closed);
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            () = &mut expired => break,
            () = tx.closed() => return cancel.cancel(),
            // The scheduler then ends the generation with Done(CANCELLED).
            () = &mut closed, if !cancel.is_cancelled() => {
                cancel.cancel();
                continue;
            }
        };
        let (item, last) = response(event);
        tokio::select! {
            sent = tx.send(item) => if sent.is_err() { return cancel.cancel() },
            () = &mut expired => break,
        }
        if last {
            return;
        }
    }
    cancel.cancel();
    let status = Status::deadline_exceeded("the request's deadline passed during generation");
    let _ = tokio::time::timeout(STATUS_SEND_GRACE, tx.send(Err(status))).await;
}

#[tonic::async_trait]
impl Inference for InferenceService {
    type GenerateStream = ReceiverStream<ResponseItem>;

    async fn generate(
        &self,
        request: Request<proto::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let deadline = deadline::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let served = self.daemon.model(&r.model)?;
        let limits = &self.daemon.limits;
        let n_ctx = served.model.n_ctx;
        let sampling = sampling_params(r.sampling.as_ref(), served.model.n_vocab())?;
        let max_tokens = match r.max_tokens {
            0 => limits.default_max_tokens as usize,
            n => n as usize,
        };
        if max_tokens > n_ctx {
            return Err(invalid(format!(
                "`max_tokens` {max_tokens} exceeds the context of {n_ctx}"
            )));
        }
        if r.stop.len() > limits.max_stop_strings {
            return Err(invalid(format!(
                "at most {} stop strings are allowed",
                limits.max_stop_strings
            )));
        }
        if let Some(i) = r.stop.iter().position(|s| s.len() > limits.max_stop_bytes) {
            return Err(invalid(format!(
                "`stop[{i}]` is longer than {} bytes",
                limits.max_stop_bytes
            )));
        }
        check_id("request_id", &r.request_id, limits.max_id_bytes)?;
        check_id("session_id", &r.session_id, limits.max_id_bytes)?;
        let prompt = prompt_tokens(&served, r.input).await?;
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(Status::deadline_exceeded("the request's deadline passed"));
        }

        let cancel = CancelFlag::default();
        let running = self.daemon.register(&r.request_id, &cancel, &served)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let job = Job {
            prompt,
            max_tokens,
            sampling,
            stop: r.stop,
            session_id: (!r.session_id.is_empty()).then_some(r.session_id),
            cancel: cancel.clone(),
            events: events_tx,
        };
        served.scheduler.submit(job).map_err(|e| match e {
            SubmitError::QueueFull => Status::resource_exhausted(format!(
                "model `{}` has too many queued requests",
                served.name
            )),
            SubmitError::Stopped => Status::unavailable(e.to_string()),
        })?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(forward_events(events, tx, cancel, deadline, running));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn tokenize(
        &self,
        request: Request<proto::TokenizeRequest>,
    ) -> Result<Response<proto::TokenizeResponse>, Status> {
        let r = request.into_inner();
        let tokenizer = self.daemon.model(&r.model)?.tokenizer.clone();
        let special = r.add_special;
        let ids = blocking(move || tokenizer.encode(&r.text, special, special)).await?;
        Ok(Response::new(proto::TokenizeResponse { ids }))
    }

    async fn detokenize(
        &self,
        request: Request<proto::DetokenizeRequest>,
    ) -> Result<Response<proto::DetokenizeResponse>, Status> {
        let r = request.into_inner();
        let tokenizer = self.daemon.model(&r.model)?.tokenizer.clone();
        let n_vocab = tokenizer.vocab_size();
        if let Some(&id) = r.ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(invalid(format!(
                "token id {id} is out of range (vocabulary has {n_vocab} tokens)"
            )));
        }
        let text = blocking(move || tokenizer.decode(&r.ids)).await?;
        Ok(Response::new(proto::DetokenizeResponse { text }))
    }

    async fn cancel(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelResponse>, Status> {
        let id = request.into_inner().request_id;
        if id.is_empty() {
            return Err(invalid("`request_id` is empty"));
        }
        let found = self.daemon.cancel(&id);
        Ok(Response::new(proto::CancelResponse { found }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_zeroes_mean_greedy_and_off() {
        let p = sampling_params(None, 100).unwrap();
        assert_eq!(
            (p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty),
            (0.0, 0, 1.0, 0.0, 1.0)
        );
        let bad = |s: proto::Sampling| sampling_params(Some(&s), 100).is_err();
        assert!(bad(proto::Sampling {
            temperature: f32::NAN,
            ..Default::default()
        }));
        assert!(bad(proto::Sampling {
            temperature: -0.5,
            ..Default::default()
        }));
        assert!(bad(proto::Sampling {
            top_p: 1.5,
            ..Default::default()
        }));
        assert!(bad(proto::Sampling {
            top_k: 101,
            ..Default::default()
        }));
        assert!(bad(proto::Sampling {
            repeat_penalty: -1.0,
            ..Default::default()
        }));
        assert!(bad(proto::Sampling {
            min_p: f32::INFINITY,
            ..Default::default()
        }));
    }
}
