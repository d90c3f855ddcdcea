//! Loading maps the file: resident memory must not grow by the model's size before inference
//! touches the weights. (Its own test binary, so no other test's allocations blur the numbers.)

mod common;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

#[test]
fn loading_a_500_mb_model_does_not_read_its_weights() {
    let path = common::model_dir().join("qwen2.5-coder-0.5b.gguf");
    if !common::require(&path, "real model") {
        return;
    }
    let before = rss_bytes();
    let model = ggufd::model::Model::load(&path).expect("loads");
    let grown = rss_bytes().saturating_sub(before);
    let file = model.file.file_bytes();
    assert!(
        file > 400 << 20,
        "expected the ~470 MiB model, got {file} bytes"
    );
    // Loading may bring in the metadata (gguf-rs decodes the 150k-token vocabulary and merges into
    // JSON values, ~50-80 MiB with allocator slack) and f32 copies of the norm vectors, but no
    // weights: reading even a quarter of them would exceed this bound.
    assert!(
        grown < file / 4,
        "loading raised RSS by {} MiB for a {} MiB file",
        grown >> 20,
        file >> 20
    );
}
