//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), as llama.cpp's SPM session does it:
//! start from UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is the
//! highest-scoring vocabulary token (ties: leftmost), and spell pieces that are not tokens as
//! `<0xNN>` byte tokens.

use super::{merge, Vocab};
use std::cmp::Ordering;

/// Appends the tokens of `text` (spaces already escaped as `▁`).
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    // Highest token score first.
    let pieces = merge::merge_pieces(text, |_, _, joined| {
        vocab.lookup(joined).map(|id| Score(vocab.score(id)))
    });
    for piece in pieces {
        match vocab.lookup(piece) {
            Some(id) => out.push(id),
            // Only single characters can be missing (every merge forms a token): byte fallback.
            None => out.extend(piece.bytes().filter_map(|b| vocab.byte_token(b))),
        }
    }
}

/// A token score ordered by `total_cmp`, with -0.0 equal to 0.0 as in llama.cpp.
struct Score(f32);

impl Ord for Score {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.0 + 0.0).total_cmp(&(o.0 + 0.0))
    }
}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Score {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Score {}
