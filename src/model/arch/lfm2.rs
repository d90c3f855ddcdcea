//! lfm2: a hybrid of gated short-conv layers and GQA attention layers (the per-layer
//! `attention.head_count_kv` is 0 for the conv layers), each followed by a SwiGLU FFN.
//!
//! ```text
//! x = embed(tokens)
//! for each layer:
//!     x += mixer(rms_norm(x)·attn_norm)     mixer = short conv: out_proj·(c ⊙ conv(b ⊙ x))  (ssm.rs)
//!                                                  | attention(rope(qn(q)), rope(kn(k)), v)
//!     x += ffn_down · (silu(ffn_gate · h) ⊙ ffn_up · h)     h = rms_norm(x)·ffn_norm
//! logits = output · rms_norm(x)·token_embd_norm            (the final norm is named token_embd_norm)
//! ```

use crate::gguf::GgufFile;
use crate::model::batch::Batch;
use crate::model::blocks::{self, AttentionWeights, GatedFfnWeights, OutputHead};
use crate::model::hparams::{Hparams, Keys};
use crate::model::layers::{self, AttnShape, Rope, RopeKind};
use crate::model::ssm::{self, ShortConvWeights};
use crate::model::state::{KvCache, LayerState, SeqState};
use crate::model::weights::{Matrix, WeightLoader};
use crate::model::{Architecture, Result};

// One value per layer, built once at load: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Mixer {
    ShortConv(ShortConvWeights),
    Attention(AttentionWeights, AttnShape),
}

struct Layer {
    attn_norm: Vec<f32>,
    mixer: Mixer,
    ffn_norm: Vec<f32>,
    ffn: GatedFfnWeights,
}

pub struct Lfm2 {
    hp: Hparams,
    tok_embd: Matrix,
    layers: Vec<Layer>,
    head: OutputHead,
    rope: Rope,
}

pub fn load(file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, tok_embd) = super::load_embeddings(file, "lfm2")?;
    let k = Keys {
        md: &file.metadata,
        arch: "lfm2",
    };
    let kernel = ssm::check_conv_kernel(&k, "shortconv.l_cache", k.usize("shortconv.l_cache")?)?;
    let kv_heads = file
        .metadata
        .u32_per_layer(&k.key("attention.head_count_kv"), hp.n_layer)?
        .unwrap_or_else(|| vec![hp.n_head_kv as u32; hp.n_layer]);
    let rope = Rope {
        kind: RopeKind::Neox,
        n_rot: hp.n_rot,
        freq_base: hp.rope_base,
        freq_scale: hp.rope_freq_scale,
        freq_factors: None,
    };

    let w = WeightLoader::new(file);
    let norm = |il: usize, name: &str| w.vector(&format!("blk.{il}.{name}.weight"), hp.n_embd);
    let mut layers = Vec::with_capacity(hp.n_layer);
    for (il, &n_kv) in kv_heads.iter().enumerate() {
        let mixer = if n_kv == 0 {
            Mixer::ShortConv(ShortConvWeights::load(&w, il, hp.n_embd, kernel)?)
        } else {
            let shape = super::attention_shape(&k, &hp, n_kv as usize, None)?;
            Mixer::Attention(AttentionWeights::load(&w, il, hp.n_embd, &shape)?, shape)
        };
        layers.push(Layer {
            attn_norm: norm(il, "attn_norm")?,
            mixer,
            ffn_norm: norm(il, "ffn_norm")?,
            ffn: GatedFfnWeights::load(&w, il, hp.n_embd, hp.n_ff)?,
        });
    }
    let head = OutputHead::load(&w, "token_embd_norm.weight", &tok_embd)?;
    let model = Lfm2 {
        hp: hp.clone(),
        tok_embd,
        layers,
        head,
        rope,
    };
    Ok((hp, Box::new(model)))
}

impl Architecture for Lfm2 {
    fn forward(&self, batch: &mut Batch) -> Vec<f32> {
        let eps = self.hp.rms_eps;
        let n_tok = batch.n_tokens();
        // x: [n_tok, n_embd] — the residual stream
        let mut x = blocks::embed(&self.tok_embd, &batch.tokens());
        for (il, l) in self.layers.iter().enumerate() {
            // xn, mix: [n_tok, n_embd]
            let xn = layers::rms_norm(&x, &l.attn_norm, eps);
            let mix = match &l.mixer {
                Mixer::ShortConv(w) => ssm::short_conv(w, &xn, batch, il),
                Mixer::Attention(w, shape) => {
                    blocks::self_attention(w, shape, &self.rope, eps, &xn, batch, il)
                }
            };
            layers::add_in_place(&mut x, &mix);

            let xn = layers::rms_norm(&x, &l.ffn_norm, eps);
            let ffn = blocks::gated_ffn(&l.ffn, layers::silu, &xn, n_tok);
            layers::add_in_place(&mut x, &ffn);
        }
        let rows = batch.output_rows();
        batch.advance();
        // [rows, n_vocab]
        self.head.logits(&x, &rows, eps)
    }

    fn new_state(&self) -> SeqState {
        SeqState {
            n_past: 0,
            layers: self
                .layers
                .iter()
                .map(|l| match &l.mixer {
                    Mixer::ShortConv(w) => LayerState::Recurrent(w.new_state()),
                    Mixer::Attention(_, s) => {
                        LayerState::Attention(KvCache::new(s.n_head_kv * s.head_dim))
                    }
                })
                .collect(),
        }
    }

    fn layer_map(&self) -> String {
        self.layers
            .iter()
            .map(|l| match l.mixer {
                Mixer::ShortConv(_) => 'C',
                Mixer::Attention(..) => 'A',
            })
            .collect()
    }
}
