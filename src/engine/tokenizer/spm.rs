//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), as llama.cpp's SPM session does it:
//! start from UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is the
//! highest-scoring vocabulary token (ties: leftmost), and spell pieces that are not tokens as
//! `<0xNN>` byte tokens.

use super::Vocab;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Appends the tokens of `text` (spaces already escaped as `▁`).
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut syms: Vec<Sym> = Vec::new();
    for (start, ch) in text.char_indices() {
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
    let mut queue = BinaryHeap::new();
    let push = |queue: &mut BinaryHeap<Bigram>, syms: &[Sym], l: usize, r: usize| {
        let size = syms[l].len + syms[r].len;
        let start = syms[l].start;
        if let Some(id) = vocab.lookup(&text[start..start + size]) {
            let mut score = vocab.score(id);
            if score == 0.0 {
                score = 0.0; // -0.0 and 0.0 compare equal in llama.cpp
            }
            queue.push(Bigram {
                score,
                left: l,
                right: r,
                size,
            });
        }
    };
    for i in 1..syms.len() {
        push(&mut queue, &syms, i - 1, i);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (b.left, b.right);
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
            push(&mut queue, &syms, p, l);
        }
        if let Some(n) = syms[l].next {
            push(&mut queue, &syms, l, n);
        }
    }
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        let s = &syms[k];
        let piece = &text[s.start..s.start + s.len];
        match vocab.lookup(piece) {
            Some(id) => out.push(id),
            // Only single characters can be missing (every merge forms a token): byte fallback.
            None => out.extend(piece.bytes().filter_map(|b| vocab.byte_token(b))),
        }
        i = s.next;
    }
}

struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Highest score first; ties go to the leftmost pair.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
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
