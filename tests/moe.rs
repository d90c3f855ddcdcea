//! Mixture-of-experts behaviour beyond the conformance goldens: decode reads only the selected
//! experts' weights, prefill streams each selected expert once per batch, and the fused
//! `ffn_gate_up_exps` layout computes exactly what the split layout does.

mod common;

use common::gguf_writer::{GgufBuilder, Tensor};
use ggufd::gguf::GgmlType;
use ggufd::model::{moe, Batch, Logits, Model};
use std::path::PathBuf;
use std::sync::Mutex;

fn corpus(model: &str) -> Option<PathBuf> {
    let p = common::conformance_dir().join(model).join("model.gguf");
    common::require(&p, "conformance corpus").then_some(p)
}

/// Bytes of one expert summed over the layers: each `*_exps.weight` stack divided by its experts.
fn expert_bytes_all_layers(model: &Model, n_expert: usize) -> u64 {
    model
        .file
        .tensor_infos()
        .iter()
        .filter(|t| t.name.ends_with("_exps.weight"))
        .map(|t| (t.range.len() / n_expert) as u64)
        .sum()
}

/// The expert-byte counter is process-wide: the tests that read it, and every test here that
/// runs an MoE forward pass, hold this lock so that no other test's pass is counted.
static COUNTER_LOCK: Mutex<()> = Mutex::new(());

fn counter_lock() -> std::sync::MutexGuard<'static, ()> {
    COUNTER_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Expert-weight bytes handed to matmul by one forward pass of `tokens`.
fn expert_bytes_of_forward(
    model: &Model,
    state: &mut ggufd::model::SeqState,
    tokens: &[u32],
) -> u64 {
    let before = moe::expert_bytes_read();
    model
        .forward(&mut Batch::single(tokens, state, Logits::Last))
        .expect("forward");
    moe::expert_bytes_read() - before
}

fn check_decode_touches_only_selected_experts(case: &str) {
    let Some(path) = corpus(case) else { return };
    check_decode_reads(case, &path);
}

fn check_decode_reads(case: &str, path: &std::path::Path) {
    let _counter = counter_lock();
    let model = Model::load(path).expect("load");
    let (n_expert, n_used) = model.arch.experts().expect("a MoE model");
    let per_expert = expert_bytes_all_layers(&model, n_expert);
    let all_experts = per_expert * n_expert as u64;

    let mut state = model.new_state();
    let prompt: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 256).collect();
    let prefill = expert_bytes_of_forward(&model, &mut state, &prompt);
    // Tokens are grouped by expert: a 12-token batch streams each expert at most once.
    assert!(
        prefill <= all_experts,
        "{case}: prefill read {prefill} expert bytes, more than all experts once ({all_experts})"
    );
    for (step, token) in [3u32, 141, 77, 200].into_iter().enumerate() {
        let decode = expert_bytes_of_forward(&model, &mut state, &[token]);
        assert_eq!(
            decode,
            n_used as u64 * per_expert,
            "{case} step {step}: one token must read exactly {n_used} experts per layer"
        );
        assert!(decode * (n_expert / n_used) as u64 <= all_experts);
    }
    println!(
        "{case}: {n_used}/{n_expert} experts, {} expert bytes per decoded token of {all_experts}",
        n_used as u64 * per_expert
    );
}

#[test]
fn decode_reads_only_selected_experts_qwen3moe() {
    check_decode_touches_only_selected_experts("qwen3moe-Q4_K_M");
}

#[test]
fn decode_reads_only_selected_experts_gpt_oss_mxfp4() {
    check_decode_touches_only_selected_experts("gpt-oss-MXFP4_MOE");
}

/// The same check on a big model, e.g. the one `tools/make_moe_bench_model.py` writes:
/// `GGUFD_MOE_BENCH_MODEL=/tmp/moe-bench.gguf cargo test --release --test moe -- --nocapture`.
#[test]
fn decode_reads_only_selected_experts_bench_model() {
    if let Some(path) = std::env::var_os("GGUFD_MOE_BENCH_MODEL") {
        check_decode_reads("bench model", std::path::Path::new(&path));
    }
}

/// Rewrites every layer's split `ffn_gate_exps` + `ffn_up_exps` as one fused
/// `ffn_gate_up_exps` `{n_embd, 2·n_ff, n_expert}` (per expert: gate rows, then up rows).
fn fuse_gate_up(mut b: GgufBuilder, n_layer: usize) -> GgufBuilder {
    for il in 0..n_layer {
        let gate = b.tensor(&format!("blk.{il}.ffn_gate_exps.weight")).clone();
        let up = b.tensor(&format!("blk.{il}.ffn_up_exps.weight")).clone();
        assert_eq!(gate.ty, up.ty);
        let n_expert = gate.shape[2] as usize;
        let per_expert = gate.data.len() / n_expert;
        let data: Vec<u8> = (0..n_expert)
            .flat_map(|e| {
                let r = e * per_expert..(e + 1) * per_expert;
                gate.data[r.clone()].iter().chain(&up.data[r]).copied()
            })
            .collect();
        let ty = GgmlType::ALL
            .into_iter()
            .find(|t| t.id() == gate.ty)
            .unwrap();
        let shape = [gate.shape[0], 2 * gate.shape[1], gate.shape[2]];
        b.remove_tensor(&gate.name);
        b.remove_tensor(&up.name);
        b.add_tensor(Tensor::new(
            &format!("blk.{il}.ffn_gate_up_exps.weight"),
            ty,
            &shape,
            data,
        ));
    }
    b
}

fn all_logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let _counter = counter_lock();
    let mut state = model.new_state();
    model
        .forward(&mut Batch::single(tokens, &mut state, Logits::All))
        .expect("forward")
}

#[test]
fn fused_gate_up_experts_match_split() {
    for case in ["qwen3moe-Q8_0", "gpt-oss-Q4_K_M"] {
        let Some(path) = corpus(case) else { return };
        let split = Model::load(&path).expect("load split");
        let dir = std::env::temp_dir().join(format!("ggufd-moe-fused-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fused_path = dir.join(format!("{case}.gguf"));
        fuse_gate_up(GgufBuilder::from_file(&path), split.hparams.n_layer).write(&fused_path);
        let fused = Model::load(&fused_path).expect("load fused");
        assert!(fused.file.has_tensor("blk.0.ffn_gate_up_exps.weight"));
        assert!(!fused.file.has_tensor("blk.0.ffn_gate_exps.weight"));
        let tokens: Vec<u32> = (0..9).map(|i| (i * 53 + 11) % 256).collect();
        assert_eq!(
            all_logits(&split, &tokens),
            all_logits(&fused, &tokens),
            "{case}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn card_reports_experts_and_active_parameters() {
    for (case, experts, used) in [
        ("qwen3moe-Q8_0", 8, 2),
        ("llama-moe-Q8_0", 4, 2),
        ("gpt-oss-MXFP4_MOE", 4, 2),
    ] {
        let Some(path) = corpus(case) else { return };
        let card = Model::load(&path).expect("load").card();
        assert_eq!(card.kind, "moe", "{case}");
        assert_eq!((card.experts, card.experts_used), (experts, used), "{case}");
        assert!(card.active_parameters < card.parameters, "{case}");
        // Active = everything but the unused experts' share of the expert stacks.
        let expert_params: u64 = Model::load(&path)
            .unwrap()
            .file
            .tensor_infos()
            .iter()
            .filter(|t| t.name.contains("_exps."))
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum();
        let inactive = expert_params * (experts - used) as u64 / experts as u64;
        assert_eq!(card.active_parameters, card.parameters - inactive, "{case}");
    }
}
