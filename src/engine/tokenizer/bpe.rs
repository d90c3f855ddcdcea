//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), merging like llama.cpp's BPE session.

use super::merge;
use super::pretok::{self, Rule};
use super::Vocab;
use std::cmp::Reverse;
use std::collections::HashMap;

pub(crate) struct Bpe {
    /// `"left right"` → rank (the merge line as stored; the first occurrence wins).
    ranks: HashMap<Box<str>, u32>,
    rules: Vec<Rule>,
    ignore_merges: bool,
}

impl Bpe {
    pub(crate) fn new(merges: &[&str], rules: Vec<Rule>, ignore_merges: bool) -> Bpe {
        let mut ranks = HashMap::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte; a line without one is
            // stored as ("", "") and can never match, so it is skipped here.
            if m.as_bytes().iter().skip(1).any(|&b| b == b' ') {
                ranks.entry(Box::from(*m)).or_insert(i as u32);
            }
        }
        Bpe {
            ranks,
            rules,
            ignore_merges,
        }
    }

    /// Appends the tokens of one raw-text fragment.
    pub(crate) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut key = String::new();
        for word in pretok::split(text, &self.rules) {
            if self.ignore_merges {
                if let Some(id) = vocab.lookup(&word) {
                    out.push(id);
                    continue;
                }
            }
            self.word(vocab, &word, &mut key, out);
        }
    }

    fn rank(&self, key: &mut String, left: &str, right: &str) -> Option<u32> {
        key.clear();
        key.push_str(left);
        key.push(' ');
        key.push_str(right);
        self.ranks.get(key.as_str()).copied()
    }

    fn word(&self, vocab: &Vocab, word: &str, key: &mut String, out: &mut Vec<u32>) {
        // Lowest merge rank first.
        let pieces = merge::merge_pieces(word, |l, r, _| self.rank(key, l, r).map(Reverse));
        for piece in pieces {
            match vocab.lookup(piece) {
                Some(id) => out.push(id),
                None => {
                    // llama.cpp looks each byte up as a one-byte token text.
                    for &b in piece.as_bytes() {
                        if let Some(id) =
                            std::str::from_utf8(&[b]).ok().and_then(|t| vocab.lookup(t))
                        {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}
