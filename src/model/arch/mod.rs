//! The architectures, one file each.

mod gemma3;
mod llama;
mod qwen2;
mod qwen3;

use super::hparams::Hparams;
use super::weights::{Matrix, WeightLoader};
use super::{Architecture, ModelError, Result};
use crate::gguf::GgufFile;

/// `general.architecture` values we can run.
pub const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

pub fn load_architecture(name: &str, file: &GgufFile) -> Result<(Hparams, Box<dyn Architecture>)> {
    match name {
        "llama" => llama::load(file, &llama::VARIANT),
        "qwen2" => llama::load(file, &qwen2::VARIANT),
        "qwen3" => llama::load(file, &qwen3::VARIANT),
        "gemma3" => gemma3::load(file),
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
