//! Greedy continuations of three real models against llama.cpp's (../shared/real/greedy.json).
//!
//! The judge is ../shared/real/README.md's: walk the steps while our token equals llama.cpp's; at
//! the first difference, accept only a near-tie — llama.cpp's top-1 logit minus its logit for our
//! token (from its top-10 list) must be under 0.25. Everything before must match exactly.

mod common;

use ggufd::engine::sampler::argmax;
use ggufd::model::{Batch, Logits, Model};
use serde_json::Value;

const NEAR_TIE: f64 = 0.25;

fn greedy(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut state = model.new_state();
    let mut logits = model
        .forward(&mut Batch::single(prompt, &mut state, Logits::Last))
        .expect("prefill");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = argmax(&logits);
        out.push(next);
        logits = model
            .forward(&mut Batch::single(&[next], &mut state, Logits::Last))
            .expect("decode");
    }
    out
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn check_model(key: &str) {
    let greedy_json = common::shared_dir().join("real/greedy.json");
    if !common::require(&greedy_json, "real-model goldens") {
        return;
    }
    let refs: Value = serde_json::from_slice(&std::fs::read(&greedy_json).unwrap()).unwrap();
    let file = refs["meta"]["models"][key]["file"]
        .as_str()
        .expect("model file name");
    let path = common::model_dir().join(file);
    if !common::require(&path, "real model") {
        return;
    }
    let model = Model::load(&path).expect("model loads");
    for case in refs["cases"][key].as_array().expect("cases") {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["generated"]);
        let ours = greedy(&model, &prompt, expected.len());
        let Some(step) = ours.iter().zip(&expected).position(|(a, b)| a != b) else {
            continue;
        };
        let top10 = case["step_top10"][step].as_array().expect("top10");
        let logit_of = |id: u32| {
            top10
                .iter()
                .find(|e| e[0].as_u64() == Some(id as u64))
                .and_then(|e| e[1].as_f64())
        };
        let top1 = top10[0][1].as_f64().expect("top-1 logit");
        let gap = logit_of(ours[step]).map(|l| top1 - l);
        assert!(
            gap.is_some_and(|g| g < NEAR_TIE),
            "{key}, prompt {:?}: diverged at step {step}: ours {} vs llama.cpp {} (gap {gap:?})\nours     {ours:?}\nexpected {expected:?}",
            case["prompt"],
            ours[step],
            expected[step],
        );
        eprintln!("{key}: near-tie divergence at step {step} (gap {gap:?}) accepted");
    }
}

#[test]
fn smollm2_135m_greedy_matches_llama_cpp() {
    check_model("smollm2-135m-q4_1");
}

#[test]
fn qwen2_5_coder_0_5b_greedy_matches_llama_cpp() {
    check_model("qwen2.5-coder-0.5b-q4_k_m");
}

#[test]
fn gemma3_270m_greedy_matches_llama_cpp() {
    check_model("gemma3-270m-q4_k_m");
}
