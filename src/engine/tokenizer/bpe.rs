//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`), merging like llama.cpp's BPE session.

use super::pretok::{self, Rule};
use super::Vocab;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

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
        // Symbols: byte ranges of the word, linked as a list.
        let mut syms: Vec<Sym> = Vec::new();
        for (start, ch) in word.char_indices() {
            let i = syms.len();
            syms.push(Sym {
                start,
                len: ch.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                syms[i - 1].next = Some(i);
            }
        }
        let text = |s: &Sym| &word[s.start..s.start + s.len];
        let mut queue = BinaryHeap::new();
        let push =
            |queue: &mut BinaryHeap<Bigram>, key: &mut String, syms: &[Sym], l: usize, r: usize| {
                if let Some(rank) = self.rank(key, text(&syms[l]), text(&syms[r])) {
                    queue.push(Bigram {
                        rank,
                        left: l,
                        right: r,
                        size: syms[l].len + syms[r].len,
                    });
                }
            };
        for i in 1..syms.len() {
            push(&mut queue, key, &syms, i - 1, i);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (b.left, b.right);
            // Stale if either side was merged away or changed since the bigram was queued.
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.size {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[r].len = 0;
            syms[l].next = syms[r].next;
            if let Some(n) = syms[r].next {
                syms[n].prev = Some(l);
            }
            if let Some(p) = syms[l].prev {
                push(&mut queue, key, &syms, p, l);
            }
            if let Some(n) = syms[l].next {
                push(&mut queue, key, &syms, l, n);
            }
        }
        let mut i = if syms.is_empty() { None } else { Some(0) };
        while let Some(k) = i {
            let s = &syms[k];
            let piece = text(s);
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
            i = s.next;
        }
    }
}

struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Lowest rank first; ties go to the leftmost pair.
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        o.rank.cmp(&self.rank).then(o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
