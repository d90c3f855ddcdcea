//! A forward pass's input: one or more sequences, each with new tokens and its own state.

use super::state::SeqState;

/// Which logits a sequence wants back from a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the row of the last token (generation).
    Last,
    /// One row per token (`ggufd logits`, scoring).
    All,
}

pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub state: &'a mut SeqState,
    pub logits: Logits,
}

/// The sequences of one forward pass. Their tokens are processed together (one matmul per weight
/// for all of them); attention keeps each sequence to its own cache.
pub struct Batch<'a> {
    pub seqs: Vec<SeqInput<'a>>,
}

impl<'a> Batch<'a> {
    pub fn single(tokens: &'a [u32], state: &'a mut SeqState, logits: Logits) -> Self {
        Batch {
            seqs: vec![SeqInput {
                tokens,
                state,
                logits,
            }],
        }
    }

    pub fn n_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.tokens.len()).sum()
    }

    /// Every token id of the batch, sequence after sequence.
    pub fn tokens(&self) -> Vec<u32> {
        self.seqs
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect()
    }

    /// The position of every token of the batch.
    pub fn positions(&self) -> Vec<usize> {
        self.seqs
            .iter()
            .flat_map(|s| s.state.n_past..s.state.n_past + s.tokens.len())
            .collect()
    }

    /// Batch rows whose logits are wanted, in output order.
    pub fn output_rows(&self) -> Vec<usize> {
        let mut rows = Vec::new();
        let mut row0 = 0;
        for s in &self.seqs {
            let n = s.tokens.len();
            match s.logits {
                Logits::All => rows.extend(row0..row0 + n),
                Logits::Last if n > 0 => rows.push(row0 + n - 1),
                Logits::Last => {}
            }
            row0 += n;
        }
        rows
    }

    /// Marks the batch's tokens as processed; called once at the end of a forward pass.
    pub fn advance(&mut self) {
        for s in &mut self.seqs {
            s.state.n_past += s.tokens.len();
        }
    }
}
