//! Mixture-of-experts FFN: a router picks `n_used` of `n_expert` gated FFN experts per token and
//! mixes their outputs; an optional shared expert (with its own sigmoid gate) runs on every token.
//!
//! ```text
//! logits  = ffn_gate_inp · x (+ bias)                       [n_expert]
//! (e, w)  = select(logits)                                  n_used experts and their weights
//! routed  = Σ w_e · down_e(act(gate_e · x, up_e · x))       (+ per-expert biases, gpt-oss)
//! shared  = sigmoid(ffn_gate_inp_shexp · x) · down_sh(silu(gate_sh · x) ⊙ up_sh · x)
//! out     = routed + shared
//! ```
//!
//! Experts are stacked 3-D tensors `{n_in, n_out, n_expert}`; expert e is its own byte range, so
//! a forward pass reads only the selected experts' weights. Tokens are grouped by expert so each
//! selected expert's matrices are streamed once per batch (one matmul over all of its tokens).
//!
//! Reuse: read a [`MoeConfig`] with [`MoeConfig::read`], load each layer with [`MoeFfn::load`],
//! run it with [`MoeFfn::forward`].

use super::blocks::{self, GatedFfnWeights};
use super::hparams::Keys;
use super::layers;
use super::weights::{Matrix, MatrixStack, WeightLoader};
use super::{ModelError, Result};
use crate::kernels::matmul::{self, MatRef};
use std::sync::atomic::{AtomicU64, Ordering};

/// llama.cpp's expert limit (LLAMA_MAX_EXPERTS).
pub const MAX_EXPERTS: usize = 512;

/// How router logits become the selected experts and their mixing weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gating {
    /// Softmax over all experts, keep the `n_used` most probable; with `renormalize` their
    /// probabilities are divided by their sum (qwen3moe, Mixtral, qwen3next).
    Softmax { renormalize: bool },
    /// Keep the `n_used` largest raw logits, then softmax over just those (gpt-oss).
    SoftmaxOfSelected,
}

/// The gated activation inside each expert.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpertActivation {
    /// `silu(gate) · up` (SwiGLU).
    Silu,
    /// gpt-oss's clamped SwiGLU: `g = min(gate, limit)`, `u = clamp(up, ±limit)`,
    /// `g · sigmoid(alpha · g) · (u + 1)`.
    SwigluOai { alpha: f32, limit: f32 },
}

impl ExpertActivation {
    /// gpt-oss's constants (fixed in llama.cpp's graph, not metadata).
    pub const GPT_OSS: ExpertActivation = ExpertActivation::SwigluOai {
        alpha: 1.702,
        limit: 7.0,
    };

    /// `gate ← act(gate, up)` elementwise.
    fn apply(self, gate: &mut [f32], up: &[f32]) {
        match self {
            ExpertActivation::Silu => layers::gated_activation(gate, up, layers::silu),
            ExpertActivation::SwigluOai { alpha, limit } => {
                for (g, &u) in gate.iter_mut().zip(up) {
                    let x = g.min(limit);
                    let y = u.clamp(-limit, limit);
                    *g = x / (1.0 + (alpha * -x).exp()) * (y + 1.0);
                }
            }
        }
    }
}

/// Shape and routing of the MoE layers of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub n_expert: usize,
    /// Experts per token (top-k).
    pub n_used: usize,
    /// Hidden width of one routed expert.
    pub n_ff_exp: usize,
    /// Hidden width of the shared expert, if the layers have one.
    pub n_ff_shexp: usize,
    pub gating: Gating,
    pub activation: ExpertActivation,
    /// `expert_weights_scale`: multiplies the mixing weights (0 or 1 = none).
    pub weights_scale: f32,
}

impl MoeConfig {
    /// Reads `<arch>.expert_count`, `.expert_used_count`, `.expert_feed_forward_length`
    /// (default `n_ff_exp_default`), `.expert_shared_feed_forward_length` (default `n_ff`) and
    /// `.expert_weights_scale`, and checks them.
    pub fn read(
        k: &Keys,
        n_ff: usize,
        n_ff_exp_default: Option<usize>,
        gating: Gating,
        activation: ExpertActivation,
    ) -> Result<MoeConfig> {
        let n_expert = k.check_range("expert_count", k.usize("expert_count")?, 1, MAX_EXPERTS)?;
        let n_used = k.check_range(
            "expert_used_count",
            k.usize("expert_used_count")?,
            1,
            n_expert,
        )?;
        let n_ff_exp = match (k.opt_usize("expert_feed_forward_length")?, n_ff_exp_default) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => k.usize("expert_feed_forward_length")?,
        };
        let n_ff_exp = k.check_range("expert_feed_forward_length", n_ff_exp, 1, 1 << 24)?;
        let n_ff_shexp = k
            .opt_usize("expert_shared_feed_forward_length")?
            .unwrap_or(n_ff);
        let weights_scale = k.opt_f32("expert_weights_scale")?.unwrap_or(0.0);
        if !weights_scale.is_finite() {
            return Err(ModelError::BadHparam {
                key: k.key("expert_weights_scale"),
                reason: format!("{weights_scale} is not a finite number"),
            });
        }
        Ok(MoeConfig {
            n_expert,
            n_used,
            n_ff_exp,
            n_ff_shexp,
            gating,
            activation,
            weights_scale,
        })
    }

    /// Whether metadata declares experts at all (`expert_count` present and non-zero).
    pub fn declared(k: &Keys) -> Result<bool> {
        Ok(k.opt_usize("expert_count")?.is_some_and(|n| n > 0))
    }
}

/// The routed experts' gate and up projections: two stacks, or one fused stack whose first
/// `n_ff_exp` outputs are the gate and the next `n_ff_exp` the up projection.
enum GateUp {
    Split { gate: MatrixStack, up: MatrixStack },
    Fused(MatrixStack),
}

/// Per-expert biases (gpt-oss), `[n_expert, width]` each.
#[derive(Default)]
struct ExpertBiases {
    gate: Option<Vec<f32>>,
    up: Option<Vec<f32>>,
    down: Option<Vec<f32>>,
}

/// The always-on shared expert and its optional per-token sigmoid gate `{n_embd}`.
pub struct SharedExpert {
    pub ffn: GatedFfnWeights,
    pub gate: Option<Matrix>,
}

/// One MoE FFN layer.
pub struct MoeFfn {
    pub cfg: MoeConfig,
    pub router: Matrix,
    pub router_bias: Option<Vec<f32>>,
    gate_up: GateUp,
    down: MatrixStack,
    biases: ExpertBiases,
    pub shared: Option<SharedExpert>,
}

/// The routing decision for a batch: `n_used` (expert, weight) slots per token, best first.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    pub n_used: usize,
    /// `[n_tok, n_used]` expert ids.
    pub experts: Vec<usize>,
    /// `[n_tok, n_used]` mixing weights.
    pub weights: Vec<f32>,
}

/// Bytes of routed-expert weights handed to matmul since the process started, by every MoE
/// forward pass (instrumentation: decode should read `n_used` experts per layer, not all of them).
/// Process-wide because the forward pass runs on a compute-pool worker, not the caller's thread.
static EXPERT_BYTES_READ: AtomicU64 = AtomicU64::new(0);

pub fn expert_bytes_read() -> u64 {
    EXPERT_BYTES_READ.load(Ordering::Relaxed)
}

fn count_expert_bytes(m: &MatRef) {
    EXPERT_BYTES_READ.fetch_add(m.data.len() as u64, Ordering::Relaxed);
}

impl MoeFfn {
    /// Loads `blk.{il}.ffn_gate_inp`, the expert stacks (split `ffn_{gate,up}_exps` or fused
    /// `ffn_gate_up_exps`, and `ffn_down_exps`), their optional biases, and the shared expert
    /// `ffn_{gate,up,down}_shexp` (+ `ffn_gate_inp_shexp`) when present.
    pub fn load(w: &WeightLoader, il: usize, n_embd: usize, cfg: &MoeConfig) -> Result<MoeFfn> {
        let name = |t: &str| format!("blk.{il}.{t}");
        let (n_expert, n_ff) = (cfg.n_expert, cfg.n_ff_exp);
        let fused_name = name("ffn_gate_up_exps.weight");
        let gate_up = if w.file.has_tensor(&fused_name) {
            GateUp::Fused(w.matrix_stack(&fused_name, n_embd, 2 * n_ff, n_expert)?)
        } else {
            GateUp::Split {
                gate: w.matrix_stack(&name("ffn_gate_exps.weight"), n_embd, n_ff, n_expert)?,
                up: w.matrix_stack(&name("ffn_up_exps.weight"), n_embd, n_ff, n_expert)?,
            }
        };
        let bias = |t: &str, width: usize| -> Result<Option<Vec<f32>>> {
            let n = name(t);
            if w.file.has_tensor(&n) {
                w.tensor_f32(&n, &[width, n_expert]).map(Some)
            } else {
                Ok(None)
            }
        };
        let mut biases = ExpertBiases {
            gate: bias("ffn_gate_exps.bias", n_ff)?,
            up: bias("ffn_up_exps.bias", n_ff)?,
            down: bias("ffn_down_exps.bias", n_embd)?,
        };
        // A fused stack's bias is fused too; split it so both layouts share one code path.
        if let Some(gu) = bias("ffn_gate_up_exps.bias", 2 * n_ff)? {
            let (g, u): (Vec<_>, Vec<_>) =
                gu.chunks_exact(2 * n_ff).map(|r| r.split_at(n_ff)).unzip();
            biases.gate = Some(g.concat());
            biases.up = Some(u.concat());
        }
        let shared = if w.file.has_tensor(&name("ffn_gate_shexp.weight")) {
            let n_sh = cfg.n_ff_shexp;
            Some(SharedExpert {
                ffn: GatedFfnWeights {
                    gate: w.matrix(&name("ffn_gate_shexp.weight"), n_embd, n_sh)?,
                    up: w.matrix(&name("ffn_up_shexp.weight"), n_embd, n_sh)?,
                    down: w.matrix(&name("ffn_down_shexp.weight"), n_sh, n_embd)?,
                },
                gate: w.opt_matrix(&name("ffn_gate_inp_shexp.weight"), n_embd, 1)?,
            })
        } else {
            None
        };
        Ok(MoeFfn {
            cfg: cfg.clone(),
            router: w.matrix(&name("ffn_gate_inp.weight"), n_embd, n_expert)?,
            router_bias: w.opt_vector(&name("ffn_gate_inp.bias"), n_expert)?,
            gate_up,
            down: w.matrix_stack(&name("ffn_down_exps.weight"), n_ff, n_embd, n_expert)?,
            biases,
            shared,
        })
    }

    /// Bytes of one routed expert's gate, up and down matrices.
    pub fn expert_bytes(&self) -> usize {
        let gate_up = match &self.gate_up {
            GateUp::Split { gate, up } => gate.matrix_bytes() + up.matrix_bytes(),
            GateUp::Fused(gu) => gu.matrix_bytes(),
        };
        gate_up + self.down.matrix_bytes()
    }

    /// Picks each token's experts from the normalised input `xn` (`[n_tok, n_embd]`).
    pub fn route(&self, xn: &[f32], n_tok: usize) -> Routing {
        // logits: [n_tok, n_expert]
        let mut logits = self.router.matmul(xn, n_tok);
        if let Some(b) = &self.router_bias {
            layers::add_bias(&mut logits, b);
        }
        let (n_expert, k) = (self.cfg.n_expert, self.cfg.n_used);
        let mut experts = Vec::with_capacity(n_tok * k);
        let mut weights = Vec::with_capacity(n_tok * k);
        let mut order: Vec<usize> = Vec::with_capacity(n_expert);
        for row in logits.chunks_exact_mut(n_expert) {
            if let Gating::Softmax { .. } = self.cfg.gating {
                layers::softmax_in_place(row);
            }
            order.clear();
            order.extend(0..n_expert);
            // Stable: equal scores keep the lower expert id first.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let mut w: Vec<f32> = order[..k].iter().map(|&e| row[e]).collect();
            match self.cfg.gating {
                Gating::Softmax { renormalize: true } => {
                    let sum: f64 = w.iter().map(|&v| v as f64).sum();
                    // ggml clamps the sum to the smallest normal f16.
                    let sum = (sum as f32).max(6.103_515_6e-5);
                    w.iter_mut().for_each(|v| *v /= sum);
                }
                Gating::Softmax { renormalize: false } => {}
                Gating::SoftmaxOfSelected => layers::softmax_in_place(&mut w),
            }
            let s = self.cfg.weights_scale;
            if s != 0.0 && s != 1.0 {
                w.iter_mut().for_each(|v| *v *= s);
            }
            experts.extend_from_slice(&order[..k]);
            weights.extend(w);
        }
        Routing {
            n_used: k,
            experts,
            weights,
        }
    }

    /// The MoE FFN over normalised input `xn` (`[n_tok, n_embd]`); returns `[n_tok, n_embd]`.
    pub fn forward(&self, xn: &[f32], n_tok: usize) -> Vec<f32> {
        let n_embd = self.router.n_in;
        let routing = self.route(xn, n_tok);
        let k = routing.n_used;
        // Each (token, slot)'s weighted expert output, summed per token in slot order below
        // (the order llama.cpp adds them in). slot_out: [n_tok, n_used, n_embd]
        let mut slot_out = vec![0f32; n_tok * k * n_embd];
        // slots[e]: the (token · n_used + slot) indices routed to expert e, in token order.
        let mut slots: Vec<Vec<usize>> = vec![Vec::new(); self.cfg.n_expert];
        for (i, &e) in routing.experts.iter().enumerate() {
            slots[e].push(i);
        }
        for (e, sl) in slots.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            // xe: [m, n_embd] — the tokens of expert e
            let xe: Vec<f32> = sl
                .iter()
                .flat_map(|&i| xn[(i / k) * n_embd..][..n_embd].iter().copied())
                .collect();
            let ye = self.expert(e, &xe, sl.len());
            for (&i, y) in sl.iter().zip(ye.chunks_exact(n_embd)) {
                let w = routing.weights[i];
                for (o, &v) in slot_out[i * n_embd..][..n_embd].iter_mut().zip(y) {
                    *o = v * w;
                }
            }
        }
        // out: [n_tok, n_embd]
        let mut out = vec![0f32; n_tok * n_embd];
        for (o, slots) in out
            .chunks_exact_mut(n_embd)
            .zip(slot_out.chunks_exact(k * n_embd))
        {
            o.copy_from_slice(&slots[..n_embd]);
            for s in slots.chunks_exact(n_embd).skip(1) {
                layers::add_in_place(o, s);
            }
        }
        if let Some(sh) = &self.shared {
            let mut s = blocks::gated_ffn(&sh.ffn, layers::silu, xn, n_tok);
            if let Some(g) = &sh.gate {
                // g: [n_tok, 1] — one gate per token
                let g = g.matmul(xn, n_tok);
                for (row, &gt) in s.chunks_exact_mut(n_embd).zip(&g) {
                    layers::scale_in_place(row, 1.0 / (1.0 + (-gt).exp()));
                }
            }
            layers::add_in_place(&mut out, &s);
        }
        out
    }

    /// Expert `e` over its `m` tokens `xe` (`[m, n_embd]`); returns `[m, n_embd]`, unweighted.
    fn expert(&self, e: usize, xe: &[f32], m: usize) -> Vec<f32> {
        let n_ff = self.cfg.n_ff_exp;
        let run = |w: MatRef, x: &[f32], bias: &Option<Vec<f32>>| {
            count_expert_bytes(&w);
            let mut y = vec![0f32; m * w.n_out];
            matmul::matmul(w, x, m, &mut y);
            if let Some(b) = bias {
                layers::add_bias(&mut y, &b[e * w.n_out..][..w.n_out]);
            }
            y
        };
        // gate, up: [m, n_ff]
        let (mut gate, up) = match &self.gate_up {
            GateUp::Split { gate, up } => (
                run(gate.get(e), xe, &self.biases.gate),
                run(up.get(e), xe, &self.biases.up),
            ),
            GateUp::Fused(gu) => (
                run(gu.rows(e, 0, n_ff), xe, &self.biases.gate),
                run(gu.rows(e, n_ff, n_ff), xe, &self.biases.up),
            ),
        };
        self.cfg.activation.apply(&mut gate, &up);
        run(self.down.get(e), &gate, &self.biases.down)
    }
}

/// A layer's FFN in families whose layers are either dense SwiGLU or mixtures of SwiGLU experts.
// One value per layer, built once at load: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum SwigluFfn {
    Dense(GatedFfnWeights),
    Experts(MoeFfn),
}

impl SwigluFfn {
    /// Experts when the family's `moe` config is present, the dense `ffn_{gate,up,down}` otherwise.
    pub fn load(
        w: &WeightLoader,
        il: usize,
        n_embd: usize,
        n_ff: usize,
        moe: Option<&MoeConfig>,
    ) -> Result<Self> {
        Ok(match moe {
            Some(cfg) => SwigluFfn::Experts(MoeFfn::load(w, il, n_embd, cfg)?),
            None => SwigluFfn::Dense(GatedFfnWeights::load(w, il, n_embd, n_ff)?),
        })
    }

    /// `[n_tok, n_embd]` → `[n_tok, n_embd]`.
    pub fn forward(&self, xn: &[f32], n_tok: usize) -> Vec<f32> {
        match self {
            SwigluFfn::Dense(w) => blocks::gated_ffn(w, layers::silu, xn, n_tok),
            SwigluFfn::Experts(moe) => moe.forward(xn, n_tok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_oai_clamps_gate_above_and_up_both_ways() {
        let act = ExpertActivation::GPT_OSS;
        let mut g = vec![10.0, -2.0, 1.0];
        act.apply(&mut g, &[20.0, -20.0, 0.0]);
        let sig = |x: f32| 1.0 / (1.0 + (-1.702 * x).exp());
        assert!((g[0] - 7.0 * sig(7.0) * 8.0).abs() < 1e-4);
        assert!((g[1] - (-2.0 * sig(-2.0) * -6.0)).abs() < 1e-5);
        assert!((g[2] - sig(1.0)).abs() < 1e-6);
    }
}
