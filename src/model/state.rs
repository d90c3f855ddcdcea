//! Per-sequence state: what a sequence remembers between forward passes.

/// Keys and values of one attention layer for one sequence, f32, appended as tokens arrive.
/// Memory grows with the tokens actually seen instead of being reserved for the whole context.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    /// `[n_tokens, kv_dim]` row-major.
    pub k: Vec<f32>,
    /// `[n_tokens, kv_dim]` row-major.
    pub v: Vec<f32>,
    pub kv_dim: usize,
}

impl KvCache {
    pub fn new(kv_dim: usize) -> Self {
        KvCache {
            k: Vec::new(),
            v: Vec::new(),
            kv_dim,
        }
    }

    pub fn len(&self) -> usize {
        self.k.len().checked_div(self.kv_dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.k.is_empty()
    }

    pub fn truncate(&mut self, n_tokens: usize) {
        self.k.truncate(n_tokens * self.kv_dim);
        self.v.truncate(n_tokens * self.kv_dim);
    }

    pub fn bytes(&self) -> usize {
        (self.k.capacity() + self.v.capacity()) * std::mem::size_of::<f32>()
    }
}

/// The fixed-size memory of a recurrent layer (Gated DeltaNet, short conv, Mamba2) for one
/// sequence, f32, zero-initialised. Its size does not depend on the number of tokens seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecurrentState {
    /// The last `kernel - 1` conv inputs, `[kernel - 1, channels]` row-major (oldest first).
    pub conv: Vec<f32>,
    /// The recurrence state (GDN: `[n_v_heads, d_v, d_k]`; Mamba2: `[n_heads, head_dim, d_state]`;
    /// empty for a short conv).
    pub ssm: Vec<f32>,
}

impl RecurrentState {
    pub fn new(conv_len: usize, ssm_len: usize) -> Self {
        RecurrentState {
            conv: vec![0.0; conv_len],
            ssm: vec![0.0; ssm_len],
        }
    }

    pub fn bytes(&self) -> usize {
        (self.conv.capacity() + self.ssm.capacity()) * std::mem::size_of::<f32>()
    }
}

/// What one layer keeps for a sequence.
#[derive(Clone, Debug)]
pub enum LayerState {
    Attention(KvCache),
    Recurrent(RecurrentState),
}

/// A sequence's state at one position, cheap to take and to restore: the recurrent layers'
/// fixed-size states are copied, the KV caches only remember their length (restoring truncates
/// them, so the keys and values up to the snapshot must still be there).
#[derive(Clone, Debug)]
pub struct StateSnapshot {
    pub n_past: usize,
    /// One entry per layer: `Some` for recurrent layers, `None` for attention layers.
    recurrent: Vec<Option<RecurrentState>>,
}

impl StateSnapshot {
    pub fn bytes(&self) -> usize {
        self.recurrent
            .iter()
            .flatten()
            .map(RecurrentState::bytes)
            .sum()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error("the snapshot has {snapshot} layers, the state {state}, or their layer kinds differ")]
    LayoutMismatch { snapshot: usize, state: usize },
    #[error("layer {layer}'s KV cache holds {have} tokens, fewer than the snapshot's {need}")]
    KvTooShort {
        layer: usize,
        have: usize,
        need: usize,
    },
}

/// Everything a sequence carries between forward passes.
#[derive(Clone, Debug)]
pub struct SeqState {
    /// Number of tokens already processed (the position of the next token).
    pub n_past: usize,
    pub layers: Vec<LayerState>,
}

impl SeqState {
    /// The state of a model whose every layer is attention with `kv_dim`-wide keys and values.
    pub fn attention_only(n_layer: usize, kv_dim: usize) -> Self {
        SeqState {
            n_past: 0,
            layers: (0..n_layer)
                .map(|_| LayerState::Attention(KvCache::new(kv_dim)))
                .collect(),
        }
    }

    /// The KV cache of an attention layer. The architecture built the state, so asking a
    /// recurrent layer for one is a bug in the forward pass, not bad input.
    pub fn kv(&mut self, layer: usize) -> &mut KvCache {
        match &mut self.layers[layer] {
            LayerState::Attention(kv) => kv,
            LayerState::Recurrent(_) => panic!("layer {layer} is recurrent and has no KV cache"),
        }
    }

    /// The fixed-size state of a recurrent layer (see [`SeqState::kv`] on misuse).
    pub fn recurrent(&mut self, layer: usize) -> &mut RecurrentState {
        match &mut self.layers[layer] {
            LayerState::Recurrent(r) => r,
            LayerState::Attention(_) => {
                panic!("layer {layer} is attention and has no recurrent state")
            }
        }
    }

    /// Whether every layer can rewind to an earlier position with [`SeqState::truncate`].
    /// Recurrent layers cannot; use [`SeqState::snapshot`] / [`SeqState::restore`] instead.
    pub fn can_truncate(&self) -> bool {
        self.layers
            .iter()
            .all(|l| matches!(l, LayerState::Attention(_)))
    }

    /// Forgets every token from position `n_tokens` on (e.g. to reuse a shared prompt prefix).
    /// Recurrent layers cannot rewind: if the state has any and `n_tokens < n_past`, it is reset to
    /// position 0 instead, so a caller never continues from a state that mixes two histories.
    pub fn truncate(&mut self, n_tokens: usize) {
        let n_tokens = if n_tokens < self.n_past && !self.can_truncate() {
            0
        } else {
            n_tokens
        };
        self.n_past = self.n_past.min(n_tokens);
        for l in &mut self.layers {
            match l {
                LayerState::Attention(kv) => kv.truncate(n_tokens),
                LayerState::Recurrent(r) if n_tokens == 0 => {
                    r.conv.fill(0.0);
                    r.ssm.fill(0.0);
                }
                LayerState::Recurrent(_) => {}
            }
        }
    }

    /// The state at the current position (see [`StateSnapshot`]).
    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            n_past: self.n_past,
            recurrent: self
                .layers
                .iter()
                .map(|l| match l {
                    LayerState::Recurrent(r) => Some(r.clone()),
                    LayerState::Attention(_) => None,
                })
                .collect(),
        }
    }

    /// Returns to `snap`'s position. The state must have come from the same model and still hold
    /// the KV rows up to that position (it may have moved on since, or back to the snapshot).
    pub fn restore(&mut self, snap: &StateSnapshot) -> Result<(), RestoreError> {
        let mismatch = RestoreError::LayoutMismatch {
            snapshot: snap.recurrent.len(),
            state: self.layers.len(),
        };
        if snap.recurrent.len() != self.layers.len() {
            return Err(mismatch);
        }
        for (layer, (l, s)) in self.layers.iter().zip(&snap.recurrent).enumerate() {
            match (l, s) {
                (LayerState::Attention(kv), None) if kv.len() < snap.n_past => {
                    return Err(RestoreError::KvTooShort {
                        layer,
                        have: kv.len(),
                        need: snap.n_past,
                    })
                }
                (LayerState::Attention(_), None) => {}
                (LayerState::Recurrent(r), Some(s))
                    if r.conv.len() == s.conv.len() && r.ssm.len() == s.ssm.len() => {}
                _ => return Err(mismatch),
            }
        }
        self.n_past = snap.n_past;
        for (l, s) in self.layers.iter_mut().zip(&snap.recurrent) {
            match (l, s) {
                (LayerState::Attention(kv), _) => kv.truncate(snap.n_past),
                (LayerState::Recurrent(r), Some(s)) => {
                    r.conv.copy_from_slice(&s.conv);
                    r.ssm.copy_from_slice(&s.ssm);
                }
                (LayerState::Recurrent(_), None) => unreachable!("checked above"),
            }
        }
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                LayerState::Attention(kv) => kv.bytes(),
                LayerState::Recurrent(r) => r.bytes(),
            })
            .sum()
    }
}
