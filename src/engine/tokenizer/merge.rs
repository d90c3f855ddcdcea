//! Greedy pair merging over a word's characters, the core of both llama.cpp tokenizers: BPE ranks
//! pairs by merge rank, SentencePiece by token score. The best pair merges first (ties: the
//! leftmost), then its neighbours are re-queued, until no pair forms a token.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A piece of the word: byte range, linked to its neighbours.
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram<K> {
    priority: K,
    left: usize,
    right: usize,
    /// Combined length when queued: a later merge of either side makes the entry stale.
    size: usize,
}

impl<K: Ord> Ord for Bigram<K> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority.cmp(&o.priority).then(o.left.cmp(&self.left))
    }
}
impl<K: Ord> PartialOrd for Bigram<K> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<K: Ord> PartialEq for Bigram<K> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<K: Ord> Eq for Bigram<K> {}

/// Merges the characters of `text` and returns the final pieces in order. `priority(left, right,
/// joined)` rates a candidate pair (higher merges first) or returns `None` if it forms no token.
pub(super) fn merge_pieces<K: Ord>(
    text: &str,
    mut priority: impl FnMut(&str, &str, &str) -> Option<K>,
) -> Vec<&str> {
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
    let piece = |s: &Sym| &text[s.start..s.start + s.len];
    let mut queue = BinaryHeap::new();
    let mut push = |queue: &mut BinaryHeap<Bigram<K>>, syms: &[Sym], l: usize, r: usize| {
        let size = syms[l].len + syms[r].len;
        let joined = &text[syms[l].start..syms[l].start + size];
        if let Some(p) = priority(piece(&syms[l]), piece(&syms[r]), joined) {
            queue.push(Bigram {
                priority: p,
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
    let mut pieces = Vec::new();
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        pieces.push(piece(&syms[k]));
        i = syms[k].next;
    }
    pieces
}
