//! Layer functions shared by the architectures: norms, RoPE, causal attention, FFN activations.
//!
//! Activations are row-major `[n_tokens, width]` f32 buffers. Numerics follow ggml's CPU ops where
//! it matters for agreement with llama.cpp (f64 sums in RMSNorm and softmax, f32 RoPE angles
//! built by repeated multiplication, GELU through an f16 table).

use super::batch::Batch;
use crate::kernels::vector::{axpy, dot_f32};
use half::f16;
use rayon::prelude::*;
use std::sync::OnceLock;

/// `x / sqrt(mean(x²) + eps) * w` for every row of `x` (width `w.len()`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = x.to_vec();
    rms_norm_in_place(&mut y, w, eps);
    y
}

/// In-place RMSNorm of every `w.len()`-wide chunk: whole rows, or single heads for q/k norms.
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let sum: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let mean = (sum / w.len() as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, &g) in row.iter_mut().zip(w) {
            *v = (*v * scale) * g;
        }
    }
}

/// `x += y` elementwise.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Adds a bias vector to every row.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_in_place(row, bias);
    }
}

pub fn scale_in_place(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// tanh-approximated GELU evaluated the way ggml's CPU backend does: the input is rounded to f16
/// and the result is read from a table of f16 results, one per f16 input, built here the same way.
pub fn gelu_ggml(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        const GELU_COEF_A: f32 = 0.044715;
        (0..=u16::MAX)
            .map(|bits| {
                let h = f16::from_bits(bits).to_f32();
                let g = 0.5 * h * (1.0 + (SQRT_2_OVER_PI * h * (1.0 + GELU_COEF_A * h * h)).tanh());
                f16::from_f32(g)
            })
            .collect()
    });
    table[usize::from(f16::from_f32(x).to_bits())].to_f32()
}

/// `act(gate) * up` for every element; `gate` and `up` are `[n_tok, n_ff]`.
pub fn gated_activation(gate: &mut [f32], up: &[f32], act: fn(f32) -> f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act(*g) * u;
    }
}

/// `cap · tanh(x / cap)` (gemma's logit soft-capping).
pub fn softcap_in_place(x: &mut [f32], cap: f32) {
    for v in x {
        *v = (*v / cap).tanh() * cap;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeKind {
    /// Rotates adjacent pairs (x[2i], x[2i+1]) — llama.
    Norm,
    /// Rotates (x[i], x[i + n_rot/2]) — GPT-NeoX, qwen2/3, gemma.
    Neox,
}

/// Rotary position embedding parameters of one layer.
#[derive(Clone, Debug)]
pub struct Rope {
    pub kind: RopeKind,
    /// Rotated dimensions per head (the rest pass through).
    pub n_rot: usize,
    pub freq_base: f32,
    /// Linear position scaling (1 / rope.scaling.factor for "linear").
    pub freq_scale: f32,
    /// Per-pair frequency divisors (`rope_freqs.weight`, llama 3 style), `n_rot / 2` values.
    pub freq_factors: Option<Vec<f32>>,
}

/// YaRN context extension on top of a [`Rope`] (ggml's `rope_yarn`): pairs below the correction
/// range keep the extrapolated angle, pairs above it the interpolated one (`freq_scale · θ`), with
/// a linear ramp between; cos and sin are scaled by `mscale`.
#[derive(Clone, Debug)]
pub struct Yarn {
    pub ext_factor: f32,
    /// Final cos/sin magnitude: `attn_factor · (1 + 0.1 ln(1/freq_scale))`.
    pub mscale: f32,
    /// First and last pair index of the ramp (ggml_rope_yarn_corr_dims).
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// ggml's derivation from the rope parameters of one layer and the file's YaRN metadata.
    pub fn new(rope: &Rope, s: &super::hparams::YarnScaling) -> Yarn {
        let n_dims = rope.n_rot as f32;
        // The pair index whose wavelength fits `n_rot` turns into the original context.
        let corr_dim = |n_rot: f32| {
            n_dims * (s.n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * rope.freq_base.ln())
        };
        let start = corr_dim(s.beta_fast).floor().max(0.0);
        let end = corr_dim(s.beta_slow).ceil().min(n_dims - 1.0);
        let mut mscale = s.attn_factor;
        if s.ext_factor != 0.0 {
            mscale *= 1.0 + 0.1 * (1.0 / rope.freq_scale).ln();
        }
        Yarn {
            ext_factor: s.ext_factor,
            mscale,
            corr_dims: [start, end],
        }
    }

    /// Share of the extrapolated angle for pair `i`: 1 below the ramp, 0 above it.
    fn ramp_mix(&self, i: usize) -> f32 {
        let [low, high] = self.corr_dims;
        let y = (i as f32 - low) / (high - low).max(0.001);
        (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor
    }
}

impl Rope {
    /// cos/sin for every rotated pair at position `pos`, computed like ggml: the angle starts at
    /// `pos` and is multiplied by `base^(-2/n_rot)` once per pair, in f32.
    fn angles(&self, pos: usize, yarn: Option<&Yarn>, cs: &mut [(f32, f32)]) {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let mut theta = pos as f32;
        for (i, c) in cs.iter_mut().enumerate() {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let extrap = theta / ff;
            let interp = self.freq_scale * extrap;
            *c = match yarn {
                None => (interp.cos(), interp.sin()),
                Some(y) => {
                    let mix = y.ramp_mix(i);
                    let t = interp * (1.0 - mix) + extrap * mix;
                    (t.cos() * y.mscale, t.sin() * y.mscale)
                }
            };
            theta *= theta_scale;
        }
    }

    /// Rotates every head of every row of `x` (`[n_tok, n_heads * head_dim]`) by its token's position.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, positions: &[usize]) {
        self.apply_with(None, x, head_dim, positions);
    }

    /// [`Rope::apply`] with optional YaRN scaling.
    pub fn apply_with(
        &self,
        yarn: Option<&Yarn>,
        x: &mut [f32],
        head_dim: usize,
        positions: &[usize],
    ) {
        let width = x.len() / positions.len();
        let half = self.n_rot / 2;
        let mut cs = vec![(0f32, 0f32); half];
        for (row, &pos) in x.chunks_exact_mut(width).zip(positions) {
            self.angles(pos, yarn, &mut cs);
            for head in row.chunks_exact_mut(head_dim) {
                for (i, &(c, s)) in cs.iter().enumerate() {
                    let (a, b) = match self.kind {
                        RopeKind::Norm => (2 * i, 2 * i + 1),
                        RopeKind::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        }
    }
}

/// Geometry of one attention layer.
#[derive(Clone, Debug)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Multiplies q·k before the softmax.
    pub scale: f32,
    /// Sliding window: a query at position p sees keys at p' with `p - p' < window`.
    pub window: Option<usize>,
}

/// Causal softmax attention. Appends this batch's `k` and `v` rows (`[n_tok, n_head_kv*head_dim]`)
/// to each sequence's KV cache of `layer`, then attends every query row of `q`
/// (`[n_tok, n_head*head_dim]`) over its own sequence's cache. Returns `[n_tok, n_head*head_dim]`.
pub fn causal_attention(
    shape: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    causal_attention_with_sinks(shape, None, q, k, v, batch, layer)
}

/// [`causal_attention`] where head `h` may have a learned sink logit `sinks[h]` (gpt-oss): an
/// extra softmax column that takes probability mass but contributes no value.
pub fn causal_attention_with_sinks(
    shape: &AttnShape,
    sinks: Option<&[f32]>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    let hd = shape.head_dim;
    let q_width = shape.n_head * hd;
    let kv_width = shape.n_head_kv * hd;
    let group = shape.n_head / shape.n_head_kv;
    let mut out = vec![0f32; q.len()];
    let mut row0 = 0;
    for seq in batch.seqs.iter_mut() {
        let n = seq.tokens.len();
        let n_past = seq.state.n_past;
        let kv = seq.state.kv(layer);
        debug_assert_eq!(kv.len(), n_past, "KV cache and position disagree");
        kv.k.extend_from_slice(&k[row0 * kv_width..(row0 + n) * kv_width]);
        kv.v.extend_from_slice(&v[row0 * kv_width..(row0 + n) * kv_width]);
        let (keys, values) = (&kv.k[..], &kv.v[..]);
        let q_seq = &q[row0 * q_width..(row0 + n) * q_width];
        out[row0 * q_width..(row0 + n) * q_width]
            .par_chunks_mut(q_width)
            .zip(q_seq.par_chunks(q_width))
            .enumerate()
            .for_each(|(i, (o_row, q_row))| {
                let pos = n_past + i;
                let first = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let len = pos + 1 - first;
                // scores: [group, len] for the query heads that share one KV head, so each key
                // and value row is read once for all of them.
                let mut scores = vec![0f32; group * len];
                for kvh in 0..shape.n_head_kv {
                    let heads = kvh * group..(kvh + 1) * group;
                    for j in 0..len {
                        let kr = &keys[(first + j) * kv_width + kvh * hd..][..hd];
                        for (g, h) in heads.clone().enumerate() {
                            let qh = &q_row[h * hd..(h + 1) * hd];
                            scores[g * len + j] = dot_f32(qh, kr) * shape.scale;
                        }
                    }
                    for (s, h) in scores.chunks_exact_mut(len).zip(heads) {
                        match sinks {
                            None => softmax_in_place(s),
                            Some(sinks) => softmax_with_sink_in_place(s, sinks[h]),
                        }
                    }
                    // The group's heads are consecutive in the output row.
                    let o = &mut o_row[kvh * group * hd..][..group * hd];
                    o.fill(0.0);
                    for j in 0..len {
                        let vr = &values[(first + j) * kv_width + kvh * hd..][..hd];
                        for (g, oh) in o.chunks_exact_mut(hd).enumerate() {
                            axpy(scores[g * len + j], vr, oh);
                        }
                    }
                }
            });
        row0 += n;
    }
    out
}

/// Numerically stable softmax with an f64 normaliser, as ggml's soft_max.
pub fn softmax_in_place(x: &mut [f32]) {
    softmax_with_sink_in_place(x, f32::NEG_INFINITY);
}

/// Softmax over `x` plus one extra logit `sink` whose probability is dropped (ggml's soft_max
/// with sinks); `sink = -inf` is the plain softmax.
pub fn softmax_with_sink_in_place(x: &mut [f32], sink: f32) {
    let max = x.iter().copied().fold(sink, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    if sink > f32::NEG_INFINITY {
        sum += (sink - max).exp() as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_weight_gives_unit_rms() {
        let y = rms_norm(&[3.0, 4.0], &[1.0, 1.0], 0.0);
        let rms = ((y[0] * y[0] + y[1] * y[1]) / 2.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        for kind in [RopeKind::Norm, RopeKind::Neox] {
            let rope = Rope {
                kind,
                n_rot: 4,
                freq_base: 10000.0,
                freq_scale: 1.0,
                freq_factors: None,
            };
            let x0 = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
            let mut x = x0.clone();
            rope.apply(&mut x, 6, &[0]);
            assert_eq!(x, x0);
            rope.apply(&mut x, 6, &[7]);
            let n0: f32 = x0[..4].iter().map(|v| v * v).sum();
            let n1: f32 = x[..4].iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4);
            assert_eq!(&x[4..], &x0[4..], "dims past n_rot pass through");
        }
    }

    #[test]
    fn gelu_matches_formula_within_f16_rounding() {
        for &x in &[-3.0f32, -0.5, 0.0, 0.3, 1.0, 2.5] {
            let exact = 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh());
            assert!((gelu_ggml(x) - exact).abs() < 4e-3, "{x}");
        }
        assert_eq!(gelu_ggml(-20.0), 0.0);
        assert_eq!(gelu_ggml(20.0), 20.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e30];
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
    }
}
