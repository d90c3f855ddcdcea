//! Conformance against llama.cpp's goldens (../shared/conformance), judged by the corpus's own
//! checker `compare_logits.py` with its automatic tolerance profiles. Every quantized file and the
//! rebuilt F32 master of each architecture must pass, logits and greedy continuations.

mod common;

use std::process::Command;

/// Runs the checker on every file of one model of the corpus (`model_case`, e.g. `qwen3`).
/// `skip` names other models that share the architecture name (llama-moe is `llama` too).
fn check_arch(model_case: &str, skip: &[&str]) {
    let corpus = common::conformance_dir();
    let masters = common::f32_masters_dir();
    if !common::require(&corpus.join("manifest.json"), "conformance corpus")
        || !common::require(
            &masters.join(format!("{model_case}-F32/model.gguf")),
            "F32 master",
        )
    {
        return;
    }
    let exe = common::ggufd();
    let exe = exe.display();
    let out = Command::new("python3")
        .arg(common::shared_dir().join("tools/compare_logits.py"))
        .arg(&corpus)
        .args(["--only", model_case])
        .args(["--skip", &skip.join(",")])
        .arg("--model-dir")
        .arg(&masters)
        .arg("--cmd")
        .arg(format!("{exe} logits --threads 1 --model {{model}} --tokens {{tokens}} --out {{out}}"))
        .arg("--greedy-cmd")
        .arg(format!(
            "{exe} logits --threads 1 --model {{model}} --tokens {{tokens}} --out /dev/null --greedy {{n_predict}}"
        ))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("SUMMARY"))
        .unwrap_or_else(|| panic!("no SUMMARY line from the checker"));
    assert!(
        summary.contains("skipped_no_model=0"),
        "every case, F32 master included, must be checked: {summary}"
    );
    assert!(
        out.status.success(),
        "conformance failed for {model_case}: {summary}"
    );
}

#[test]
fn llama() {
    check_arch("llama", &["llama-moe"]);
}

#[test]
fn qwen2() {
    check_arch("qwen2", &[]);
}

#[test]
fn qwen3() {
    check_arch("qwen3", &[]);
}

#[test]
fn gemma3() {
    check_arch("gemma3", &[]);
}

#[test]
fn qwen3moe() {
    check_arch("qwen3moe", &[]);
}

#[test]
fn llama_moe() {
    check_arch("llama-moe", &[]);
}

#[test]
fn gpt_oss() {
    check_arch("gpt-oss", &[]);
}

#[test]
fn qwen35() {
    // `--only qwen35` also matches qwen35moe's case names.
    check_arch("qwen35", &["qwen35moe"]);
}

#[test]
fn qwen3next() {
    check_arch("qwen3next", &[]);
}

#[test]
fn qwen35moe() {
    check_arch("qwen35moe", &[]);
}

#[test]
fn lfm2() {
    check_arch("lfm2", &[]);
}

#[test]
fn granitehybrid() {
    check_arch("granitehybrid", &[]);
}
