//! qwen35 (and, through their [`Variant`]s, qwen35moe and qwen3next): a hybrid of Gated
//! DeltaNet layers and gated full-attention layers, every `full_attention_interval`-th layer
//! (or as `attention.recurrent_layers` says) being attention.
//!
//! ```text
//! x = embed(tokens)
//! for each layer:
//!     x += mixer(rms_norm(x)·attn_norm)           mixer = Gated DeltaNet  (delta_net.rs)
//!                                                       | gated attention (gated_attention.rs)
//!     x += ffn(rms_norm(x)·post_attention_norm)   ffn = SwiGLU (qwen35) | MoE + shared expert
//! logits = output · rms_norm(x)·output_norm         (output tied to token_embd if absent)
//! ```
//! Norm weights are stored as `1 + w` by the converter, so they multiply directly.

use crate::gguf::GgufFile;
use crate::model::batch::Batch;
use crate::model::blocks::{self, OutputHead};
use crate::model::delta_net::{self, GdnShape, GdnWeights, HeadOrder};
use crate::model::gated_attention::{self, GatedAttentionWeights};
use crate::model::hparams::{Hparams, Keys};
use crate::model::layers::{self, AttnShape, Rope, RopeKind};
use crate::model::moe::{ExpertActivation, Gating, MoeConfig, SwigluFfn};
use crate::model::state::{KvCache, LayerState, SeqState};
use crate::model::weights::{Matrix, WeightLoader};
use crate::model::{Architecture, ModelError, Result};

/// What distinguishes the members of the family.
pub struct Variant {
    pub arch: &'static str,
    /// How v-heads map to k-heads in the GDN layers.
    pub head_order: HeadOrder,
    /// Mixture-of-experts FFN (with a gated shared expert) instead of a dense SwiGLU.
    pub moe: bool,
}

pub const VARIANT: Variant = Variant {
    arch: "qwen35",
    head_order: HeadOrder::Tiled,
    moe: false,
};

/// Without `attention.recurrent_layers` or `full_attention_interval`, llama.cpp uses 4.
const DEFAULT_FULL_ATTENTION_INTERVAL: usize = 4;

// One value per layer, built once at load: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Mixer {
    DeltaNet(GdnWeights),
    Attention(GatedAttentionWeights),
}

struct Layer {
    attn_norm: Vec<f32>,
    mixer: Mixer,
    post_attention_norm: Vec<f32>,
    ffn: SwigluFfn,
}

pub struct Qwen35 {
    hp: Hparams,
    tok_embd: Matrix,
    layers: Vec<Layer>,
    head: OutputHead,
    gdn: GdnShape,
    shape: AttnShape,
    rope: Rope,
    moe: Option<MoeConfig>,
}

/// Which trunk layers are Gated DeltaNet (true) and which full attention (false).
fn recurrent_layers(k: &Keys, n_layer: usize) -> Result<Vec<bool>> {
    if let Some(flags) = k.md.opt_array(&k.key("attention.recurrent_layers"))? {
        if flags.len() < n_layer {
            return Err(ModelError::BadHparam {
                key: k.key("attention.recurrent_layers"),
                reason: format!("has {} entries for {n_layer} layers", flags.len()),
            });
        }
        return flags[..n_layer]
            .iter()
            .map(|f| {
                f.as_bool().ok_or_else(|| ModelError::BadHparam {
                    key: k.key("attention.recurrent_layers"),
                    reason: format!("{f} is not a bool"),
                })
            })
            .collect();
    }
    let interval = match k.opt_usize("full_attention_interval")? {
        Some(v) => k.check_range("full_attention_interval", v, 1, usize::MAX)?,
        None => DEFAULT_FULL_ATTENTION_INTERVAL,
    };
    Ok((0..n_layer).map(|il| (il + 1) % interval != 0).collect())
}

pub fn load(file: &GgufFile, v: &Variant) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, tok_embd) = super::load_embeddings(file, v.arch)?;
    let k = Keys {
        md: &file.metadata,
        arch: v.arch,
    };
    // Multi-token-prediction blocks follow the trunk; plain decoding skips them.
    let n_nextn = k.opt_usize("nextn_predict_layers")?.unwrap_or(0);
    if n_nextn >= hp.n_layer {
        return Err(ModelError::BadHparam {
            key: k.key("nextn_predict_layers"),
            reason: format!("{n_nextn} leaves no trunk layers of {}", hp.n_layer),
        });
    }
    let n_trunk = hp.n_layer - n_nextn;
    let recurrent = recurrent_layers(&k, n_trunk)?;
    let gdn = GdnShape::read(&k, v.head_order, hp.rms_eps)?;
    let shape = AttnShape {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hp.head_dim,
        scale: 1.0 / (hp.head_dim as f32).sqrt(),
        window: None,
    };
    // qwen35's IMROPE gives every section the same position for text, which is NEOX over n_rot.
    let rope = Rope {
        kind: RopeKind::Neox,
        n_rot: hp.n_rot,
        freq_base: hp.rope_base,
        freq_scale: hp.rope_freq_scale,
        freq_factors: None,
    };

    // MoE: softmax router, top-k renormalised, SwiGLU experts, sigmoid-gated shared expert.
    let moe = if v.moe {
        let n_ff_exp_default = k
            .opt_usize("expert_used_count")?
            .filter(|&n| n > 0)
            .map(|n| hp.n_ff / n);
        Some(MoeConfig::read(
            &k,
            hp.n_ff,
            n_ff_exp_default,
            Gating::Softmax { renormalize: true },
            ExpertActivation::Silu,
        )?)
    } else {
        None
    };

    let w = WeightLoader::new(file);
    let norm = |il: usize, name: &str| w.vector(&format!("blk.{il}.{name}.weight"), hp.n_embd);
    let mut layers = Vec::with_capacity(n_trunk);
    for (il, &is_recurrent) in recurrent.iter().enumerate() {
        let mixer = if is_recurrent {
            Mixer::DeltaNet(GdnWeights::load(&w, il, hp.n_embd, &gdn)?)
        } else {
            Mixer::Attention(GatedAttentionWeights::load(&w, il, hp.n_embd, &shape)?)
        };
        let ffn = SwigluFfn::load(&w, il, hp.n_embd, hp.n_ff, moe.as_ref())?;
        layers.push(Layer {
            attn_norm: norm(il, "attn_norm")?,
            mixer,
            post_attention_norm: norm(il, "post_attention_norm")?,
            ffn,
        });
    }
    let head = OutputHead::load(&w, "output_norm.weight", &tok_embd)?;
    let model = Qwen35 {
        hp: hp.clone(),
        tok_embd,
        layers,
        head,
        gdn,
        shape,
        rope,
        moe,
    };
    Ok((hp, Box::new(model)))
}

impl Architecture for Qwen35 {
    fn forward(&self, batch: &mut Batch) -> Vec<f32> {
        let eps = self.hp.rms_eps;
        let n_tok = batch.n_tokens();
        // x: [n_tok, n_embd] — the residual stream
        let mut x = blocks::embed(&self.tok_embd, &batch.tokens());
        for (il, l) in self.layers.iter().enumerate() {
            // xn, mix: [n_tok, n_embd]
            let xn = layers::rms_norm(&x, &l.attn_norm, eps);
            let mix = match &l.mixer {
                Mixer::DeltaNet(w) => delta_net::gated_delta_net(w, &self.gdn, &xn, batch, il),
                Mixer::Attention(w) => gated_attention::gated_self_attention(
                    w,
                    &self.shape,
                    &self.rope,
                    eps,
                    &xn,
                    batch,
                    il,
                ),
            };
            layers::add_in_place(&mut x, &mix);

            let xn = layers::rms_norm(&x, &l.post_attention_norm, eps);
            let ffn = l.ffn.forward(&xn, n_tok);
            layers::add_in_place(&mut x, &ffn);
        }
        let rows = batch.output_rows();
        batch.advance();
        // [rows, n_vocab]
        self.head.logits(&x, &rows, eps)
    }

    fn new_state(&self) -> SeqState {
        let kv_dim = self.shape.n_head_kv * self.shape.head_dim;
        SeqState {
            n_past: 0,
            layers: self
                .layers
                .iter()
                .map(|l| match &l.mixer {
                    Mixer::DeltaNet(w) => LayerState::Recurrent(w.new_state(&self.gdn)),
                    Mixer::Attention(_) => LayerState::Attention(KvCache::new(kv_dim)),
                })
                .collect(),
        }
    }

    fn experts(&self) -> Option<(usize, usize)> {
        self.moe.as_ref().map(|c| (c.n_expert, c.n_used))
    }

    fn layer_map(&self) -> String {
        self.layers
            .iter()
            .map(|l| match l.mixer {
                Mixer::DeltaNet(_) => 'L',
                Mixer::Attention(_) => 'A',
            })
            .collect()
    }
}
