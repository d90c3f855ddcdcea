//! Single-sequence generation: prefill the prompt in one batch, then decode one token per step.

use super::sampler::Sampler;
use crate::model::{Batch, Logits, Model, Result, SeqState};
use std::ops::ControlFlow;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token.
    Stop,
    /// `max_tokens` reached or the context is full.
    Length,
    /// The caller's callback asked to stop (stop sequence, cancellation).
    Caller,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
}

/// Runs `prompt` through `model` in one batch and returns the last row's logits.
pub fn prefill(model: &Model, state: &mut SeqState, prompt: &[u32]) -> Result<Vec<f32>> {
    model.forward(&mut Batch::single(prompt, state, Logits::Last))
}

/// Generates up to `max_tokens` tokens after `prompt`. `on_token` sees each token as it is
/// produced (before the next forward pass) and can stop generation early.
pub fn generate(
    model: &Model,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    is_eog: &dyn Fn(u32) -> bool,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    let mut state = model.new_state();
    let t0 = Instant::now();
    let mut logits = prefill(model, &mut state, prompt)?;
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let mut history = prompt.to_vec();
    let mut tokens = Vec::new();
    let finish = loop {
        if tokens.len() >= max_tokens {
            break FinishReason::Length;
        }
        let next = sampler.sample(&logits, &history);
        if is_eog(next) {
            break FinishReason::Stop;
        }
        tokens.push(next);
        history.push(next);
        if on_token(next).is_break() {
            break FinishReason::Caller;
        }
        if tokens.len() >= max_tokens {
            break FinishReason::Length;
        }
        if state.n_past + 1 > model.n_ctx {
            break FinishReason::Length;
        }
        logits = model.forward(&mut Batch::single(&[next], &mut state, Logits::Last))?;
    };
    Ok(Generation {
        tokens,
        finish,
        prompt_tokens: prompt.len(),
        prompt_ms,
        generation_ms: t1.elapsed().as_secs_f64() * 1e3,
    })
}
