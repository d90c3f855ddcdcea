//! granitehybrid: a hybrid of Mamba2 layers and GQA attention layers (the per-layer
//! `attention.head_count_kv` is 0 for the Mamba2 layers), each followed by a SwiGLU FFN (or a
//! MoE with a shared expert), with Granite's embedding, residual, attention and logit scales.
//!
//! ```text
//! x = embed(tokens) · embedding_scale
//! for each layer:
//!     x += residual_scale · mixer(rms_norm(x)·attn_norm)   mixer = Mamba2 (ssm.rs) | attention
//!     x += residual_scale · ffn(rms_norm(x)·ffn_norm)
//! logits = output · rms_norm(x)·output_norm / logit_scale
//! ```
//! Attention uses RoPE only when `rope.scaling.finetuned` is true, and `attention.scale` as the
//! q·k scale when set.

use crate::gguf::GgufFile;
use crate::model::batch::Batch;
use crate::model::blocks::{self, AttentionWeights, OutputHead};
use crate::model::hparams::{Hparams, Keys};
use crate::model::layers::{self, AttnShape, Rope, RopeKind};
use crate::model::moe::{ExpertActivation, Gating, MoeConfig, SwigluFfn};
use crate::model::ssm::{self, Mamba2Shape, Mamba2Weights};
use crate::model::state::{KvCache, LayerState, SeqState};
use crate::model::weights::{Matrix, WeightLoader};
use crate::model::{Architecture, ModelError, Result};

// One value per layer, built once at load: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Mixer {
    Mamba2(Mamba2Weights),
    Attention(AttentionWeights, AttnShape),
}

struct Layer {
    attn_norm: Vec<f32>,
    mixer: Mixer,
    ffn_norm: Vec<f32>,
    ffn: SwigluFfn,
}

pub struct GraniteHybrid {
    hp: Hparams,
    tok_embd: Matrix,
    layers: Vec<Layer>,
    head: OutputHead,
    mamba: Mamba2Shape,
    /// `n_rot == 0` when RoPE is off: the rotation then touches no dimension.
    rope: Rope,
    moe: Option<MoeConfig>,
    embedding_scale: f32,
    residual_scale: f32,
    logit_scale: f32,
}

/// A Granite scale: absent or 0 means none (1).
fn scale(k: &Keys, suffix: &str) -> Result<f32> {
    match k.opt_f32(suffix)? {
        None => Ok(1.0),
        Some(0.0) => Ok(1.0),
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(ModelError::BadHparam {
            key: k.key(suffix),
            reason: format!("{v} is not a finite number"),
        }),
    }
}

pub fn load(file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, tok_embd) = super::load_embeddings(file, "granitehybrid")?;
    let k = Keys {
        md: &file.metadata,
        arch: "granitehybrid",
    };
    let mamba = Mamba2Shape::read(&k, hp.rms_eps)?;
    let kv_heads = file
        .metadata
        .u32_per_layer(&k.key("attention.head_count_kv"), hp.n_layer)?
        .unwrap_or_else(|| vec![hp.n_head_kv as u32; hp.n_layer]);
    let attn_scale = k.opt_f32("attention.scale")?.filter(|&s| s != 0.0);
    let use_rope =
        k.md.opt_bool(&k.key("rope.scaling.finetuned"))?
            .unwrap_or(false);
    let rope = Rope {
        kind: RopeKind::Norm,
        n_rot: if use_rope { hp.n_rot } else { 0 },
        freq_base: hp.rope_base,
        freq_scale: hp.rope_freq_scale,
        freq_factors: None,
    };
    let moe = if MoeConfig::declared(&k)? {
        Some(MoeConfig::read(
            &k,
            hp.n_ff,
            None,
            Gating::Softmax { renormalize: true },
            ExpertActivation::Silu,
        )?)
    } else {
        None
    };

    let w = WeightLoader::new(file);
    let norm = |il: usize, name: &str| w.vector(&format!("blk.{il}.{name}.weight"), hp.n_embd);
    let mut layers = Vec::with_capacity(hp.n_layer);
    for (il, &n_kv) in kv_heads.iter().enumerate() {
        let mixer = if n_kv == 0 {
            Mixer::Mamba2(Mamba2Weights::load(&w, il, hp.n_embd, &mamba)?)
        } else {
            let shape = super::attention_shape(&k, &hp, n_kv as usize, attn_scale)?;
            Mixer::Attention(AttentionWeights::load(&w, il, hp.n_embd, &shape)?, shape)
        };
        let ffn = SwigluFfn::load(&w, il, hp.n_embd, hp.n_ff, moe.as_ref())?;
        layers.push(Layer {
            attn_norm: norm(il, "attn_norm")?,
            mixer,
            ffn_norm: norm(il, "ffn_norm")?,
            ffn,
        });
    }
    let head = OutputHead::load(&w, "output_norm.weight", &tok_embd)?;
    let model = GraniteHybrid {
        hp: hp.clone(),
        tok_embd,
        layers,
        head,
        mamba,
        rope,
        moe,
        embedding_scale: scale(&k, "embedding_scale")?,
        residual_scale: scale(&k, "residual_scale")?,
        logit_scale: scale(&k, "logit_scale")?,
    };
    Ok((hp, Box::new(model)))
}

impl Architecture for GraniteHybrid {
    fn forward(&self, batch: &mut Batch) -> Vec<f32> {
        let eps = self.hp.rms_eps;
        let n_tok = batch.n_tokens();
        // x: [n_tok, n_embd] — the residual stream
        let mut x = blocks::embed(&self.tok_embd, &batch.tokens());
        layers::scale_in_place(&mut x, self.embedding_scale);
        for (il, l) in self.layers.iter().enumerate() {
            // xn, mix: [n_tok, n_embd]
            let xn = layers::rms_norm(&x, &l.attn_norm, eps);
            let mut mix = match &l.mixer {
                Mixer::Mamba2(w) => ssm::mamba2(w, &self.mamba, &xn, batch, il),
                Mixer::Attention(w, shape) => {
                    blocks::self_attention(w, shape, &self.rope, eps, &xn, batch, il)
                }
            };
            layers::scale_in_place(&mut mix, self.residual_scale);
            layers::add_in_place(&mut x, &mix);

            let xn = layers::rms_norm(&x, &l.ffn_norm, eps);
            let mut ffn = l.ffn.forward(&xn, n_tok);
            layers::scale_in_place(&mut ffn, self.residual_scale);
            layers::add_in_place(&mut x, &ffn);
        }
        let rows = batch.output_rows();
        batch.advance();
        // logits: [rows, n_vocab]
        let mut logits = self.head.logits(&x, &rows, eps);
        layers::scale_in_place(&mut logits, 1.0 / self.logit_scale);
        logits
    }

    fn new_state(&self) -> SeqState {
        SeqState {
            n_past: 0,
            layers: self
                .layers
                .iter()
                .map(|l| match &l.mixer {
                    Mixer::Mamba2(w) => LayerState::Recurrent(w.new_state(&self.mamba)),
                    Mixer::Attention(_, s) => {
                        LayerState::Attention(KvCache::new(s.n_head_kv * s.head_dim))
                    }
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
                Mixer::Mamba2(_) => 'M',
                Mixer::Attention(..) => 'A',
            })
            .collect()
    }
}
