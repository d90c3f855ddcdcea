//! Hyper-parameters every decoder reads from `<arch>.*` metadata, validated once.

use super::{ModelError, Result};
use crate::gguf::Metadata;

#[derive(Clone, Debug)]
pub struct Hparams {
    pub arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub n_rot: usize,
    pub rope_base: f32,
    pub rope_freq_scale: f32,
    /// `rope.scaling.type = yarn`: the context-extension parameters (freq_scale holds 1/factor).
    pub rope_yarn: Option<YarnScaling>,
}

/// YaRN metadata as llama.cpp resolves it for a fresh context (`llama_context` constructor).
#[derive(Clone, Debug, PartialEq)]
pub struct YarnScaling {
    /// `rope.scaling.original_context_length` (default: context_length).
    pub n_ctx_orig: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    pub ext_factor: f32,
    /// The cos/sin magnitude before ggml's own `1 + 0.1 ln(factor)`: llama.cpp pre-divides by
    /// that term, so the net magnitude is `get_mscale(factor) · rope.scaling.attn_factor`.
    pub attn_factor: f32,
}

/// Upper bounds that keep a hostile header from asking for absurd buffers. Far above any real model.
const MAX_LAYERS: usize = 4096;
const MAX_HEADS: usize = 4096;
const MAX_WIDTH: usize = 1 << 20;

pub struct Keys<'a> {
    pub md: &'a Metadata,
    pub arch: &'a str,
}

impl Keys<'_> {
    pub fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    pub fn usize(&self, suffix: &str) -> Result<usize> {
        Ok(self.md.u32(&self.key(suffix))? as usize)
    }

    pub fn opt_usize(&self, suffix: &str) -> Result<Option<usize>> {
        Ok(self.md.opt_u32(&self.key(suffix))?.map(|v| v as usize))
    }

    pub fn opt_f32(&self, suffix: &str) -> Result<Option<f32>> {
        Ok(self.md.opt_f32(&self.key(suffix))?)
    }

    /// Fails with a message naming the key unless `lo <= v <= hi`.
    pub fn check_range(&self, suffix: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
        if v < lo || v > hi {
            return Err(ModelError::BadHparam {
                key: self.key(suffix),
                reason: format!("{v} is outside [{lo}, {hi}]"),
            });
        }
        Ok(v)
    }
}

impl Hparams {
    /// Reads the generic decoder keys. `n_vocab` comes from the embedding tensor.
    pub fn read(md: &Metadata, arch: &str, n_vocab: usize) -> Result<Hparams> {
        let k = Keys { md, arch };
        let n_embd = k.check_range(
            "embedding_length",
            k.usize("embedding_length")?,
            1,
            MAX_WIDTH,
        )?;
        let n_layer = k.check_range("block_count", k.usize("block_count")?, 1, MAX_LAYERS)?;
        let n_head = k.check_range(
            "attention.head_count",
            k.usize("attention.head_count")?,
            1,
            MAX_HEADS,
        )?;
        // Hybrid models (lfm2, granitehybrid) give one value per layer, 0 for recurrent layers;
        // the attention layers' value is the one that shapes attention.
        let n_head_kv = match md.u32_per_layer(&k.key("attention.head_count_kv"), n_layer)? {
            Some(v) => {
                let max = v.iter().copied().max().unwrap_or(0) as usize;
                k.check_range("attention.head_count_kv", max, 1, n_head)?
            }
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(ModelError::BadHparam {
                key: k.key("attention.head_count_kv"),
                reason: format!("{n_head_kv} does not divide head_count {n_head}"),
            });
        }
        let head_dim = match k.opt_usize("attention.key_length")? {
            Some(v) => v,
            None => {
                if n_embd % n_head != 0 {
                    return Err(ModelError::BadHparam {
                        key: k.key("attention.head_count"),
                        reason: format!("{n_head} does not divide embedding_length {n_embd}"),
                    });
                }
                n_embd / n_head
            }
        };
        k.check_range("attention.key_length", head_dim, 2, MAX_WIDTH)?;
        if let Some(vl) = k.opt_usize("attention.value_length")? {
            if vl != head_dim {
                return Err(ModelError::BadHparam {
                    key: k.key("attention.value_length"),
                    reason: format!(
                        "{vl} differs from key_length {head_dim}, which is not supported"
                    ),
                });
            }
        }
        let n_rot = k.opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadHparam {
                key: k.key("rope.dimension_count"),
                reason: format!("{n_rot} must be even and at most the head size {head_dim}"),
            });
        }
        let n_ff = k.check_range(
            "feed_forward_length",
            k.usize("feed_forward_length")?,
            1,
            MAX_WIDTH * 16,
        )?;
        let n_ctx_train =
            k.check_range("context_length", k.usize("context_length")?, 1, usize::MAX)?;
        let rms_eps = k
            .opt_f32("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(ModelError::BadHparam {
                key: k.key("attention.layer_norm_rms_epsilon"),
                reason: format!("{rms_eps} is not a non-negative number"),
            });
        }
        let rope_base = k.opt_f32("rope.freq_base")?.unwrap_or(10000.0);
        if !(rope_base.is_finite() && rope_base > 1.0) {
            return Err(ModelError::BadHparam {
                key: k.key("rope.freq_base"),
                reason: format!("{rope_base} must be a finite number above 1"),
            });
        }
        let rope_freq_scale = rope_freq_scale(&k)?;
        let rope_yarn = yarn_scaling(&k, rope_freq_scale, n_ctx_train)?;
        Ok(Hparams {
            arch: arch.to_string(),
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx_train,
            rms_eps,
            n_rot,
            rope_base,
            rope_freq_scale,
            rope_yarn,
        })
    }
}

/// YaRN's extra parameters when `rope.scaling.type = yarn` (llama.cpp: ext_factor 1, beta_fast 32,
/// beta_slow 1 unless the file says otherwise).
fn yarn_scaling(k: &Keys, freq_scale: f32, n_ctx_train: usize) -> Result<Option<YarnScaling>> {
    if k.md.opt_str(&k.key("rope.scaling.type"))? != Some("yarn") {
        return Ok(None);
    }
    let finite = |suffix: &str, default: f32| -> Result<f32> {
        match k.opt_f32(suffix)? {
            Some(v) if !v.is_finite() => Err(ModelError::BadHparam {
                key: k.key(suffix),
                reason: format!("{v} is not a finite number"),
            }),
            v => Ok(v.unwrap_or(default)),
        }
    };
    let n_ctx_orig = match k.opt_usize("rope.scaling.original_context_length")? {
        Some(0) | None => n_ctx_train,
        Some(v) => v,
    };
    let ext_factor = finite("rope.scaling.yarn_ext_factor", 1.0)?;
    let factor = 1.0 / freq_scale;
    let mscale = if factor <= 1.0 {
        1.0
    } else {
        0.1 * factor.ln() + 1.0
    };
    let attn_factor = if ext_factor != 0.0 {
        mscale * (1.0 / (1.0 + 0.1 * factor.ln()))
    } else {
        1.0
    } * finite("rope.scaling.attn_factor", 1.0)?;
    Ok(Some(YarnScaling {
        n_ctx_orig,
        beta_fast: finite("rope.scaling.yarn_beta_fast", 32.0)?,
        beta_slow: finite("rope.scaling.yarn_beta_slow", 1.0)?,
        ext_factor,
        attn_factor,
    }))
}

/// Linear RoPE scaling (`rope.scaling.type = linear`, or a bare `rope.scaling.factor`), and the
/// position scale of YaRN.
fn rope_freq_scale(k: &Keys) -> Result<f32> {
    let ty = k.md.opt_str(&k.key("rope.scaling.type"))?;
    let factor = k.opt_f32("rope.scaling.factor")?;
    match (ty, factor) {
        (None | Some("none"), None) | (Some("none"), _) => Ok(1.0),
        (None | Some("linear" | "yarn"), Some(f)) if f.is_finite() && f > 0.0 => Ok(1.0 / f),
        (Some("linear" | "yarn"), None) => Ok(1.0),
        (None | Some("linear" | "yarn"), Some(f)) => Err(ModelError::BadHparam {
            key: k.key("rope.scaling.factor"),
            reason: format!("{f} must be a positive number"),
        }),
        (Some(other), _) => Err(ModelError::BadHparam {
            key: k.key("rope.scaling.type"),
            reason: format!("`{other}` RoPE scaling is not supported for this architecture"),
        }),
    }
}
