//! gpt-oss: pre-norm blocks whose attention has biases, learned per-head sinks, YaRN RoPE and a
//! sliding window on alternate layers, and whose FFN is a biased mixture of experts with the
//! clamped `swiglu_oai` activation.
//!
//! ```text
//! x = embed(tokens)
//! for each layer:
//!     x += attn_output · attention_sinks(yarn(q), yarn(k), v) + b_o    q,k,v = W·attn_norm(x) + b
//!     x += moe(h)                                                       h = post_attention_norm(x)
//!          moe: top-k of (router · h + b), softmax over the k, experts (W·h + b) with swiglu_oai
//! logits = output · output_norm(x)
//! ```

use crate::gguf::GgufFile;
use crate::model::batch::Batch;
use crate::model::blocks::{self, AttentionExtras, AttentionWeights, OutputHead};
use crate::model::hparams::{Hparams, Keys};
use crate::model::layers::{self, AttnShape, Rope, RopeKind, Yarn};
use crate::model::moe::{ExpertActivation, Gating, MoeConfig, MoeFfn};
use crate::model::state::SeqState;
use crate::model::weights::{Matrix, WeightLoader};
use crate::model::{Architecture, ModelError, Result};

const ARCH: &str = "gpt-oss";
/// Without a `sliding_window_pattern` key, llama.cpp alternates: even layers slide.
const DEFAULT_SWA_PERIOD: usize = 2;

struct Layer {
    attn_norm: Vec<f32>,
    attn: AttentionWeights,
    /// `attn_sinks`: one logit per head.
    sinks: Vec<f32>,
    post_attention_norm: Vec<f32>,
    moe: MoeFfn,
    sliding: bool,
}

/// RoPE and attention geometry of one kind of layer (sliding or full).
struct LayerKind {
    shape: AttnShape,
    rope: Rope,
    yarn: Option<Yarn>,
}

pub struct GptOss {
    hp: Hparams,
    tok_embd: Matrix,
    layers: Vec<Layer>,
    head: OutputHead,
    full: LayerKind,
    sliding: LayerKind,
    moe: MoeConfig,
}

pub fn load(file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, tok_embd) = super::load_embeddings(file, ARCH)?;
    let k = Keys {
        md: &file.metadata,
        arch: ARCH,
    };
    let window = k.check_range(
        "attention.sliding_window",
        k.usize("attention.sliding_window")?,
        1,
        usize::MAX,
    )?;
    let period = match k.opt_usize("attention.sliding_window_pattern")? {
        Some(p) => k.check_range("attention.sliding_window_pattern", p, 1, usize::MAX)?,
        None => DEFAULT_SWA_PERIOD,
    };
    let full_shape = AttnShape {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hp.head_dim,
        scale: 1.0 / (hp.n_rot as f32).sqrt(),
        window: None,
    };
    let full_rope = Rope {
        kind: RopeKind::Neox,
        n_rot: hp.n_rot,
        freq_base: hp.rope_base,
        freq_scale: hp.rope_freq_scale,
        freq_factors: None,
    };
    // Sliding layers share the position scaling; only their base may differ.
    let sliding_rope = Rope {
        freq_base: k.opt_f32("rope.freq_base_swa")?.unwrap_or(hp.rope_base),
        ..full_rope.clone()
    };
    let kind = |shape: AttnShape, rope: Rope| LayerKind {
        yarn: hp.rope_yarn.as_ref().map(|s| Yarn::new(&rope, s)),
        shape,
        rope,
    };
    let sliding = kind(
        AttnShape {
            window: Some(window),
            ..full_shape.clone()
        },
        sliding_rope,
    );
    let full = kind(full_shape, full_rope);
    let moe = MoeConfig::read(
        &k,
        hp.n_ff,
        None,
        Gating::SoftmaxOfSelected,
        ExpertActivation::GPT_OSS,
    )?;

    let w = WeightLoader::new(file);
    let mut layers = Vec::with_capacity(hp.n_layer);
    for il in 0..hp.n_layer {
        let attn = AttentionWeights::load(&w, il, hp.n_embd, &full.shape)?;
        if attn.bq.is_none() || attn.bk.is_none() || attn.bv.is_none() || attn.bo.is_none() {
            return Err(ModelError::Gguf(crate::gguf::GgufError::MissingTensor(
                format!("blk.{il}.attn_{{q,k,v,output}}.bias"),
            )));
        }
        let moe = MoeFfn::load(&w, il, hp.n_embd, &moe)?;
        if moe.router_bias.is_none() {
            return Err(ModelError::Gguf(crate::gguf::GgufError::MissingTensor(
                format!("blk.{il}.ffn_gate_inp.bias"),
            )));
        }
        layers.push(Layer {
            attn_norm: w.vector(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
            attn,
            sinks: w.vector(&format!("blk.{il}.attn_sinks.weight"), hp.n_head)?,
            post_attention_norm: w
                .vector(&format!("blk.{il}.post_attention_norm.weight"), hp.n_embd)?,
            moe,
            sliding: il % period < period - 1,
        });
    }
    // gpt-oss always ships its own output matrix.
    w.matrix("output.weight", hp.n_embd, hp.n_vocab)?;
    let head = OutputHead::load(&w, "output_norm.weight", &tok_embd)?;
    let model = GptOss {
        hp: hp.clone(),
        tok_embd,
        layers,
        head,
        full,
        sliding,
        moe,
    };
    Ok((hp, Box::new(model)))
}

impl Architecture for GptOss {
    fn forward(&self, batch: &mut Batch) -> Vec<f32> {
        let eps = self.hp.rms_eps;
        let n_tok = batch.n_tokens();
        // x: [n_tok, n_embd] — the residual stream
        let mut x = blocks::embed(&self.tok_embd, &batch.tokens());
        for (il, l) in self.layers.iter().enumerate() {
            let kind = if l.sliding { &self.sliding } else { &self.full };
            let extras = AttentionExtras {
                yarn: kind.yarn.as_ref(),
                sinks: Some(&l.sinks),
            };
            // xn, attn: [n_tok, n_embd]
            let xn = layers::rms_norm(&x, &l.attn_norm, eps);
            let attn = blocks::self_attention_with(
                &l.attn,
                &kind.shape,
                &kind.rope,
                &extras,
                eps,
                &xn,
                batch,
                il,
            );
            layers::add_in_place(&mut x, &attn);

            let xn = layers::rms_norm(&x, &l.post_attention_norm, eps);
            let ffn = l.moe.forward(&xn, n_tok);
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
            self.full.shape.n_head_kv * self.full.shape.head_dim,
        )
    }

    fn layer_map(&self) -> String {
        self.layers
            .iter()
            .map(|l| if l.sliding { 'S' } else { 'A' })
            .collect()
    }

    fn experts(&self) -> Option<(usize, usize)> {
        Some((self.moe.n_expert, self.moe.n_used))
    }
}
