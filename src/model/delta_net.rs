//! The Gated DeltaNet mixer of the qwen3next / qwen35 families.
//!
//! ```text
//! [q | k | v] = silu(conv(attn_qkv · x))      z = attn_gate · x
//! beta = sigmoid(ssm_beta · x)                 g = softplus(ssm_alpha · x + ssm_dt.bias) · ssm_a
//! q, k = l2_norm(q), l2_norm(k) per head       (v-head j reads k-head j / r or j % n_k)
//! per v-head:  S = exp(g)·S;  S += k ⊗ beta·(v − Sᵀk);  o = Sᵀq / sqrt(d_k)
//! out = ssm_out · concat_j(rms_norm(o_j) · ssm_norm ⊙ silu(z_j))
//! ```
//! The state S and the conv's last inputs are all a sequence remembers: a fixed size per layer.

use super::batch::Batch;
use super::hparams::Keys;
use super::layers;
use super::ssm::{self, CausalConv};
use super::state::RecurrentState;
use super::weights::{Matrix, WeightLoader};
use super::{ModelError, Result};
use rayon::prelude::*;

/// Which k-head a v-head reads when there are more v-heads than k-heads (r = n_v / n_k).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadOrder {
    /// qwen3next: v-head j uses k-head j / r.
    Grouped,
    /// qwen35 / qwen35moe (the converter tiles v-heads): v-head j uses k-head j % n_k.
    Tiled,
}

/// Geometry of a Gated DeltaNet layer (`<arch>.ssm.*`).
#[derive(Clone, Debug)]
pub struct GdnShape {
    /// `ssm.group_count`.
    pub n_k_heads: usize,
    /// `ssm.time_step_rank`.
    pub n_v_heads: usize,
    /// `ssm.state_size`: the head size of q, k and v.
    pub head_dim: usize,
    /// `ssm.conv_kernel`.
    pub d_conv: usize,
    pub order: HeadOrder,
    /// RMSNorm and L2-norm epsilon.
    pub eps: f32,
}

impl GdnShape {
    pub fn read(k: &Keys, order: HeadOrder, eps: f32) -> Result<Self> {
        let d_conv = ssm::check_conv_kernel(k, "ssm.conv_kernel", k.usize("ssm.conv_kernel")?)?;
        let head_dim = k.check_range("ssm.state_size", k.usize("ssm.state_size")?, 1, 1 << 12)?;
        let n_k_heads =
            k.check_range("ssm.group_count", k.usize("ssm.group_count")?, 1, 1 << 12)?;
        let n_v_heads = k.check_range(
            "ssm.time_step_rank",
            k.usize("ssm.time_step_rank")?,
            1,
            1 << 12,
        )?;
        if n_v_heads % n_k_heads != 0 {
            return Err(ModelError::BadHparam {
                key: k.key("ssm.group_count"),
                reason: format!(
                    "{n_k_heads} key heads do not divide ssm.time_step_rank {n_v_heads} value heads"
                ),
            });
        }
        let d_inner = k.usize("ssm.inner_size")?;
        if d_inner != head_dim * n_v_heads {
            return Err(ModelError::BadHparam {
                key: k.key("ssm.inner_size"),
                reason: format!(
                    "{d_inner} differs from ssm.state_size {head_dim} × ssm.time_step_rank {n_v_heads}"
                ),
            });
        }
        Ok(GdnShape {
            n_k_heads,
            n_v_heads,
            head_dim,
            d_conv,
            order,
            eps,
        })
    }

    pub fn key_dim(&self) -> usize {
        self.n_k_heads * self.head_dim
    }

    pub fn value_dim(&self) -> usize {
        self.n_v_heads * self.head_dim
    }

    /// Conv channels: q, k and v.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }

    /// The k-head (and q-head) v-head `j` reads.
    pub fn k_head(&self, j: usize) -> usize {
        match self.order {
            HeadOrder::Grouped => j / (self.n_v_heads / self.n_k_heads),
            HeadOrder::Tiled => j % self.n_k_heads,
        }
    }

    /// Floats of delta-rule state per sequence: `[n_v_heads, d_v, d_k]`.
    pub fn ssm_state_len(&self) -> usize {
        self.n_v_heads * self.head_dim * self.head_dim
    }
}

/// Where the write strength (b) and decay (a) projections come from.
pub enum BetaAlpha {
    /// qwen3next `ssm_ba` `{n_embd, 2·n_v}`: per k-head g, `[b (r values) | a (r values)]`.
    Fused(Matrix),
    /// qwen35 `ssm_beta`, `ssm_alpha` `{n_embd, n_v}` each.
    Split { beta: Matrix, alpha: Matrix },
}

pub struct GdnWeights {
    /// `{n_embd, conv_dim}`: `[q | k | v]`.
    pub qkv: Matrix,
    /// `{n_embd, value_dim}`: the output gate z.
    pub gate: Matrix,
    pub beta_alpha: BetaAlpha,
    pub conv: CausalConv,
    pub dt_bias: Vec<f32>,
    /// `-exp(A_log)` per v-head.
    pub a: Vec<f32>,
    /// Gated RMSNorm weight `{head_dim}`, shared by the heads.
    pub norm: Vec<f32>,
    pub out: Matrix,
}

impl GdnWeights {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, s: &GdnShape) -> Result<Self> {
        let name = |t: &str| format!("blk.{il}.{t}");
        let n_v = s.n_v_heads;
        let beta_alpha = match w.opt_matrix(&name("ssm_ba.weight"), n_embd, 2 * n_v)? {
            Some(ba) => BetaAlpha::Fused(ba),
            None => BetaAlpha::Split {
                beta: w.matrix(&name("ssm_beta.weight"), n_embd, n_v)?,
                alpha: w.matrix(&name("ssm_alpha.weight"), n_embd, n_v)?,
            },
        };
        Ok(GdnWeights {
            qkv: w.matrix(&name("attn_qkv.weight"), n_embd, s.conv_dim())?,
            gate: w.matrix(&name("attn_gate.weight"), n_embd, s.value_dim())?,
            beta_alpha,
            conv: CausalConv::load(w, &name("ssm_conv1d.weight"), None, s.d_conv, s.conv_dim())?,
            dt_bias: w.vector(&name("ssm_dt.bias"), n_v)?,
            a: w.vector(&name("ssm_a"), n_v)?,
            norm: w.vector(&name("ssm_norm.weight"), s.head_dim)?,
            out: w.matrix(&name("ssm_out.weight"), s.value_dim(), n_embd)?,
        })
    }

    pub fn new_state(&self, s: &GdnShape) -> RecurrentState {
        RecurrentState::new(self.conv.state_len(), s.ssm_state_len())
    }

    /// Per-token write strengths `beta = sigmoid(b)` and decays `exp(g)`, each `[n_tok, n_v]`.
    fn beta_decay(&self, s: &GdnShape, xn: &[f32], n_tok: usize) -> (Vec<f32>, Vec<f32>) {
        let n_v = s.n_v_heads;
        // b, a: [n_tok, n_v]
        let (b, a) = match &self.beta_alpha {
            BetaAlpha::Split { beta, alpha } => (beta.matmul(xn, n_tok), alpha.matmul(xn, n_tok)),
            BetaAlpha::Fused(ba) => {
                let r = n_v / s.n_k_heads;
                let ba = ba.matmul(xn, n_tok);
                let mut b = vec![0f32; n_tok * n_v];
                let mut a = vec![0f32; n_tok * n_v];
                for t in 0..n_tok {
                    for g in 0..s.n_k_heads {
                        let src = &ba[t * 2 * n_v + g * 2 * r..][..2 * r];
                        b[t * n_v + g * r..][..r].copy_from_slice(&src[..r]);
                        a[t * n_v + g * r..][..r].copy_from_slice(&src[r..]);
                    }
                }
                (b, a)
            }
        };
        let beta = b.iter().map(|&v| layers::sigmoid(v)).collect();
        let decay = a
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let j = i % n_v;
                (ssm::softplus(v + self.dt_bias[j]) * self.a[j]).exp()
            })
            .collect();
        (beta, decay)
    }
}

/// `u / max(‖u‖, eps)` for every `n`-wide chunk (ggml's l2_norm, f64 sum of squares).
fn l2_norm_in_place(x: &mut [f32], n: usize, eps: f32) {
    for u in x.chunks_exact_mut(n) {
        let sum: f64 = u.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / (sum.sqrt() as f32).max(eps);
        u.iter_mut().for_each(|v| *v *= scale);
    }
}

/// The delta-rule recurrence of one v-head over `n` tokens, continuing from `state`
/// (`[d_v, d_k]`: row i is column i of S). `q`, `k` are `[n, d_k]`, `v` and the returned
/// output `[n, d_v]`; `beta`, `decay` one value per token.
fn delta_rule_head(
    state: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    beta: &[f32],
    decay: &[f32],
    d: usize,
) -> Vec<f32> {
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; v.len()];
    for t in 0..beta.len() {
        let (qt, kt, vt) = (&q[t * d..][..d], &k[t * d..][..d], &v[t * d..][..d]);
        let ot = &mut out[t * d..][..d];
        for (i, row) in state.chunks_exact_mut(d).enumerate() {
            let mut pred = 0f32;
            for (s, &kj) in row.iter_mut().zip(kt) {
                *s *= decay[t];
                pred += *s * kj;
            }
            let delta = (vt[i] - pred) * beta[t];
            let mut o = 0f32;
            for ((s, &kj), &qj) in row.iter_mut().zip(kt).zip(qt) {
                *s += kj * delta;
                o += *s * qj;
            }
            ot[i] = o * scale;
        }
    }
    out
}

/// The Gated DeltaNet mixer over `xn` (`[n_tok, n_embd]`); returns `[n_tok, n_embd]`.
///
/// Each sequence's tokens run through the recurrence in one call (any number of tokens: a
/// whole prompt, a chunk of it, or one decode step give the same numbers), v-heads in parallel.
pub fn gated_delta_net(
    w: &GdnWeights,
    s: &GdnShape,
    xn: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    let n_tok = batch.n_tokens();
    let d = s.head_dim;
    let (key_dim, value_dim, conv_dim) = (s.key_dim(), s.value_dim(), s.conv_dim());
    let n_v = s.n_v_heads;
    // mixed: [n_tok, conv_dim]; z: [n_tok, value_dim]
    let mixed = w.qkv.matmul(xn, n_tok);
    let z = w.gate.matmul(xn, n_tok);
    // beta, decay: [n_tok, n_v]
    let (beta, decay) = w.beta_decay(s, xn, n_tok);
    // o: [n_tok, value_dim] — the recurrence output, head after head within a row
    let mut o = vec![0f32; n_tok * value_dim];
    for (rows, state) in ssm::recurrent_seqs(batch, layer) {
        let n = rows.len();
        // conv: [n, conv_dim]
        let mut conv = w.conv.apply(
            &mixed[rows.start * conv_dim..rows.end * conv_dim],
            &mut state.conv,
        );
        conv.iter_mut().for_each(|v| *v = layers::silu(*v));
        // q, k: [n, key_dim]; v: [n, value_dim]
        let mut q = Vec::with_capacity(n * key_dim);
        let mut k = Vec::with_capacity(n * key_dim);
        let mut v = Vec::with_capacity(n * value_dim);
        for row in conv.chunks_exact(conv_dim) {
            q.extend_from_slice(&row[..key_dim]);
            k.extend_from_slice(&row[key_dim..2 * key_dim]);
            v.extend_from_slice(&row[2 * key_dim..]);
        }
        l2_norm_in_place(&mut q, d, s.eps);
        l2_norm_in_place(&mut k, d, s.eps);
        // Gather each head's inputs into contiguous [n, d] buffers, then run heads in parallel.
        let head_cols = |x: &[f32], width: usize, h: usize| -> Vec<f32> {
            x.chunks_exact(width)
                .flat_map(|r| r[h * d..(h + 1) * d].iter().copied())
                .collect()
        };
        let per_token = |x: &[f32], j: usize| -> Vec<f32> {
            x[rows.start * n_v..rows.end * n_v]
                .chunks_exact(n_v)
                .map(|r| r[j])
                .collect()
        };
        let qh: Vec<Vec<f32>> = (0..s.n_k_heads)
            .map(|h| head_cols(&q, key_dim, h))
            .collect();
        let kh: Vec<Vec<f32>> = (0..s.n_k_heads)
            .map(|h| head_cols(&k, key_dim, h))
            .collect();
        // outs[j]: [n, d]
        let outs: Vec<Vec<f32>> = state
            .ssm
            .par_chunks_mut(d * d)
            .enumerate()
            .map(|(j, sj)| {
                let kj = s.k_head(j);
                delta_rule_head(
                    sj,
                    &qh[kj],
                    &kh[kj],
                    &head_cols(&v, value_dim, j),
                    &per_token(&beta, j),
                    &per_token(&decay, j),
                    d,
                )
            })
            .collect();
        for (j, oj) in outs.iter().enumerate() {
            for (i, t) in rows.clone().enumerate() {
                o[t * value_dim + j * d..][..d].copy_from_slice(&oj[i * d..(i + 1) * d]);
            }
        }
    }
    // Gated RMSNorm per head: rms_norm(o_j) · ssm_norm ⊙ silu(z_j)
    layers::rms_norm_in_place(&mut o, &w.norm, s.eps);
    for (ov, &zv) in o.iter_mut().zip(&z) {
        *ov *= layers::silu(zv);
    }
    w.out.matmul(&o, n_tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_orders_map_v_heads_to_k_heads() {
        let mut s = GdnShape {
            n_k_heads: 2,
            n_v_heads: 6,
            head_dim: 4,
            d_conv: 4,
            order: HeadOrder::Grouped,
            eps: 1e-6,
        };
        let grouped: Vec<usize> = (0..6).map(|j| s.k_head(j)).collect();
        assert_eq!(grouped, [0, 0, 0, 1, 1, 1]);
        s.order = HeadOrder::Tiled;
        let tiled: Vec<usize> = (0..6).map(|j| s.k_head(j)).collect();
        assert_eq!(tiled, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn delta_rule_stores_then_recalls_a_value() {
        // With no decay and beta = 1, writing v under unit key k makes Sᵀk = v.
        let d = 4;
        let mut state = vec![0f32; d * d];
        let k = [1.0, 0.0, 0.0, 0.0];
        let v = [0.5, -1.0, 2.0, 0.25];
        delta_rule_head(&mut state, &k, &k, &v, &[1.0], &[1.0], d);
        let o = delta_rule_head(&mut state, &k, &k, &v, &[1.0], &[1.0], d);
        for (a, b) in o.iter().zip(&v) {
            assert!((a - b / 2.0).abs() < 1e-6, "{o:?}");
        }
    }

    #[test]
    fn recurrence_in_pieces_equals_one_call() {
        let d = 3;
        let n = 7;
        let gen = |seed: f32| -> Vec<f32> {
            (0..n * d)
                .map(|i| ((i as f32 + seed) * 0.37).sin())
                .collect()
        };
        let (q, k, v) = (gen(1.0), gen(2.0), gen(3.0));
        let beta: Vec<f32> = (0..n).map(|i| 0.3 + 0.05 * i as f32).collect();
        let decay: Vec<f32> = (0..n).map(|i| 0.9 - 0.02 * i as f32).collect();
        let mut s1 = vec![0f32; d * d];
        let all = delta_rule_head(&mut s1, &q, &k, &v, &beta, &decay, d);
        let mut s2 = vec![0f32; d * d];
        let mut pieces = Vec::new();
        for (a, b) in [(0, 1), (1, 4), (4, 7)] {
            pieces.extend(delta_rule_head(
                &mut s2,
                &q[a * d..b * d],
                &k[a * d..b * d],
                &v[a * d..b * d],
                &beta[a..b],
                &decay[a..b],
                d,
            ));
        }
        assert_eq!(all, pieces);
        assert_eq!(s1, s2);
    }
}
