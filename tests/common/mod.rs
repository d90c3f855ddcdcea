//! Where integration tests find the shared corpus, the F32 masters and the real models.
#![allow(dead_code)] // each test binary uses a different subset

pub mod gguf_writer;

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn from_env_or(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

/// `../shared` beside the repo, or `$GGUFD_SHARED`.
pub fn shared_dir() -> PathBuf {
    from_env_or("GGUFD_SHARED", repo_root().join("../shared"))
}

pub fn conformance_dir() -> PathBuf {
    from_env_or("GGUFD_CONFORMANCE", shared_dir().join("conformance"))
}

/// F32 masters rebuilt by `tools/test.sh` (make_tiny_models.py --from-manifest).
pub fn f32_masters_dir() -> PathBuf {
    from_env_or("GGUFD_F32_MASTERS", repo_root().join(".cache/f32masters"))
}

/// The three real models fetched by `tools/fetch-models.sh`.
pub fn model_dir() -> PathBuf {
    from_env_or("GGUFD_MODEL_DIR", repo_root().join(".cache/models"))
}

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Test data that is missing fails the test in CI and is reported loudly elsewhere.
/// Returns false when the caller should skip.
pub fn require(path: &std::path::Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    let msg = format!(
        "{what} not found at {} — run `bash tools/test.sh` (it fetches and builds test data)",
        path.display()
    );
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {msg} !!!!!!!!\n");
    false
}

pub fn ggufd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ggufd"))
}
