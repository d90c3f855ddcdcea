//! Warm sequence states kept between requests: a conversation's state under its session id, and
//! recent anonymous states whose prompt prefix a later request can share. Bounded by a byte
//! budget with least-recently-used eviction.

use crate::model::state::{SeqState, StateSnapshot};
use std::collections::HashMap;

/// A state and the tokens it has consumed (`tokens.len() == state.n_past`).
pub struct CachedState {
    pub state: SeqState,
    pub tokens: Vec<u32>,
    /// Taken where the prompt ended: a recurrent state cannot rewind, so a follow-up whose text
    /// diverges inside the previous answer restarts from here instead of from scratch.
    pub prompt_end: Option<StateSnapshot>,
}

impl CachedState {
    pub fn bytes(&self) -> usize {
        self.state.bytes()
            + self.tokens.capacity() * std::mem::size_of::<u32>()
            + self.prompt_end.as_ref().map_or(0, StateSnapshot::bytes)
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Session(String),
    Anonymous(u64),
}

struct Entry {
    cached: CachedState,
    bytes: usize,
    last_used: u64,
}

/// Anonymous prefixes shorter than this are not worth a lookup.
const MIN_SHARED_PREFIX: usize = 16;

pub struct SessionCache {
    entries: HashMap<Key, Entry>,
    budget_bytes: usize,
    used_bytes: usize,
    clock: u64,
    next_anonymous: u64,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl SessionCache {
    pub fn new(budget_bytes: usize) -> Self {
        SessionCache {
            entries: HashMap::new(),
            budget_bytes,
            used_bytes: 0,
            clock: 0,
            next_anonymous: 0,
        }
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns the state to continue from: the session's own, or else (a request
    /// without a session, or a session's first turn) the anonymous state sharing the longest
    /// prompt prefix.
    pub fn take(&mut self, session_id: Option<&str>, prompt: &[u32]) -> Option<CachedState> {
        let own = session_id
            .map(|id| Key::Session(id.to_string()))
            .filter(|k| self.entries.contains_key(k));
        let key = match own {
            Some(k) => k,
            None => self
                .entries
                .iter()
                .filter(|(k, _)| matches!(k, Key::Anonymous(_)))
                .map(|(k, e)| (k, common_prefix(&e.cached.tokens, prompt)))
                .filter(|&(_, n)| n >= MIN_SHARED_PREFIX)
                .max_by_key(|&(_, n)| n)
                .map(|(k, _)| k.clone())?,
        };
        let e = self.entries.remove(&key)?;
        self.used_bytes -= e.bytes;
        Some(e.cached)
    }

    /// Keeps a finished sequence's state, evicting the least recently used entries while the
    /// cache is over budget. A state larger than the whole budget is dropped.
    pub fn put(&mut self, session_id: Option<String>, cached: CachedState) {
        let bytes = cached.bytes();
        if bytes > self.budget_bytes {
            return;
        }
        let key = match session_id {
            Some(id) => Key::Session(id),
            None => {
                self.next_anonymous += 1;
                Key::Anonymous(self.next_anonymous)
            }
        };
        self.clock += 1;
        if let Some(old) = self.entries.insert(
            key,
            Entry {
                cached,
                bytes,
                last_used: self.clock,
            },
        ) {
            self.used_bytes -= old.bytes;
        }
        self.used_bytes += bytes;
        while self.used_bytes > self.budget_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used_bytes -= e.bytes;
            }
        }
    }
}

/// Prepares `cached` (if any) for `prompt`: rewinds it to the longest usable shared prefix and
/// returns the state with the number of prompt tokens it already holds. At least one prompt token
/// is always left to process, since its logits start generation.
pub fn resume(
    cached: Option<CachedState>,
    prompt: &[u32],
    fresh: impl FnOnce() -> SeqState,
) -> (SeqState, usize) {
    let Some(mut c) = cached else {
        return (fresh(), 0);
    };
    let shared = common_prefix(&c.tokens, prompt).min(prompt.len().saturating_sub(1));
    if shared == c.state.n_past {
        return (c.state, shared);
    }
    if c.state.can_truncate() {
        c.state.truncate(shared);
        return (c.state, shared);
    }
    if let Some(snap) = &c.prompt_end {
        if snap.n_past <= shared && c.state.restore(snap).is_ok() {
            let n = snap.n_past;
            return (c.state, n);
        }
    }
    (fresh(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attention-only state that has consumed `tokens` (one f32 per token and layer).
    fn cached(tokens: &[u32]) -> CachedState {
        let mut state = SeqState::attention_only(2, 1);
        for l in 0..2 {
            let kv = state.kv(l);
            kv.k = vec![0.0; tokens.len()];
            kv.v = vec![0.0; tokens.len()];
        }
        state.n_past = tokens.len();
        CachedState {
            state,
            tokens: tokens.to_vec(),
            prompt_end: None,
        }
    }

    #[test]
    fn sessions_and_shared_prefixes_are_found() {
        let mut cache = SessionCache::new(1 << 20);
        let a: Vec<u32> = (0..40).collect();
        cache.put(Some("s".into()), cached(&a[..30]));
        cache.put(None, cached(&a[..20]));
        assert_eq!(cache.len(), 2);
        let own = cache.take(Some("s"), &a).unwrap();
        assert_eq!(own.tokens.len(), 30);
        // Without a session: the anonymous state sharing at least MIN_SHARED_PREFIX tokens.
        assert!(cache.take(None, &[7; 40]).is_none());
        let shared = cache.take(None, &a).unwrap();
        assert_eq!(shared.tokens.len(), 20);
        assert!(cache.is_empty() && cache.used_bytes() == 0);
    }

    #[test]
    fn least_recently_used_entries_leave_first() {
        let one = cached(&[1; 100]).bytes();
        let mut cache = SessionCache::new(one * 2);
        cache.put(Some("a".into()), cached(&[1; 100]));
        cache.put(Some("b".into()), cached(&[2; 100]));
        cache.put(Some("c".into()), cached(&[3; 100]));
        assert_eq!(cache.len(), 2);
        assert!(cache.take(Some("a"), &[1; 100]).is_none());
        assert!(cache.take(Some("c"), &[3; 100]).is_some());
        cache.put(Some("huge".into()), cached(&[4; 1000]));
        assert!(
            cache.take(Some("huge"), &[4; 1000]).is_none(),
            "larger than the budget"
        );
    }

    #[test]
    fn resume_rewinds_to_the_shared_prefix_and_leaves_a_token() {
        let fresh = || SeqState::attention_only(2, 1);
        let (state, n) = resume(Some(cached(&[1, 2, 3, 4])), &[1, 2, 9], fresh);
        assert_eq!((state.n_past, n), (2, 2));
        // The whole prompt is cached: one token is still fed to get its logits.
        let (state, n) = resume(Some(cached(&[1, 2, 3])), &[1, 2, 3], fresh);
        assert_eq!((state.n_past, n), (2, 2));
        let (state, n) = resume(None, &[1], fresh);
        assert_eq!((state.n_past, n), (0, 0));
    }
}
