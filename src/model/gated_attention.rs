//! Gated full attention of the qwen3next / qwen35 families: one projection gives each head's
//! query and an output gate, q and k get per-head RMSNorm, RoPE rotates the first
//! `rope.dimension_count` dims, and the attention output is scaled by sigmoid(gate).

use super::batch::Batch;
use super::layers::{self, AttnShape, Rope};
use super::weights::{Matrix, WeightLoader};
use super::Result;

pub struct GatedAttentionWeights {
    /// `{n_embd, 2·n_head·head_dim}`: per head `[q_h | gate_h]`.
    pub wq_gate: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    pub q_norm: Vec<f32>,
    pub k_norm: Vec<f32>,
}

impl GatedAttentionWeights {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, shape: &AttnShape) -> Result<Self> {
        let hd = shape.head_dim;
        let q_dim = shape.n_head * hd;
        let kv_dim = shape.n_head_kv * hd;
        let name = |t: &str| format!("blk.{il}.{t}");
        Ok(GatedAttentionWeights {
            wq_gate: w.matrix(&name("attn_q.weight"), n_embd, 2 * q_dim)?,
            wk: w.matrix(&name("attn_k.weight"), n_embd, kv_dim)?,
            wv: w.matrix(&name("attn_v.weight"), n_embd, kv_dim)?,
            wo: w.matrix(&name("attn_output.weight"), q_dim, n_embd)?,
            q_norm: w.vector(&name("attn_q_norm.weight"), hd)?,
            k_norm: w.vector(&name("attn_k_norm.weight"), hd)?,
        })
    }
}

/// Gated self-attention over `xn` (`[n_tok, n_embd]`); returns `[n_tok, n_embd]`.
pub fn gated_self_attention(
    w: &GatedAttentionWeights,
    shape: &AttnShape,
    rope: &Rope,
    norm_eps: f32,
    xn: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    let n_tok = batch.n_tokens();
    let positions = batch.positions();
    let hd = shape.head_dim;
    let q_dim = shape.n_head * hd;
    // qg: [n_tok, n_head · 2·head_dim]
    let qg = w.wq_gate.matmul(xn, n_tok);
    // q, gate: [n_tok, n_head · head_dim]
    let mut q = Vec::with_capacity(n_tok * q_dim);
    let mut gate = Vec::with_capacity(n_tok * q_dim);
    for head in qg.chunks_exact(2 * hd) {
        q.extend_from_slice(&head[..hd]);
        gate.extend_from_slice(&head[hd..]);
    }
    // k, v: [n_tok, n_head_kv · head_dim]
    let mut k = w.wk.matmul(xn, n_tok);
    let v = w.wv.matmul(xn, n_tok);
    layers::rms_norm_in_place(&mut q, &w.q_norm, norm_eps);
    layers::rms_norm_in_place(&mut k, &w.k_norm, norm_eps);
    rope.apply(&mut q, hd, &positions);
    rope.apply(&mut k, hd, &positions);
    // attn: [n_tok, n_head · head_dim]
    let mut attn = layers::causal_attention(shape, &q, &k, &v, batch, layer);
    for (a, &g) in attn.iter_mut().zip(&gate) {
        *a *= layers::sigmoid(g);
    }
    w.wo.matmul(&attn, n_tok)
}
