//! State-space pieces of the hybrid models: the causal depthwise conv with its rolling state
//! (shared by Gated DeltaNet, LFM2's short conv and Mamba2), LFM2's gated short-conv block and
//! the Mamba2 mixer of granitehybrid.
//!
//! Each mixer takes the normalised layer input `[n_tok, n_embd]` of the whole batch, runs its
//! projections once for all tokens, then walks every sequence's tokens through that sequence's
//! [`RecurrentState`].

use super::batch::Batch;
use super::hparams::Keys;
use super::layers;
use super::state::RecurrentState;
use super::weights::{Matrix, WeightLoader};
use super::{ModelError, Result};
use std::ops::Range;

/// ggml's softplus: `log(1 + e^x)`, or `x` itself above 20 where the two agree in f32.
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// The batch rows of every sequence with that sequence's state of recurrent layer `layer`.
pub fn recurrent_seqs<'b>(
    batch: &'b mut Batch,
    layer: usize,
) -> Vec<(Range<usize>, &'b mut RecurrentState)> {
    let mut row0 = 0;
    batch
        .seqs
        .iter_mut()
        .map(|seq| {
            let rows = row0..row0 + seq.tokens.len();
            row0 = rows.end;
            (rows, seq.state.recurrent(layer))
        })
        .collect()
}

/// A depthwise causal conv1d over time: `kernel` taps per channel, no padding beyond the state.
#[derive(Clone, Debug)]
pub struct CausalConv {
    /// `[channels, kernel]`: tap `kernel - 1` multiplies the current token (GGUF `{kernel, channels}`).
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub kernel: usize,
    pub channels: usize,
}

impl CausalConv {
    /// Loads `{kernel, channels}` weights (and an optional `{channels}` bias).
    pub fn load(
        w: &WeightLoader,
        name: &str,
        bias: Option<&str>,
        kernel: usize,
        channels: usize,
    ) -> Result<Self> {
        Ok(CausalConv {
            weight: w.tensor_f32(name, &[kernel, channels])?,
            bias: match bias {
                Some(b) => w.opt_vector(b, channels)?,
                None => None,
            },
            kernel,
            channels,
        })
    }

    /// Floats of rolling state per sequence: the last `kernel - 1` inputs of every channel.
    pub fn state_len(&self) -> usize {
        (self.kernel - 1) * self.channels
    }

    /// Convolves one sequence's rows `x` (`[n, channels]`) continuing from `state`
    /// (`[kernel - 1, channels]`, oldest first), which is then advanced to the last inputs.
    /// Returns `[n, channels]`. Taps are summed in order in f32, as ggml's ssm_conv.
    pub fn apply(&self, x: &[f32], state: &mut [f32]) -> Vec<f32> {
        let ch = self.channels;
        let k = self.kernel;
        let n = x.len() / ch;
        // window: [kernel - 1 + n, channels] — the state followed by the new inputs
        let mut window = Vec::with_capacity(state.len() + x.len());
        window.extend_from_slice(state);
        window.extend_from_slice(x);
        // out: [n, channels]
        let mut out = vec![0f32; x.len()];
        for (t, o_row) in out.chunks_exact_mut(ch).enumerate() {
            for (c, o) in o_row.iter_mut().enumerate() {
                let taps = &self.weight[c * k..(c + 1) * k];
                let mut sum = 0f32;
                for (j, &wj) in taps.iter().enumerate() {
                    sum += window[(t + j) * ch + c] * wj;
                }
                *o = sum;
            }
        }
        if let Some(b) = &self.bias {
            layers::add_bias(&mut out, b);
        }
        state.copy_from_slice(&window[n * ch..]);
        out
    }
}

/// Checks a conv kernel width read from `key`: at least 2 taps (1 would keep no state).
pub fn check_conv_kernel(k: &Keys, suffix: &str, v: usize) -> Result<usize> {
    if !(2..=64).contains(&v) {
        return Err(ModelError::BadHparam {
            key: k.key(suffix),
            reason: format!("conv kernel width {v} is outside [2, 64]"),
        });
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// LFM2 gated short conv

/// `out_proj · (c ⊙ conv(b ⊙ x))` with `[b | c | x] = in_proj · h` (LFM2's "short conv").
pub struct ShortConvWeights {
    /// `{n_embd, 3·n_embd}`: outputs `[b | c | x]`.
    pub in_proj: Matrix,
    pub conv: CausalConv,
    pub out_proj: Matrix,
}

impl ShortConvWeights {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, kernel: usize) -> Result<Self> {
        let name = |t: &str| format!("blk.{il}.shortconv.{t}.weight");
        Ok(ShortConvWeights {
            in_proj: w.matrix(&name("in_proj"), n_embd, 3 * n_embd)?,
            conv: CausalConv::load(w, &name("conv"), None, kernel, n_embd)?,
            out_proj: w.matrix(&name("out_proj"), n_embd, n_embd)?,
        })
    }

    pub fn new_state(&self) -> RecurrentState {
        RecurrentState::new(self.conv.state_len(), 0)
    }
}

/// LFM2's short-conv mixer over `xn` (`[n_tok, n_embd]`); returns `[n_tok, n_embd]`.
pub fn short_conv(w: &ShortConvWeights, xn: &[f32], batch: &mut Batch, layer: usize) -> Vec<f32> {
    let n_tok = batch.n_tokens();
    let n_embd = w.out_proj.n_out;
    // bcx: [n_tok, 3·n_embd]
    let bcx = w.in_proj.matmul(xn, n_tok);
    // bx, c: [n_tok, n_embd]
    let mut bx = vec![0f32; n_tok * n_embd];
    let mut c = vec![0f32; n_tok * n_embd];
    for ((row, bx_row), c_row) in bcx
        .chunks_exact(3 * n_embd)
        .zip(bx.chunks_exact_mut(n_embd))
        .zip(c.chunks_exact_mut(n_embd))
    {
        let (b, rest) = row.split_at(n_embd);
        let (cc, x) = rest.split_at(n_embd);
        for ((o, &bi), &xi) in bx_row.iter_mut().zip(b).zip(x) {
            *o = bi * xi;
        }
        c_row.copy_from_slice(cc);
    }
    // y: [n_tok, n_embd]
    let mut y = vec![0f32; n_tok * n_embd];
    for (rows, state) in recurrent_seqs(batch, layer) {
        let span = rows.start * n_embd..rows.end * n_embd;
        let conv = w.conv.apply(&bx[span.clone()], &mut state.conv);
        for ((o, &ci), &vi) in y[span.clone()].iter_mut().zip(&c[span]).zip(&conv) {
            *o = ci * vi;
        }
    }
    w.out_proj.matmul(&y, n_tok)
}

// ---------------------------------------------------------------------------------------------
// Mamba2

/// Geometry of a Mamba2 mixer (`<arch>.ssm.*`).
#[derive(Clone, Debug)]
pub struct Mamba2Shape {
    /// `ssm.inner_size`: n_heads · head_dim.
    pub d_inner: usize,
    /// `ssm.state_size`.
    pub d_state: usize,
    /// `ssm.group_count`: B and C are shared by the heads of a group.
    pub n_group: usize,
    /// `ssm.time_step_rank`: one dt, A and D per head.
    pub n_head: usize,
    /// `ssm.conv_kernel`.
    pub d_conv: usize,
    pub eps: f32,
}

impl Mamba2Shape {
    pub fn read(k: &Keys, eps: f32) -> Result<Self> {
        let d_conv = check_conv_kernel(k, "ssm.conv_kernel", k.usize("ssm.conv_kernel")?)?;
        let d_inner = k.check_range("ssm.inner_size", k.usize("ssm.inner_size")?, 1, 1 << 20)?;
        let d_state = k.check_range("ssm.state_size", k.usize("ssm.state_size")?, 1, 1 << 12)?;
        let n_group = k.check_range("ssm.group_count", k.usize("ssm.group_count")?, 1, 1 << 12)?;
        let n_head = k.check_range(
            "ssm.time_step_rank",
            k.usize("ssm.time_step_rank")?,
            1,
            1 << 12,
        )?;
        let divides = |suffix: &str, what: usize, of: usize, of_name: &str| {
            if !of.is_multiple_of(what) {
                Err(ModelError::BadHparam {
                    key: k.key(suffix),
                    reason: format!("{what} does not divide {of_name} {of}"),
                })
            } else {
                Ok(())
            }
        };
        divides("ssm.time_step_rank", n_head, d_inner, "ssm.inner_size")?;
        divides("ssm.group_count", n_group, n_head, "ssm.time_step_rank")?;
        Ok(Mamba2Shape {
            d_inner,
            d_state,
            n_group,
            n_head,
            d_conv,
            eps,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.d_inner / self.n_head
    }

    /// Conv channels: x, B and C.
    pub fn conv_dim(&self) -> usize {
        self.d_inner + 2 * self.n_group * self.d_state
    }

    /// `ssm_in` outputs: z, then the conv channels, then one dt per head.
    pub fn in_dim(&self) -> usize {
        self.d_inner + self.conv_dim() + self.n_head
    }
}

pub struct Mamba2Weights {
    /// `{n_embd, in_dim}`: `[z (d_inner) | x (d_inner) | B (n_group·d_state) | C | dt (n_head)]`.
    pub ssm_in: Matrix,
    pub conv: CausalConv,
    pub dt_bias: Vec<f32>,
    /// `-exp(A_log)` per head.
    pub a: Vec<f32>,
    /// Skip connection per head.
    pub d: Vec<f32>,
    /// Grouped RMSNorm weight, `d_inner`.
    pub norm: Vec<f32>,
    pub ssm_out: Matrix,
}

impl Mamba2Weights {
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, s: &Mamba2Shape) -> Result<Self> {
        let name = |t: &str| format!("blk.{il}.{t}");
        Ok(Mamba2Weights {
            ssm_in: w.matrix(&name("ssm_in.weight"), n_embd, s.in_dim())?,
            conv: CausalConv::load(
                w,
                &name("ssm_conv1d.weight"),
                Some(&name("ssm_conv1d.bias")),
                s.d_conv,
                s.conv_dim(),
            )?,
            dt_bias: w.vector(&name("ssm_dt.bias"), s.n_head)?,
            a: w.tensor_f32(&name("ssm_a"), &[1, s.n_head])?,
            d: w.tensor_f32(&name("ssm_d"), &[1, s.n_head])?,
            norm: w.tensor_f32(
                &name("ssm_norm.weight"),
                &[s.d_inner / s.n_group, s.n_group],
            )?,
            ssm_out: w.matrix(&name("ssm_out.weight"), s.d_inner, n_embd)?,
        })
    }

    pub fn new_state(&self, s: &Mamba2Shape) -> RecurrentState {
        RecurrentState::new(self.conv.state_len(), s.d_inner * s.d_state)
    }
}

/// The Mamba2 mixer over `xn` (`[n_tok, n_embd]`); returns `[n_tok, n_embd]`.
///
/// Per head h (group g): `dt = softplus(dt_raw + dt_bias)`, `S = exp(dt·A)·S + dt·x ⊗ B_g`,
/// `y = S·C_g + D·x`; then `y ⊙ silu(z)`, a per-group RMSNorm and `ssm_out`.
pub fn mamba2(
    w: &Mamba2Weights,
    s: &Mamba2Shape,
    xn: &[f32],
    batch: &mut Batch,
    layer: usize,
) -> Vec<f32> {
    let n_tok = batch.n_tokens();
    let (d_inner, d_state, n_head) = (s.d_inner, s.d_state, s.n_head);
    let head_dim = s.head_dim();
    let heads_per_group = n_head / s.n_group;
    let (conv_dim, in_dim) = (s.conv_dim(), s.in_dim());
    // zxbcdt: [n_tok, in_dim]
    let zxbcdt = w.ssm_in.matmul(xn, n_tok);
    // xbc: [n_tok, conv_dim] — the conv's input channels
    let xbc: Vec<f32> = zxbcdt
        .chunks_exact(in_dim)
        .flat_map(|r| r[d_inner..d_inner + conv_dim].iter().copied())
        .collect();
    // y: [n_tok, d_inner]
    let mut y = vec![0f32; n_tok * d_inner];
    for (rows, state) in recurrent_seqs(batch, layer) {
        // conv: [n, conv_dim]
        let mut conv = w.conv.apply(
            &xbc[rows.start * conv_dim..rows.end * conv_dim],
            &mut state.conv,
        );
        conv.iter_mut().for_each(|v| *v = layers::silu(*v));
        for (i, t) in rows.enumerate() {
            let c_row = &conv[i * conv_dim..(i + 1) * conv_dim];
            let (x, bc) = c_row.split_at(d_inner);
            let (b_all, c_all) = bc.split_at(s.n_group * d_state);
            let dt_raw = &zxbcdt[t * in_dim + d_inner + conv_dim..(t + 1) * in_dim];
            let y_row = &mut y[t * d_inner..(t + 1) * d_inner];
            for h in 0..n_head {
                let g = h / heads_per_group;
                let (b, c) = (
                    &b_all[g * d_state..(g + 1) * d_state],
                    &c_all[g * d_state..(g + 1) * d_state],
                );
                let dt = softplus(dt_raw[h] + w.dt_bias[h]);
                let decay = (dt * w.a[h]).exp();
                // S_h: [head_dim, d_state]
                let s_h = &mut state.ssm[h * head_dim * d_state..(h + 1) * head_dim * d_state];
                for p in 0..head_dim {
                    let xp = x[h * head_dim + p];
                    let x_dt = xp * dt;
                    let s_row = &mut s_h[p * d_state..(p + 1) * d_state];
                    let mut sum = 0f32;
                    for ((sv, &bn), &cn) in s_row.iter_mut().zip(b).zip(c) {
                        *sv = *sv * decay + bn * x_dt;
                        sum += *sv * cn;
                    }
                    y_row[h * head_dim + p] = sum + xp * w.d[h];
                }
            }
        }
    }
    // y ⊙ silu(z), then RMSNorm within each group of d_inner / n_group channels
    for (y_row, r) in y.chunks_exact_mut(d_inner).zip(zxbcdt.chunks_exact(in_dim)) {
        for (v, &z) in y_row.iter_mut().zip(&r[..d_inner]) {
            *v *= layers::silu(z);
        }
    }
    let group_width = d_inner / s.n_group;
    for row in y.chunks_exact_mut(d_inner) {
        for (g, chunk) in row.chunks_exact_mut(group_width).enumerate() {
            layers::rms_norm_in_place(
                chunk,
                &w.norm[g * group_width..(g + 1) * group_width],
                s.eps,
            );
        }
    }
    w.ssm_out.matmul(&y, n_tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_in_pieces_equals_conv_at_once() {
        let conv = CausalConv {
            weight: vec![0.5, -1.0, 2.0, 1.0, 0.25, -0.5],
            bias: Some(vec![0.1, -0.2]),
            kernel: 3,
            channels: 2,
        };
        let x: Vec<f32> = (0..10).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut s_all = vec![0.0; conv.state_len()];
        let all = conv.apply(&x, &mut s_all);
        let mut s = vec![0.0; conv.state_len()];
        let mut pieces = conv.apply(&x[..2], &mut s);
        pieces.extend(conv.apply(&x[2..8], &mut s));
        pieces.extend(conv.apply(&x[8..], &mut s));
        assert_eq!(all, pieces);
        assert_eq!(s, s_all);
        // first output sees only the current token: tap 2
        assert!((all[0] - (x[0] * 2.0 + 0.1)).abs() < 1e-6);
    }

    #[test]
    fn softplus_matches_definition() {
        assert!((softplus(0.0) - 2f32.ln()).abs() < 1e-7);
        assert_eq!(softplus(30.0), 30.0);
        assert!(softplus(-30.0) > 0.0);
    }
}
