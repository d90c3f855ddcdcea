//! Model layer: architectures built from shared layer functions, loaded from a mapped GGUF file.
//!
//! Each architecture lives in `arch/<name>.rs` and reads top to bottom like its forward pass.
//! Adding one means a new file there and a line in [`load_architecture`].

mod arch;
pub mod batch;
pub mod blocks;
pub mod card;
pub mod delta_net;
pub mod gated_attention;
pub mod hparams;
pub mod layers;
pub mod moe;
pub mod ssm;
pub mod state;
pub mod weights;

pub use batch::{Batch, Logits, SeqInput};
pub use card::ModelCard;
pub use hparams::Hparams;
pub use state::SeqState;

use crate::gguf::{GgmlType, GgufError, GgufFile};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture `{0}` is not supported (supported: {list})", list = arch::SUPPORTED.join(", "))]
    UnsupportedArchitecture(String),
    #[error("tensor `{tensor}` has type {ty}, which cannot be used as a weight")]
    UnsupportedWeightType { tensor: String, ty: GgmlType },
    #[error("hyper-parameter `{key}` is invalid: {reason}")]
    BadHparam { key: String, reason: String },
    #[error("token id {id} is out of range (vocabulary has {n_vocab} tokens)")]
    BadToken { id: u32, n_vocab: usize },
    #[error("{needed} tokens do not fit in the context of {n_ctx} tokens")]
    ContextOverflow { needed: usize, n_ctx: usize },
    #[error("empty input: at least one token is needed")]
    EmptyInput,
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// The forward pass of one architecture.
pub trait Architecture: Send + Sync {
    /// Processes every sequence's new tokens, updates their states, and returns the logits rows
    /// of [`Batch::output_rows`] (`n_vocab` values each) concatenated.
    fn forward(&self, batch: &mut Batch) -> Vec<f32>;

    /// A fresh state for a new sequence.
    fn new_state(&self) -> SeqState;

    /// One character per layer for the architecture card (`A` full attention, `S` sliding-window
    /// attention, ...).
    fn layer_map(&self) -> String;

    /// `(experts, experts used per token)` when the FFNs are mixtures of experts.
    fn experts(&self) -> Option<(usize, usize)> {
        None
    }
}

/// A loaded model: the mapped file, its hyper-parameters and its forward pass.
pub struct Model {
    pub file: GgufFile,
    pub hparams: Hparams,
    pub arch: Box<dyn Architecture>,
    /// Context length used for bounds checks (defaults to the training context).
    pub n_ctx: usize,
}

impl Model {
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let file = GgufFile::open(path)?;
        let name = file.metadata.str("general.architecture")?.to_string();
        let (hparams, arch) = arch::load_architecture(&name, &file)?;
        let n_ctx = hparams.n_ctx_train;
        Ok(Model {
            file,
            hparams,
            arch,
            n_ctx,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.hparams.n_vocab
    }

    pub fn new_state(&self) -> SeqState {
        self.arch.new_state()
    }

    /// Checks token ids and context room, then runs the forward pass.
    pub fn forward(&self, batch: &mut Batch) -> Result<Vec<f32>> {
        for seq in &batch.seqs {
            if seq.tokens.is_empty() {
                return Err(ModelError::EmptyInput);
            }
            if let Some(&id) = seq.tokens.iter().find(|&&t| t as usize >= self.n_vocab()) {
                return Err(ModelError::BadToken {
                    id,
                    n_vocab: self.n_vocab(),
                });
            }
            let needed = seq.state.n_past + seq.tokens.len();
            if needed > self.n_ctx {
                return Err(ModelError::ContextOverflow {
                    needed,
                    n_ctx: self.n_ctx,
                });
            }
        }
        Ok(crate::kernels::threads::on_compute_pool(|| {
            self.arch.forward(batch)
        }))
    }

    /// Drops the metadata's copy of the vocabulary once a tokenizer holds it (see
    /// `Metadata::release_vocabulary`) and returns that memory to the OS.
    pub fn release_vocabulary(&mut self) {
        self.file.metadata.release_vocabulary();
        crate::alloc::release_freed_memory();
    }

    pub fn card(&self) -> ModelCard {
        ModelCard::describe(self)
    }
}
