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

/// What one layer keeps for a sequence.
#[derive(Clone, Debug)]
pub enum LayerState {
    Attention(KvCache),
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

    pub fn kv(&mut self, layer: usize) -> &mut KvCache {
        match &mut self.layers[layer] {
            LayerState::Attention(kv) => kv,
        }
    }

    /// Forgets every token from position `n_tokens` on (e.g. to reuse a shared prompt prefix).
    pub fn truncate(&mut self, n_tokens: usize) {
        self.n_past = self.n_past.min(n_tokens);
        for l in &mut self.layers {
            match l {
                LayerState::Attention(kv) => kv.truncate(n_tokens),
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                LayerState::Attention(kv) => kv.bytes(),
            })
            .sum()
    }
}
