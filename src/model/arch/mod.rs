//! The architectures, one file each.

mod gemma3;
mod gpt_oss;
mod granite_hybrid;
mod lfm2;
mod llama;
mod qwen2;
mod qwen3;
mod qwen35;
mod qwen35moe;
mod qwen3moe;
mod qwen3next;

use super::hparams::Hparams;
use super::weights::{Matrix, WeightLoader};
use super::{Architecture, ModelError, Result};
use crate::gguf::GgufFile;

/// `general.architecture` values we can run.
pub const SUPPORTED: &[&str] = &[
    "llama",
    "qwen2",
    "qwen3",
    "gemma3",
    "qwen3moe",
    "gpt-oss",
    "qwen35",
    "qwen35moe",
    "qwen3next",
    "lfm2",
    "granitehybrid",
];

/// Architectures whose forward pass applies YaRN RoPE scaling (the llama block and gpt-oss).
const YARN_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "qwen3moe", "gpt-oss"];

pub fn load_architecture(name: &str, file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    let (hp, arch) = load_by_name(name, file)?;
    // Every family reads `rope.scaling.*`; one that ignored YaRN would silently compute wrong
    // positions, so refuse the file instead.
    if hp.rope_yarn.is_some() && !YARN_ARCHITECTURES.contains(&name) {
        return Err(ModelError::BadHparam {
            key: format!("{name}.rope.scaling.type"),
            reason: format!("YaRN scaling is not supported for {name}"),
        });
    }
    Ok((hp, arch))
}

fn load_by_name(name: &str, file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    match name {
        "llama" => llama::load(file, &llama::VARIANT),
        "qwen2" => llama::load(file, &qwen2::VARIANT),
        "qwen3" => llama::load(file, &qwen3::VARIANT),
        "gemma3" => gemma3::load(file),
        "qwen3moe" => llama::load(file, &qwen3moe::VARIANT),
        "gpt-oss" => gpt_oss::load(file),
        "qwen35" => qwen35::load(file, &qwen35::VARIANT),
        "qwen35moe" => qwen35::load(file, &qwen35moe::VARIANT),
        "qwen3next" => qwen35::load(file, &qwen3next::VARIANT),
        "lfm2" => lfm2::load(file),
        "granitehybrid" => granite_hybrid::load(file),
        other => Err(ModelError::UnsupportedArchitecture(other.to_string())),
    }
}

/// Reads the generic hyper-parameters and `token_embd.weight` (`{n_embd, n_vocab}`), which gives
/// the vocabulary size.
fn load_embeddings(file: &GgufFile, arch: &str) -> Result<(Hparams, Matrix)> {
    let md = &file.metadata;
    let n_embd = md.u32(&format!("{arch}.embedding_length"))? as usize;
    let t = file.tensor("token_embd.weight")?;
    let n_vocab = t.shape.get(1).copied().unwrap_or(1);
    let hp = Hparams::read(md, arch, n_vocab)?;
    if let Some(v) = md.opt_u32(&format!("{arch}.vocab_size"))? {
        if v as usize != n_vocab {
            return Err(ModelError::BadHparam {
                key: format!("{arch}.vocab_size"),
                reason: format!("{v} differs from token_embd.weight's {n_vocab} rows"),
            });
        }
    }
    let tok_embd = WeightLoader::new(file).matrix("token_embd.weight", n_embd, n_vocab)?;
    Ok((hp, tok_embd))
}

/// The shape of one attention layer of a hybrid model whose layers have their own KV head count
/// (`n_head_kv`, from a per-layer `attention.head_count_kv`); `scale` defaults to 1/sqrt(head_dim).
fn attention_shape(
    k: &super::hparams::Keys,
    hp: &Hparams,
    n_head_kv: usize,
    scale: Option<f32>,
) -> Result<super::layers::AttnShape> {
    if !hp.n_head.is_multiple_of(n_head_kv) {
        return Err(ModelError::BadHparam {
            key: k.key("attention.head_count_kv"),
            reason: format!("{n_head_kv} does not divide head_count {}", hp.n_head),
        });
    }
    Ok(super::layers::AttnShape {
        n_head: hp.n_head,
        n_head_kv,
        head_dim: hp.head_dim,
        scale: scale.unwrap_or(1.0 / (hp.head_dim as f32).sqrt()),
        window: None,
    })
}
