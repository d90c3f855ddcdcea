//! Transformer blocks shared by the architectures: self-attention and gated FFNs, with their
//! weights loaded by GGUF name.

use super::batch::Batch;
use super::layers::{self, AttnShape, Rope, Yarn};
use super::weights::{Matrix, WeightLoader};
use super::Result;

/// Weights of a (GQA) self-attention block: `blk.N.attn_{q,k,v,output}` plus the optional
/// q/k/v/output biases (qwen2) and per-head q/k RMSNorm weights (qwen3, gemma3).
pub struct AttentionWeights {
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub bo: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
}

impl AttentionWeights {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, shape: &AttnShape) -> Result<Self> {
        let q_dim = shape.n_head * shape.head_dim;
        let kv_dim = shape.n_head_kv * shape.head_dim;
        let name = |t: &str| format!("blk.{il}.{t}");
        Ok(AttentionWeights {
            wq: w.matrix(&name("attn_q.weight"), n_embd, q_dim)?,
            wk: w.matrix(&name("attn_k.weight"), n_embd, kv_dim)?,
            wv: w.matrix(&name("attn_v.weight"), n_embd, kv_dim)?,
            wo: w.matrix(&name("attn_output.weight"), q_dim, n_embd)?,
            bq: w.opt_vector(&name("attn_q.bias"), q_dim)?,
            bk: w.opt_vector(&name("attn_k.bias"), kv_dim)?,
            bv: w.opt_vector(&name("attn_v.bias"), kv_dim)?,
            bo: w.opt_vector(&name("attn_output.bias"), n_embd)?,
            q_norm: w.opt_vector(&name("attn_q_norm.weight"), shape.head_dim)?,
            k_norm: w.opt_vector(&name("attn_k_norm.weight"), shape.head_dim)?,
        })
    }
}

fn project(m: &Matrix, bias: &Option<Vec<f32>>, x: &[f32], n_tok: usize) -> Vec<f32> {
    let mut y = m.matmul(x, n_tok);
    if let Some(b) = bias {
        layers::add_bias(&mut y, b);
    }
    y
}

/// Self-attention over normalised input `xn` (`[n_tok, n_embd]`); returns `[n_tok, n_embd]`.
pub fn self_attention(
    w: &AttentionWeights,
    shape: &AttnShape,
    rope: &Rope,
    norm_eps: f32,
    xn: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    let plain = AttentionExtras::default();
    self_attention_with(w, shape, rope, &plain, norm_eps, xn, batch, layer)
}

/// What a few families add to plain self-attention.
#[derive(Clone, Copy, Default)]
pub struct AttentionExtras<'a> {
    /// YaRN RoPE scaling (gpt-oss).
    pub yarn: Option<&'a Yarn>,
    /// One learned sink logit per head (gpt-oss `attn_sinks`).
    pub sinks: Option<&'a [f32]>,
}

/// [`self_attention`] with YaRN and/or attention sinks.
#[allow(clippy::too_many_arguments)]
pub fn self_attention_with(
    w: &AttentionWeights,
    shape: &AttnShape,
    rope: &Rope,
    extras: &AttentionExtras,
    norm_eps: f32,
    xn: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    let n_tok = batch.n_tokens();
    let positions = batch.positions();
    // q: [n_tok, n_head * head_dim]; k, v: [n_tok, n_head_kv * head_dim]
    let mut q = project(&w.wq, &w.bq, xn, n_tok);
    let mut k = project(&w.wk, &w.bk, xn, n_tok);
    let v = project(&w.wv, &w.bv, xn, n_tok);
    if let Some(qn) = &w.q_norm {
        layers::rms_norm_in_place(&mut q, qn, norm_eps);
    }
    if let Some(kn) = &w.k_norm {
        layers::rms_norm_in_place(&mut k, kn, norm_eps);
    }
    rope.apply_with(extras.yarn, &mut q, shape.head_dim, &positions);
    rope.apply_with(extras.yarn, &mut k, shape.head_dim, &positions);
    // attn: [n_tok, n_head * head_dim]
    let attn = layers::causal_attention_with_sinks(shape, extras.sinks, &q, &k, &v, batch, layer);
    project(&w.wo, &w.bo, &attn, n_tok)
}

/// Weights of a gated FFN `down · (act(gate · x) ⊙ up · x)`.
pub struct GatedFfnWeights {
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
}

impl GatedFfnWeights {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, n_ff: usize) -> Result<Self> {
        let name = |t: &str| format!("blk.{il}.{t}");
        Ok(GatedFfnWeights {
            gate: w.matrix(&name("ffn_gate.weight"), n_embd, n_ff)?,
            up: w.matrix(&name("ffn_up.weight"), n_embd, n_ff)?,
            down: w.matrix(&name("ffn_down.weight"), n_ff, n_embd)?,
        })
    }
}

/// Gated FFN over `xn` (`[n_tok, n_embd]`) with activation `act` (SiLU → SwiGLU, GELU → GEGLU).
pub fn gated_ffn(w: &GatedFfnWeights, act: fn(f32) -> f32, xn: &[f32], n_tok: usize) -> Vec<f32> {
    // gate, up: [n_tok, n_ff]
    let mut gate = w.gate.matmul(xn, n_tok);
    let up = w.up.matmul(xn, n_tok);
    layers::gated_activation(&mut gate, &up, act);
    // [n_tok, n_embd]
    w.down.matmul(&gate, n_tok)
}

/// Token embeddings `[n_tok, n_embd]`: dequantized rows of `token_embd` (ggml's get_rows).
pub fn embed(tok_embd: &Matrix, tokens: &[u32]) -> Vec<f32> {
    let n_embd = tok_embd.n_in;
    let mut x = vec![0f32; tokens.len() * n_embd];
    for (row, &t) in x.chunks_exact_mut(n_embd).zip(tokens) {
        tok_embd.row(t as usize, row);
    }
    x
}

/// Final norm and the output projection (`output.weight`, or the embeddings when tied).
pub struct OutputHead {
    pub norm: Vec<f32>,
    pub weight: Matrix,
    /// `final_logit_softcapping` (gemma).
    pub softcap: Option<f32>,
}

impl OutputHead {
    /// `norm_name` is `output_norm.weight` for most families.
    pub fn load(w: &WeightLoader, norm_name: &str, tok_embd: &Matrix) -> Result<Self> {
        let (n_embd, n_vocab) = (tok_embd.n_in, tok_embd.n_out);
        Ok(OutputHead {
            norm: w.vector(norm_name, n_embd)?,
            weight: match w.opt_matrix("output.weight", n_embd, n_vocab)? {
                Some(m) => m,
                None => tok_embd.clone(),
            },
            softcap: None,
        })
    }

    /// Logits `[rows.len(), n_vocab]` for the selected rows of the final hidden state `x`.
    pub fn logits(&self, x: &[f32], rows: &[usize], eps: f32) -> Vec<f32> {
        let n_embd = self.norm.len();
        let mut h: Vec<f32> = rows
            .iter()
            .flat_map(|&r| x[r * n_embd..(r + 1) * n_embd].iter().copied())
            .collect();
        layers::rms_norm_in_place(&mut h, &self.norm, eps);
        let mut logits = self.weight.matmul(&h, rows.len());
        if let Some(cap) = self.softcap {
            layers::softcap_in_place(&mut logits, cap);
        }
        logits
    }
}
