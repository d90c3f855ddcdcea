//! gemma3: scaled embeddings, sandwich norms around attention and a GEGLU FFN, q/k norms, and
//! sliding-window attention on most layers (with their own RoPE base).
//!
//! ```text
//! x = embed(tokens) · sqrt(n_embd)
//! for each layer:
//!     x += post_attention_norm(attention(rope(qn(q)), rope(kn(k)), v))    q,k,v = W · attn_norm(x)
//!     x += post_ffw_norm(ffn_down · (gelu(ffn_gate · h) ⊙ ffn_up · h))      h = ffn_norm(x)
//! logits = softcap(output · output_norm(x))                                (output tied to token_embd)
//! ```

use crate::gguf::GgufFile;
use crate::model::batch::Batch;
use crate::model::blocks::{self, AttentionWeights, GatedFfnWeights, OutputHead};
use crate::model::hparams::{Hparams, Keys};
use crate::model::layers::{self, AttnShape, Rope, RopeKind};
use crate::model::state::SeqState;
use crate::model::weights::{Matrix, WeightLoader};
use crate::model::{Architecture, ModelError, Result};

/// Without a `sliding_window_pattern` key, llama.cpp makes every 6th layer global.
const DEFAULT_SWA_PERIOD: usize = 6;
/// RoPE base of the sliding-window layers when `rope.freq_base_swa` is absent.
const DEFAULT_SWA_ROPE_BASE: f32 = 10000.0;
/// gemma3-27B (62 layers) scales queries by 1/sqrt(n_embd / n_head) instead of 1/sqrt(head_dim).
const N_LAYER_27B: usize = 62;

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    post_attention_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    ffn: GatedFfnWeights,
    post_ffw_norm: Vec<f32>,
    /// Sliding-window (local) layers differ from global ones in shape (window) and RoPE base.
    sliding: bool,
}

pub struct Gemma3 {
    hp: Hparams,
    tok_embd: Matrix,
    layers: Vec<Layer>,
    head: OutputHead,
    global_shape: AttnShape,
    local_shape: AttnShape,
    global_rope: Rope,
    local_rope: Rope,
}

pub fn load(file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, tok_embd) = super::load_embeddings(file, "gemma3")?;
    let k = Keys {
        md: &file.metadata,
        arch: "gemma3",
    };
    let window = k.opt_usize("attention.sliding_window")?;
    if window == Some(0) {
        return Err(ModelError::BadHparam {
            key: k.key("attention.sliding_window"),
            reason: "must be positive".into(),
        });
    }
    let period = match k.opt_usize("attention.sliding_window_pattern")? {
        Some(p) => k.check_range("attention.sliding_window_pattern", p, 1, usize::MAX)?,
        None => DEFAULT_SWA_PERIOD,
    };
    let scale = if hp.n_layer == N_LAYER_27B {
        1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()
    } else {
        1.0 / (hp.head_dim as f32).sqrt()
    };
    let global_shape = AttnShape {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hp.head_dim,
        scale,
        window: None,
    };
    let local_shape = AttnShape {
        window,
        ..global_shape.clone()
    };
    let global_rope = Rope {
        kind: RopeKind::Neox,
        n_rot: hp.n_rot,
        freq_base: hp.rope_base,
        freq_scale: hp.rope_freq_scale,
        freq_factors: None,
    };
    // Position scaling applies to the global layers only.
    let local_rope = Rope {
        freq_base: k
            .opt_f32("rope.freq_base_swa")?
            .unwrap_or(DEFAULT_SWA_ROPE_BASE),
        freq_scale: 1.0,
        ..global_rope.clone()
    };

    let w = WeightLoader::new(file);
    let norm = |il: usize, name: &str| w.vector(&format!("blk.{il}.{name}.weight"), hp.n_embd);
    let mut layers = Vec::with_capacity(hp.n_layer);
    for il in 0..hp.n_layer {
        layers.push(Layer {
            attn_norm: norm(il, "attn_norm")?,
            attn: AttentionWeights::load(&w, il, hp.n_embd, &global_shape)?,
            post_attention_norm: norm(il, "post_attention_norm")?,
            ffn_norm: norm(il, "ffn_norm")?,
            ffn: GatedFfnWeights::load(&w, il, hp.n_embd, hp.n_ff)?,
            post_ffw_norm: norm(il, "post_ffw_norm")?,
            sliding: window.is_some() && il % period < period - 1,
        });
    }
    let mut head = OutputHead::load(&w, "output_norm.weight", &tok_embd)?;
    head.softcap = k.opt_f32("final_logit_softcapping")?.filter(|&c| c > 0.0);
    let model = Gemma3 {
        hp: hp.clone(),
        tok_embd,
        layers,
        head,
        global_shape,
        local_shape,
        global_rope,
        local_rope,
    };
    Ok((hp, Box::new(model)))
}

impl Architecture for Gemma3 {
    fn forward(&self, batch: &mut Batch) -> Vec<f32> {
        let hp = &self.hp;
        let eps = hp.rms_eps;
        let n_tok = batch.n_tokens();
        // x: [n_tok, n_embd] — the residual stream
        let mut x = blocks::embed(&self.tok_embd, &batch.tokens());
        layers::scale_in_place(&mut x, (hp.n_embd as f32).sqrt());
        for (il, l) in self.layers.iter().enumerate() {
            let (shape, rope) = if l.sliding {
                (&self.local_shape, &self.local_rope)
            } else {
                (&self.global_shape, &self.global_rope)
            };
            // xn, attn: [n_tok, n_embd]
            let xn = layers::rms_norm(&x, &l.attn_norm, eps);
            let mut attn = blocks::self_attention(&l.attn, shape, rope, eps, &xn, batch, il);
            layers::rms_norm_in_place(&mut attn, &l.post_attention_norm, eps);
            layers::add_in_place(&mut x, &attn);

            let xn = layers::rms_norm(&x, &l.ffn_norm, eps);
            let mut ffn = blocks::gated_ffn(&l.ffn, layers::gelu_ggml, &xn, n_tok);
            layers::rms_norm_in_place(&mut ffn, &l.post_ffw_norm, eps);
            layers::add_in_place(&mut x, &ffn);
        }
        let rows = batch.output_rows();
        batch.advance();
        // [rows, n_vocab]
        self.head.logits(&x, &rows, eps)
    }

    fn new_state(&self) -> SeqState {
        SeqState::attention_only(
            self.hp.n_layer,
            self.global_shape.n_head_kv * self.global_shape.head_dim,
        )
    }

    fn layer_map(&self) -> String {
        self.layers
            .iter()
            .map(|l| if l.sliding { 'S' } else { 'A' })
            .collect()
    }
}
