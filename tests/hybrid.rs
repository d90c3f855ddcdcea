//! Hybrid (recurrent + attention) models: the recurrent state carried between forward passes.
//!
//! - prefill token by token, in 64-token chunks and as one batch give the same logits;
//! - a state snapshot restored later continues exactly as the original did;
//! - several sequences in one batch each keep to their own state.
//!
//! Runs on the F32 masters of the conformance corpus (qwen35, qwen3next, lfm2, granitehybrid).

mod common;

use ggufd::model::state::RestoreError;
use ggufd::model::{Batch, Logits, Model, SeqInput, SeqState};

const MODELS: &[&str] = &["qwen35", "qwen3next", "qwen35moe", "lfm2", "granitehybrid"];

fn load(model_case: &str) -> Option<Model> {
    let p = common::f32_masters_dir().join(format!("{model_case}-F32/model.gguf"));
    if !common::require(&p, "F32 master") {
        return None;
    }
    Some(Model::load(&p).expect("F32 master loads"))
}

/// Deterministic pseudo-random token ids.
fn tokens(n: usize, n_vocab: usize, seed: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104729 + 13) % n_vocab) as u32)
        .collect()
}

/// Logits of every token, feeding `toks` to `state` in pieces of `chunk` tokens.
fn logits_in_chunks(model: &Model, state: &mut SeqState, toks: &[u32], chunk: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for piece in toks.chunks(chunk) {
        let mut b = Batch::single(piece, state, Logits::All);
        out.extend(model.forward(&mut b).expect("forward"));
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn prefill_token_by_token_chunked_and_whole_agree() {
    for &name in MODELS {
        let Some(model) = load(name) else { return };
        let toks = tokens(150, model.n_vocab(), 1);
        let whole = logits_in_chunks(&model, &mut model.new_state(), &toks, toks.len());
        let chunked = logits_in_chunks(&model, &mut model.new_state(), &toks, 64);
        let stepped = logits_in_chunks(&model, &mut model.new_state(), &toks, 1);
        assert!(
            whole.iter().all(|v| v.is_finite()),
            "{name}: non-finite logits"
        );
        let (dc, ds) = (
            max_abs_diff(&whole, &chunked),
            max_abs_diff(&whole, &stepped),
        );
        assert!(dc < 1e-4, "{name}: chunked vs whole differ by {dc}");
        assert!(ds < 1e-4, "{name}: token-by-token vs whole differ by {ds}");
    }
}

/// Greedy decode of `n` tokens from `state`, starting with `first`; returns every step's logits.
fn decode(model: &Model, state: &mut SeqState, first: u32, n: usize) -> (Vec<u32>, Vec<f32>) {
    let (mut ids, mut all) = (vec![first], Vec::new());
    for _ in 0..n {
        let last = [*ids.last().unwrap()];
        let mut b = Batch::single(&last, state, Logits::Last);
        let row = model.forward(&mut b).expect("decode step");
        ids.push(argmax(&row));
        all.extend(row);
    }
    (ids, all)
}

#[test]
fn snapshot_restore_continues_identically() {
    for &name in MODELS {
        let Some(model) = load(name) else { return };
        let prompt = tokens(24, model.n_vocab(), 2);
        let mut state = model.new_state();
        let row = logits_in_chunks(&model, &mut state, &prompt, prompt.len());
        let first = argmax(&row[row.len() - model.n_vocab()..]);
        // Generate a few tokens, snapshot at position p, then continue.
        let (head, _) = decode(&model, &mut state, first, 5);
        let p = state.n_past;
        let snap = state.snapshot();
        let (ids_a, logits_a) = decode(&model, &mut state, *head.last().unwrap(), 12);
        assert_eq!(state.n_past, p + 12);
        // Back to p: the same continuation, bit for bit.
        state.restore(&snap).expect("restore");
        assert_eq!(state.n_past, p);
        let (ids_b, logits_b) = decode(&model, &mut state, *head.last().unwrap(), 12);
        assert_eq!(ids_a, ids_b, "{name}: continuation after restore differs");
        assert_eq!(logits_a, logits_b, "{name}: logits after restore differ");
        // A fresh state fed the same history agrees too (the snapshot holds everything).
        let mut fresh = model.new_state();
        let history: Vec<u32> = prompt
            .iter()
            .copied()
            .chain(head[..5].iter().copied())
            .collect();
        logits_in_chunks(&model, &mut fresh, &history, 64);
        let (ids_c, logits_c) = decode(&model, &mut fresh, *head.last().unwrap(), 12);
        assert_eq!(ids_a, ids_c, "{name}: replayed history differs");
        assert!(
            max_abs_diff(&logits_a, &logits_c) < 1e-4,
            "{name}: replayed logits differ"
        );
    }
}

#[test]
fn restore_refuses_mismatched_states() {
    let (Some(qwen), Some(lfm)) = (load("qwen35"), load("lfm2")) else {
        return;
    };
    let toks = tokens(10, qwen.n_vocab(), 3);
    let mut state = qwen.new_state();
    logits_in_chunks(&qwen, &mut state, &toks, 10);
    let snap = state.snapshot();
    // A state of another model has another layout.
    let mut other = lfm.new_state();
    assert!(matches!(
        other.restore(&snap),
        Err(RestoreError::LayoutMismatch { .. })
    ));
    // The KV rows up to the snapshot must still be there.
    let mut short = qwen.new_state();
    logits_in_chunks(&qwen, &mut short, &toks[..4], 4);
    assert!(matches!(
        short.restore(&snap),
        Err(RestoreError::KvTooShort { need: 10, .. })
    ));
    // Recurrent layers cannot rewind: truncating a hybrid state resets it.
    assert!(!state.can_truncate());
    state.truncate(5);
    assert_eq!(state.n_past, 0);
}

#[test]
fn sequences_in_one_batch_keep_their_own_state() {
    for &name in MODELS {
        let Some(model) = load(name) else { return };
        let (a, b) = (tokens(9, model.n_vocab(), 4), tokens(5, model.n_vocab(), 5));
        let alone_a = logits_in_chunks(&model, &mut model.new_state(), &a, 9);
        let alone_b = logits_in_chunks(&model, &mut model.new_state(), &b, 5);
        let (mut sa, mut sb) = (model.new_state(), model.new_state());
        let mut batch = Batch {
            seqs: vec![
                SeqInput {
                    tokens: &a,
                    state: &mut sa,
                    logits: Logits::All,
                },
                SeqInput {
                    tokens: &b,
                    state: &mut sb,
                    logits: Logits::All,
                },
            ],
        };
        let both = model.forward(&mut batch).expect("forward");
        let n = alone_a.len();
        assert!(max_abs_diff(&both[..n], &alone_a) < 1e-4, "{name}: seq a");
        assert!(max_abs_diff(&both[n..], &alone_b) < 1e-4, "{name}: seq b");
    }
}

#[test]
fn card_describes_hybrid_layers_and_state() {
    let expected = [
        ("qwen35", "LLLA"),
        ("qwen3next", "LLLA"),
        ("lfm2", "CAC"),
        ("granitehybrid", "MA"),
    ];
    for (name, map) in expected {
        let Some(model) = load(name) else { return };
        let card = model.card();
        assert_eq!(card.kind, "hybrid", "{name}");
        assert_eq!(card.layer_map, map, "{name}");
        assert!(card.state_bytes_per_sequence > 0, "{name}");
        assert_eq!(
            card.state_bytes_per_sequence as usize,
            model.new_state().bytes(),
            "{name}"
        );
    }
    // qwen35: 3 GDN layers of conv state (4-1)·256 and delta state 4·32·32 floats; 1 attention
    // layer with 1 KV head of 64.
    let Some(model) = load("qwen35") else { return };
    let card = model.card();
    assert_eq!(
        card.state_bytes_per_sequence,
        3 * (3 * 256 + 4 * 32 * 32) * 4
    );
    assert_eq!(card.kv_bytes_per_token, 2 * 64 * 4);
}
