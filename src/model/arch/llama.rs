//! llama: pre-norm decoder blocks with GQA self-attention and a SwiGLU FFN.
//!
//! ```text
//! x = embed(tokens)
//! for each layer:
//!     x += attn_output · attention(rope(q), rope(k), v)      q,k,v = W · rms_norm(x)·attn_norm
//!     x += ffn_down · (silu(ffn_gate · h) ⊙ ffn_up · h)        h = rms_norm(x)·ffn_norm
//! logits = output · rms_norm(x)·output_norm                    (output tied to token_embd if absent)
//! ```
//! With `expert_count > 0` (Mixtral-style llama, qwen3moe) the FFN is a mixture of experts:
//! softmax router, top-k, renormalised weights, SwiGLU experts (see `moe.rs`).
//!
//! qwen2, qwen3 and qwen3moe are this block with biases / q-k norms and NEOX RoPE; their files
//! define a [`Variant`].

use crate::gguf::GgufFile;
use crate::model::batch::Batch;
use crate::model::blocks::{self, AttentionExtras, AttentionWeights, OutputHead};
use crate::model::hparams::{Hparams, Keys};
use crate::model::layers::{self, AttnShape, Rope, RopeKind, Yarn};
use crate::model::moe::{ExpertActivation, Gating, MoeConfig, SwigluFfn};
use crate::model::state::SeqState;
use crate::model::weights::{Matrix, WeightLoader};
use crate::model::{Architecture, ModelError, Result};

/// What distinguishes the members of the llama family.
pub struct Variant {
    pub arch: &'static str,
    pub rope: RopeKind,
    /// q/k/v biases must be present (qwen2).
    pub requires_qkv_bias: bool,
    /// Per-head q/k RMSNorm weights must be present (qwen3).
    pub requires_qk_norm: bool,
    /// Every layer's FFN is a mixture of experts (qwen3moe); otherwise only if `expert_count > 0`.
    pub requires_experts: bool,
}

pub const VARIANT: Variant = Variant {
    arch: "llama",
    rope: RopeKind::Norm,
    requires_qkv_bias: false,
    requires_qk_norm: false,
    requires_experts: false,
};

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    ffn: SwigluFfn,
}

pub struct Llama {
    hp: Hparams,
    tok_embd: Matrix,
    layers: Vec<Layer>,
    head: OutputHead,
    shape: AttnShape,
    rope: Rope,
    yarn: Option<Yarn>,
    moe: Option<MoeConfig>,
}

pub fn load(file: &GgufFile, v: &Variant) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, tok_embd) = super::load_embeddings(file, v.arch)?;
    let w = WeightLoader::new(file);
    let shape = AttnShape {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hp.head_dim,
        scale: 1.0 / (hp.head_dim as f32).sqrt(),
        window: None,
    };
    let rope = Rope {
        kind: v.rope,
        n_rot: hp.n_rot,
        freq_base: hp.rope_base,
        freq_scale: hp.rope_freq_scale,
        freq_factors: w.opt_vector("rope_freqs.weight", hp.n_rot / 2)?,
    };
    let yarn = hp.rope_yarn.as_ref().map(|s| Yarn::new(&rope, s));
    let k = Keys {
        md: &file.metadata,
        arch: v.arch,
    };
    // llama files give the expert width as feed_forward_length.
    let moe = if v.requires_experts || MoeConfig::declared(&k)? {
        let gating = Gating::Softmax { renormalize: true };
        let n_ff_exp_default = (v.arch == "llama").then_some(hp.n_ff);
        Some(MoeConfig::read(
            &k,
            hp.n_ff,
            n_ff_exp_default,
            gating,
            ExpertActivation::Silu,
        )?)
    } else {
        None
    };
    let mut layers = Vec::with_capacity(hp.n_layer);
    for il in 0..hp.n_layer {
        let attn = AttentionWeights::load(&w, il, hp.n_embd, &shape)?;
        let missing = |what: &str| {
            ModelError::Gguf(crate::gguf::GgufError::MissingTensor(format!(
                "blk.{il}.{what}"
            )))
        };
        if v.requires_qkv_bias && (attn.bq.is_none() || attn.bk.is_none() || attn.bv.is_none()) {
            return Err(missing("attn_{q,k,v}.bias"));
        }
        if v.requires_qk_norm && (attn.q_norm.is_none() || attn.k_norm.is_none()) {
            return Err(missing("attn_{q,k}_norm.weight"));
        }
        layers.push(Layer {
            attn_norm: w.vector(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
            attn,
            ffn_norm: w.vector(&format!("blk.{il}.ffn_norm.weight"), hp.n_embd)?,
            ffn: SwigluFfn::load(&w, il, hp.n_embd, hp.n_ff, moe.as_ref())?,
        });
    }
    let head = OutputHead::load(&w, "output_norm.weight", &tok_embd)?;
    let model = Llama {
        hp: hp.clone(),
        tok_embd,
        layers,
        head,
        shape,
        rope,
        yarn,
        moe,
    };
    Ok((hp, Box::new(model)))
}

impl Architecture for Llama {
    fn forward(&self, batch: &mut Batch) -> Vec<f32> {
        let hp = &self.hp;
        let n_tok = batch.n_tokens();
        // x: [n_tok, n_embd] — the residual stream
        let mut x = blocks::embed(&self.tok_embd, &batch.tokens());
        let extras = AttentionExtras {
            yarn: self.yarn.as_ref(),
            sinks: None,
        };
        for (il, l) in self.layers.iter().enumerate() {
            // xn: [n_tok, n_embd]
            let xn = layers::rms_norm(&x, &l.attn_norm, hp.rms_eps);
            let attn = blocks::self_attention_with(
                &l.attn,
                &self.shape,
                &self.rope,
                &extras,
                hp.rms_eps,
                &xn,
                batch,
                il,
            );
            layers::add_in_place(&mut x, &attn);

            let xn = layers::rms_norm(&x, &l.ffn_norm, hp.rms_eps);
            // ffn: [n_tok, n_embd]
            let ffn = l.ffn.forward(&xn, n_tok);
            layers::add_in_place(&mut x, &ffn);
        }
        let rows = batch.output_rows();
        batch.advance();
        // [rows, n_vocab]
        self.head.logits(&x, &rows, hp.rms_eps)
    }

    fn new_state(&self) -> SeqState {
        SeqState::attention_only(self.hp.n_layer, self.shape.n_head_kv * self.shape.head_dim)
    }

    fn layer_map(&self) -> String {
        "A".repeat(self.hp.n_layer)
    }

    fn experts(&self) -> Option<(usize, usize)> {
        self.moe.as_ref().map(|m| (m.n_expert, m.n_used))
    }
}
