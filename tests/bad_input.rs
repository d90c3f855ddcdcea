//! Bad input must give a clear error and exit code 1 — never a panic (exit 101), an abort, a signal
//! or a huge allocation. Every case runs the real `ggufd` binary on a file written into a scratch
//! directory (mostly a corpus model rebuilt with one thing broken, see `common::gguf_writer`),
//! under an address-space limit so that an attempt to allocate a declared size fails the test.
//!
//! Cases that only touch the file format and the hyper-parameters run without kernels; the ones
//! marked "needs kernels" load weights (`kernels::kernels(ty)` decides which types are usable).

mod common;

use common::gguf_writer::{vt, GgufBuilder, Tensor, Value};
use ggufd::gguf::{GgmlType, GgufFile};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Address-space limit of every ggufd run: far above what these tiny models need (the binary, a
/// one-thread compute pool and a ~1 MB mapped file), below any "allocate what the header says".
const MEM_LIMIT_KIB: u64 = 1 << 20;
/// CPU-time limit of every run (a runaway loop over a declared count is a bug too).
const CPU_LIMIT_S: u64 = 60;
const WALL_TIMEOUT: Duration = Duration::from_secs(180);

/// A per-test scratch directory, removed when the test passes (kept for inspection otherwise).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("ggufd-bad-input-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).expect("write scratch file");
        p
    }

    fn build(&self, name: &str, b: &GgufBuilder) -> PathBuf {
        self.write(name, &b.to_bytes())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Run {
    cmdline: String,
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn context(&self) -> String {
        format!(
            "$ {}\nexit code: {:?}, signal: {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.cmdline, self.code, self.signal, self.stderr, self.stdout
        )
    }
}

fn arg(s: impl AsRef<std::ffi::OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

/// Runs ggufd under the memory and CPU limits, with a wall-clock timeout.
fn ggufd(args: Vec<OsString>) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let exe = common::ggufd();
    let cmdline = std::iter::once(exe.display().to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    // `exec` keeps the pid, so the child we time out and kill is ggufd itself.
    let script =
        format!("ulimit -v {MEM_LIMIT_KIB} && ulimit -t {CPU_LIMIT_S} && exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&exe)
        .args(&args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > WALL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {WALL_TIMEOUT:?}: {cmdline}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        cmdline,
        code: status.code(),
        signal: status.signal(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn inspect(model: &Path) -> Run {
    ggufd(vec![arg("inspect"), arg(model)])
}

fn logits(model: &Path, tokens: &str) -> Run {
    ggufd(vec![
        arg("logits"),
        arg("--threads"),
        arg("1"),
        arg("--model"),
        arg(model),
        arg("--tokens"),
        arg(tokens),
        arg("--out"),
        arg("/dev/null"),
    ])
}

fn tokenize(model: &Path) -> Run {
    ggufd(vec![
        arg("tokenize"),
        arg("--model"),
        arg(model),
        arg("--text"),
        arg("hello"),
    ])
}

fn run_prompt(model: &Path) -> Run {
    ggufd(vec![
        arg("run"),
        arg("--threads"),
        arg("1"),
        arg("--model"),
        arg(model),
        arg("--prompt"),
        arg("hi"),
        arg("--max-tokens"),
        arg("1"),
    ])
}

fn bench(model: &Path, n_prompt: usize) -> Run {
    ggufd(vec![
        arg("bench"),
        arg("--threads"),
        arg("1"),
        arg("--model"),
        arg(model),
        arg("--n-prompt"),
        arg(n_prompt.to_string()),
        arg("--n-gen"),
        arg("0"),
        arg("--reps"),
        arg("1"),
    ])
}

/// The contract: exit code exactly 1, `error: ...` on stderr naming the problem (every phrase),
/// and no panic, abort, signal or failed allocation.
fn expect_error(run: &Run, phrases: &[&str]) {
    let ctx = run.context();
    assert!(!run.stderr.contains("panicked"), "ggufd panicked\n{ctx}");
    assert!(
        !run.stderr.contains("RUST_BACKTRACE"),
        "ggufd panicked\n{ctx}"
    );
    assert!(
        !run.stderr.contains("memory allocation of"),
        "ggufd tried a huge allocation (limit {MEM_LIMIT_KIB} KiB)\n{ctx}"
    );
    assert_eq!(run.signal, None, "ggufd was killed by a signal\n{ctx}");
    assert_eq!(run.code, Some(1), "exit code must be 1\n{ctx}");
    assert!(
        run.stderr.starts_with("error:"),
        "stderr must start with `error:`\n{ctx}"
    );
    for p in phrases {
        assert!(run.stderr.contains(p), "stderr must mention `{p}`\n{ctx}");
    }
}

fn expect_success(run: &Run) {
    let ctx = run.context();
    assert!(!run.stderr.contains("panicked"), "ggufd panicked\n{ctx}");
    assert_eq!(run.code, Some(0), "expected success\n{ctx}");
}

/// A broken file: every command that opens it (`inspect`, `logits`, `tokenize`, `run`, `bench`)
/// fails the same way.
fn file_error(path: &Path, phrases: &[&str]) {
    expect_error(&inspect(path), phrases);
    expect_error(&logits(path, "1,2,3"), phrases);
    expect_error(&tokenize(path), phrases);
    expect_error(&run_prompt(path), phrases);
    expect_error(&bench(path, 4), phrases);
}

/// A readable file that is not a usable model: every command that loads it fails.
fn model_error(path: &Path, phrases: &[&str]) {
    expect_error(&inspect(path), phrases);
    expect_error(&logits(path, "1,2,3"), phrases);
    expect_error(&run_prompt(path), phrases);
    expect_error(&bench(path, 4), phrases);
}

/// A model of the conformance corpus, or `None` (test skipped) if the corpus is absent.
fn corpus(model: &str) -> Option<PathBuf> {
    let p = common::conformance_dir().join(model).join("model.gguf");
    common::require(&p, "conformance corpus").then_some(p)
}

const LLAMA: &str = "llama-Q8_0";
const ATTN_Q: &str = "blk.0.attn_q.weight";

/// The llama corpus model (vocab 256, n_embd 256, 4 heads / 2 kv heads of 64, 2 layers, Q8_0),
/// rebuilt by the test writer, or `None` if the corpus is absent.
fn llama() -> Option<GgufBuilder> {
    corpus(LLAMA).map(GgufBuilder::from_file)
}

/// A minimal well-formed file with one small tensor, for header-level corruption.
fn tiny() -> GgufBuilder {
    let mut b = GgufBuilder::new();
    b.set("general.architecture", Value::str("llama"));
    b.set("general.name", Value::str("tiny"));
    b.add_tensor(Tensor::new("t.weight", GgmlType::F32, &[32], vec![0; 128]));
    b
}

fn u64_le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

// ---------------------------------------------------------------------------------------------
// The test writer itself
// ---------------------------------------------------------------------------------------------

/// The writer reproduces a corpus file faithfully: same metadata, tensors, types, shapes, bytes.
#[test]
fn writer_round_trip() {
    let Some(src) = corpus(LLAMA) else { return };
    let s = Scratch::new("writer_round_trip");
    let b = GgufBuilder::from_file(&src);
    let out = s.build("model.gguf", &b);
    let (a, c) = (GgufFile::open(&src).unwrap(), GgufFile::open(&out).unwrap());
    let ka: Vec<_> = a.metadata.iter().collect();
    let kc: Vec<_> = c.metadata.iter().collect();
    assert_eq!(ka, kc);
    assert_eq!(a.tensor_infos().len(), c.tensor_infos().len());
    for (x, y) in a.tensor_infos().iter().zip(c.tensor_infos()) {
        assert_eq!((&x.name, x.ty, &x.shape), (&y.name, y.ty, &y.shape));
        let (dx, dy) = (a.tensor(&x.name).unwrap(), c.tensor(&y.name).unwrap());
        assert_eq!(dx.bytes(), dy.bytes(), "{}", x.name);
    }
}

/// Needs kernels. The rebuilt, unmodified file loads and runs, so every failure below is caused
/// by the one thing each test breaks.
#[test]
fn writer_output_loads() {
    let Some(b) = llama() else { return };
    let s = Scratch::new("writer_output_loads");
    let p = s.build("model.gguf", &b);
    expect_success(&inspect(&p));
    expect_success(&logits(&p, "1,2,3"));
}

// ---------------------------------------------------------------------------------------------
// Not a GGUF file
// ---------------------------------------------------------------------------------------------

#[test]
fn nonexistent_path() {
    let s = Scratch::new("nonexistent_path");
    let p = s.dir.join("no-such-model.gguf");
    let shown = p.display().to_string();
    let phrases = ["cannot open", &shown, "No such file or directory"];
    file_error(&p, &phrases);
    // The OS error is reported once, not once per layer of context.
    let run = inspect(&p);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.context()
    );
}

#[test]
fn directory_as_model() {
    let s = Scratch::new("directory_as_model");
    file_error(&s.dir, &["cannot open", "Is a directory"]);
}

#[test]
fn empty_file() {
    let s = Scratch::new("empty_file");
    let p = s.write("empty.gguf", b"");
    file_error(&p, &["not a GGUF file", "0 bytes"]);
    let p = s.write("three.gguf", b"GGU");
    file_error(&p, &["not a GGUF file", "3 bytes"]);
}

#[test]
fn wrong_magic() {
    let s = Scratch::new("wrong_magic");
    let p = s.write("text.gguf", b"hello, this is not a model\n");
    file_error(&p, &["not a GGUF file", "magic"]);
    // A valid file with the old ggml magic / lowercase magic.
    for magic in [b"GGML", b"gguf", b"FUGG"] {
        let mut bytes = tiny().to_bytes();
        bytes[..4].copy_from_slice(magic);
        let p = s.write("magic.gguf", &bytes);
        file_error(&p, &["not a GGUF file", "magic"]);
    }
}

#[test]
fn unsupported_version() {
    let s = Scratch::new("unsupported_version");
    for version in [0u32, 1, 4, 0x0300_0000, u32::MAX] {
        let mut b = tiny();
        b.version = version;
        let p = s.build("model.gguf", &b);
        let phrase = format!("GGUF version {version} is not supported");
        file_error(&p, &[&phrase]);
    }
    let mut b = tiny();
    b.version = 3u32.swap_bytes();
    let p = s.build("be.gguf", &b);
    file_error(&p, &["big-endian"]);
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

#[test]
fn header_truncated_mid_metadata() {
    let Some(b) = llama() else { return };
    let s = Scratch::new("header_truncated_mid_metadata");
    let bytes = b.to_bytes();
    let l = b.layout();
    let cuts = [
        l.kv_start - 4, // inside the key/value count
        l.kv_start + 3, // inside the first key's length
        l.kv_start + 12,
        (l.kv_start + l.tensor_infos_start) / 2,
        l.tensor_infos_start - 1,
    ];
    for cut in cuts {
        let p = s.write("model.gguf", &bytes[..cut]);
        file_error(&p, &["malformed GGUF header", "truncated"]);
    }
}

#[test]
fn header_truncated_mid_tensor_infos() {
    let Some(b) = llama() else { return };
    let s = Scratch::new("header_truncated_mid_tensor_infos");
    let bytes = b.to_bytes();
    let l = b.layout();
    for cut in [
        l.tensor_infos_start + 5,
        (l.tensor_infos_start + l.tensor_infos_end) / 2,
        l.tensor_infos_end - 1,
    ] {
        let p = s.write("model.gguf", &bytes[..cut]);
        file_error(&p, &["malformed GGUF header", "truncated", "tensor"]);
    }
}

/// A real corpus file cut inside its data section: the first tensor whose bytes are gone is named.
#[test]
fn data_section_truncated() {
    let Some(src) = corpus(LLAMA) else { return };
    let s = Scratch::new("data_section_truncated");
    let bytes = std::fs::read(&src).unwrap();
    let f = GgufFile::open(&src).unwrap();
    let infos = f.tensor_infos();
    let data_start = infos.iter().map(|t| t.range.start).min().unwrap();
    let data_end = infos.iter().map(|t| t.range.end).max().unwrap();
    for cut in [
        data_start,
        data_start + 1,
        bytes.len() * 3 / 4,
        data_end - 1,
    ] {
        let victim = infos.iter().find(|t| t.range.end > cut).unwrap();
        let p = s.write("model.gguf", &bytes[..cut]);
        let name = format!("`{}`", victim.name);
        file_error(&p, &[&name, "beyond the end of the file"]);
    }
    // Header intact, no data at all.
    let l = GgufBuilder::from_file(&src).layout();
    let b = GgufBuilder::from_file(&src).to_bytes();
    let p = s.write("model.gguf", &b[..l.tensor_infos_end]);
    file_error(&p, &["beyond the end of the file"]);
}

// ---------------------------------------------------------------------------------------------
// Absurd declared sizes (also bounded by the address-space limit)
// ---------------------------------------------------------------------------------------------

#[test]
fn absurd_tensor_count() {
    let s = Scratch::new("absurd_tensor_count");
    for n in [1u64 << 60, u64::MAX, 1_000_000] {
        let mut b = tiny();
        b.n_tensors_override = Some(n);
        let p = s.build("model.gguf", &b);
        let phrase = format!("declares {n} tensors");
        file_error(&p, &["malformed GGUF header", &phrase]);
    }
}

#[test]
fn absurd_metadata_count() {
    let s = Scratch::new("absurd_metadata_count");
    for n in [1u64 << 60, u64::MAX] {
        let mut b = tiny();
        b.n_kv_override = Some(n);
        let p = s.build("model.gguf", &b);
        let phrase = format!("declares {n} metadata entries");
        file_error(&p, &["malformed GGUF header", &phrase]);
    }
}

#[test]
fn absurd_string_length() {
    let s = Scratch::new("absurd_string_length");
    // A string value; 2^30 is gguf-rs's own cap, which it would allocate before reading.
    for len in [1u64 << 40, 1 << 30, u64::MAX] {
        let mut b = tiny();
        b.set(
            "general.name",
            Value::BadStr {
                declared_len: len,
                bytes: b"tiny".to_vec(),
            },
        );
        let p = s.build("model.gguf", &b);
        let phrase = format!("string length {len}");
        file_error(&p, &["general.name", &phrase]);
    }
    // A key.
    let mut b = tiny();
    b.n_kv_override = Some(b.kv.len() as u64 + 1);
    b.extra_kv_bytes = [&u64_le(1 << 40)[..], b"general.x"].concat();
    let p = s.build("model.gguf", &b);
    file_error(&p, &["metadata entry #2", "string length 1099511627776"]);
    // A tensor name.
    let mut b = tiny();
    b.tensor_mut("t.weight").name_len_override = Some(1 << 62);
    let p = s.build("model.gguf", &b);
    file_error(
        &p,
        &["name of tensor #0", "string length 4611686018427387904"],
    );
}

#[test]
fn absurd_array_length() {
    let s = Scratch::new("absurd_array_length");
    let cases = [
        (
            "tokenizer.ggml.tokens",
            vt::STRING,
            1u64 << 60,
            "1152921504606846976 strings",
        ),
        (
            "tokenizer.ggml.scores",
            vt::F32,
            u64::MAX,
            "18446744073709551615 values",
        ),
        (
            "llama.attention.head_count_kv",
            vt::U32,
            1 << 40,
            "1099511627776 values",
        ),
        ("general.tags", vt::U8, 1 << 30, "1073741824 values"),
    ];
    for (key, elem_type, declared_len, phrase) in cases {
        let item = match elem_type {
            vt::STRING => Value::str("a"),
            vt::F32 => Value::F32(0.0),
            vt::U32 => Value::U32(1),
            _ => Value::U8(1),
        };
        let mut b = tiny();
        b.set(
            key,
            Value::BadArray {
                elem_type,
                declared_len,
                items: vec![item.clone(), item],
            },
        );
        let p = s.build("model.gguf", &b);
        let key = format!("`{key}`");
        file_error(&p, &[&key, phrase]);
    }
}

#[test]
fn bad_metadata_value_type() {
    let s = Scratch::new("bad_metadata_value_type");
    let cases: [(Value, &str); 4] = [
        (
            Value::Raw {
                type_id: 13,
                bytes: vec![0; 8],
            },
            "unknown value type 13",
        ),
        (
            Value::Raw {
                type_id: u32::MAX,
                bytes: vec![0; 8],
            },
            "unknown value type 4294967295",
        ),
        (
            Value::BadArray {
                elem_type: vt::ARRAY,
                declared_len: 1,
                items: vec![],
            },
            "array of arrays",
        ),
        (
            Value::BadArray {
                elem_type: 77,
                declared_len: 1,
                items: vec![],
            },
            "unknown element type 77",
        ),
    ];
    for (v, phrase) in cases {
        let mut b = tiny();
        b.set("general.weird", v);
        b.set("general.after", Value::U32(0));
        let p = s.build("model.gguf", &b);
        file_error(&p, &["`general.weird`", phrase]);
    }
}

/// Two values for one key: ambiguous, refused (gguf-rs alone would keep the last one).
#[test]
fn duplicate_metadata_key() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("duplicate_metadata_key");
    b.push_kv("llama.block_count", Value::U32(1));
    let p = s.build("model.gguf", &b);
    file_error(&p, &["key `llama.block_count` appears twice"]);
}

// ---------------------------------------------------------------------------------------------
// Tensor infos
// ---------------------------------------------------------------------------------------------

#[test]
fn tensor_offset_beyond_eof() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("tensor_offset_beyond_eof");
    let l = base.layout();
    let data_len = (l.file_len - l.data_start) as u64;
    let cases = [
        (1u64 << 40, "beyond the end of the file"),
        // Starts inside the file, ends past it.
        ((data_len - 64) / 32 * 32, "beyond the end of the file"),
        (u64::MAX - 31, "offset overflows"),
    ];
    for (offset, phrase) in cases {
        let mut b = base.clone();
        b.tensor_mut(ATTN_Q).offset_override = Some(offset);
        let p = s.build("model.gguf", &b);
        file_error(&p, &["`blk.0.attn_q.weight`", phrase]);
    }
}

#[test]
fn misaligned_tensor_offset() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("misaligned_tensor_offset");
    let i = base.tensors.iter().position(|t| t.name == ATTN_Q).unwrap();
    for delta in [1u64, 16] {
        let mut b = base.clone();
        b.tensors[i].offset_override = Some(b.data_offsets()[i] + delta);
        let p = s.build("model.gguf", &b);
        file_error(&p, &["`blk.0.attn_q.weight`", "not aligned to 32"]);
    }
    // With `general.alignment = 64`, a 32-aligned offset is misaligned.
    let mut b = base.clone();
    b.set("general.alignment", Value::U32(64));
    b.tensors[i].offset_override = Some(b.data_offsets()[i] + 32);
    let p = s.build("model.gguf", &b);
    file_error(&p, &["`blk.0.attn_q.weight`", "not aligned to 64"]);
}

/// An absurd `general.alignment` puts the data section far past the end of the file; it must not
/// be allocated or mapped.
#[test]
fn absurd_alignment() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("absurd_alignment");
    // Raw, so the writer itself keeps aligning to 32.
    b.set(
        "general.alignment",
        Value::Raw {
            type_id: vt::U64,
            bytes: u64_le(1 << 40).to_vec(),
        },
    );
    let p = s.build("model.gguf", &b);
    file_error(&p, &["beyond the end of the file"]);
}

/// Type ids ggml does not define or we do not read: 4 and 5 (removed Q4_2/Q4_3), 40 (ggml's
/// GGML_TYPE_COUNT, an `unreachable!` in gguf-rs), and beyond.
#[test]
fn unsupported_tensor_type() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("unsupported_tensor_type");
    for id in [4u32, 5, 40, 41, 1000, u32::MAX] {
        let mut b = base.clone();
        b.set_type(ATTN_Q, id);
        let p = s.build("model.gguf", &b);
        let phrase = format!("unsupported type id {id}");
        file_error(&p, &["`blk.0.attn_q.weight`", &phrase]);
    }
}

#[test]
fn row_not_multiple_of_block() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("row_not_multiple_of_block");
    b.set_shape(ATTN_Q, &[250, 256]);
    let p = s.build("model.gguf", &b);
    file_error(
        &p,
        &[
            "`blk.0.attn_q.weight`",
            "row length 250 is not a multiple of the Q8_0 block size 32",
        ],
    );
    let mut b = tiny();
    b.add_tensor(Tensor::new(
        "k.weight",
        GgmlType::Q6_K,
        &[128, 2],
        vec![0; 420],
    ));
    let p = s.build("tiny.gguf", &b);
    file_error(
        &p,
        &["`k.weight`", "not a multiple of the Q6_K block size 256"],
    );
}

#[test]
fn zero_size_dimension() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("zero_size_dimension");
    for shape in [[256u64, 0], [0, 256]] {
        let mut b = base.clone();
        b.set_shape(ATTN_Q, &shape);
        let p = s.build("model.gguf", &b);
        file_error(&p, &["`blk.0.attn_q.weight`", "invalid dimension 0"]);
    }
}

#[test]
fn bad_dimension_count() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("bad_dimension_count");
    // Five dimensions, all written.
    let mut b = base.clone();
    b.set_shape(ATTN_Q, &[256, 256, 1, 1, 1]);
    let p = s.build("five.gguf", &b);
    file_error(&p, &["`blk.0.attn_q.weight`", "has 5 dimensions"]);
    // A dimension count far beyond what is written.
    let mut b = base.clone();
    b.tensor_mut(ATTN_Q).n_dims_override = Some(u32::MAX);
    let p = s.build("max.gguf", &b);
    file_error(&p, &["`blk.0.attn_q.weight`", "has 4294967295 dimensions"]);
    // No dimensions.
    let mut b = base.clone();
    b.set_shape(ATTN_Q, &[]);
    let p = s.build("zero.gguf", &b);
    file_error(&p, &["`blk.0.attn_q.weight`", "has 0 dimensions"]);
}

/// Shapes whose element or byte count overflows, or is merely enormous: no arithmetic overflow,
/// no allocation, an error naming the tensor.
#[test]
fn tensor_size_overflow() {
    let s = Scratch::new("tensor_size_overflow");
    let cases: [(&[u64], &str); 4] = [
        (&[1 << 32, 1 << 32, 1 << 32], "overflows"),
        (&[1 << 62], "overflows"),
        (&[1 << 61], "beyond the end of the file"),
        (&[1 << 20, 1 << 20, 1 << 10], "beyond the end of the file"),
    ];
    for (shape, phrase) in cases {
        let mut b = tiny();
        b.add_tensor(Tensor::new(
            "huge.weight",
            GgmlType::F32,
            shape,
            vec![0; 64],
        ));
        let p = s.build("model.gguf", &b);
        file_error(&p, &["huge.weight", phrase]);
    }
}

#[test]
fn duplicate_tensor_name() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("duplicate_tensor_name");
    let dup = b.tensor("blk.0.attn_norm.weight").clone();
    b.add_tensor(dup);
    let p = s.build("model.gguf", &b);
    file_error(&p, &["`blk.0.attn_norm.weight`", "appears twice"]);
}

// ---------------------------------------------------------------------------------------------
// Metadata and hyper-parameters
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_architecture() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("unknown_architecture");
    for arch in ["mamba9", "LLAMA", ""] {
        let mut b = base.clone();
        b.set("general.architecture", Value::str(arch));
        let p = s.build("model.gguf", &b);
        let phrase = format!("architecture `{arch}` is not supported");
        model_error(&p, &[&phrase, "llama, qwen2"]);
    }
}

#[test]
fn missing_architecture() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("missing_architecture");
    b.remove("general.architecture");
    let p = s.build("model.gguf", &b);
    model_error(&p, &["`general.architecture` is missing"]);
    let Some(mut b) = llama() else { return };
    b.set("general.architecture", Value::U32(7));
    let p = s.build("int.gguf", &b);
    model_error(
        &p,
        &["`general.architecture`", "wrong type", "expected string"],
    );
}

#[test]
fn missing_required_key() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("missing_required_key");
    for key in [
        "llama.block_count",
        "llama.embedding_length",
        "llama.attention.head_count",
        "llama.feed_forward_length",
        "llama.context_length",
    ] {
        let mut b = base.clone();
        b.remove(key);
        let p = s.build("model.gguf", &b);
        let phrase = format!("metadata key `{key}` is missing");
        model_error(&p, &[&phrase]);
    }
}

#[test]
fn key_with_wrong_type() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("key_with_wrong_type");
    let cases = [
        ("llama.embedding_length", Value::str("256"), "found string"),
        ("llama.block_count", Value::F32(2.0), "found float"),
        (
            "llama.attention.head_count",
            Value::I32(-4),
            "found integer",
        ),
        ("llama.context_length", Value::U64(1 << 40), "found integer"),
        (
            "llama.feed_forward_length",
            Value::Array {
                elem_type: vt::U32,
                items: vec![Value::U32(512), Value::U32(512)],
            },
            "found array",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::str("1e-5"),
            "found string",
        ),
        ("llama.vocab_size", Value::Bool(true), "found bool"),
    ];
    for (key, v, found) in cases {
        let mut b = base.clone();
        b.set(key, v);
        let p = s.build("model.gguf", &b);
        let phrase = format!("metadata key `{key}` has the wrong type");
        model_error(&p, &[&phrase, found]);
    }
}

#[test]
fn head_count_kv_not_dividing() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("head_count_kv_not_dividing");
    let key = "llama.attention.head_count_kv";
    for (kv, phrase) in [
        (3u32, "3 does not divide head_count 4"),
        (0, "0 is outside [1, 4]"),
        (8, "8 is outside [1, 4]"),
    ] {
        let mut b = base.clone();
        b.set(key, Value::U32(kv));
        let p = s.build("model.gguf", &b);
        model_error(&p, &["`llama.attention.head_count_kv`", phrase]);
    }
}

/// Sizes that would make the loader reserve absurd buffers must be refused up front.
#[test]
fn absurd_block_count_and_sizes() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("absurd_block_count_and_sizes");
    let cases = [
        (
            "llama.block_count",
            1_000_000_000u32,
            "1000000000 is outside",
        ),
        ("llama.block_count", u32::MAX, "4294967295 is outside"),
        ("llama.block_count", 0, "0 is outside"),
        (
            "llama.attention.head_count",
            1_000_000_000,
            "1000000000 is outside",
        ),
        (
            "llama.embedding_length",
            1_000_000_000,
            "1000000000 is outside",
        ),
        (
            "llama.feed_forward_length",
            4_000_000_000,
            "4000000000 is outside",
        ),
        (
            "llama.attention.key_length",
            1_000_000_000,
            "1000000000 is outside",
        ),
    ];
    for (key, v, phrase) in cases {
        let mut b = base.clone();
        b.set(key, Value::U32(v));
        let p = s.build("model.gguf", &b);
        let key = format!("`{key}`");
        model_error(&p, &[&key, phrase]);
    }
}

#[test]
fn invalid_hparam_values() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("invalid_hparam_values");
    let cases = [
        ("llama.context_length", Value::U32(0), "0 is outside"),
        ("llama.rope.dimension_count", Value::U32(63), "must be even"),
        (
            "llama.rope.dimension_count",
            Value::U32(128),
            "at most the head size 64",
        ),
        ("llama.attention.key_length", Value::U32(1), "1 is outside"),
        (
            "llama.attention.value_length",
            Value::U32(32),
            "differs from key_length 64",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(f32::NAN),
            // gguf-rs decodes non-finite floats as JSON null.
            "NaN or infinite float",
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(-1.0),
            "not a non-negative number",
        ),
        (
            "llama.rope.freq_base",
            Value::F32(0.5),
            "finite number above 1",
        ),
        (
            "llama.rope.freq_base",
            Value::F32(f32::INFINITY),
            "NaN or infinite float",
        ),
        (
            "llama.rope.scaling.type",
            Value::str("longrope"),
            "`longrope` RoPE scaling is not supported",
        ),
        (
            "llama.rope.scaling.factor",
            Value::F32(0.0),
            "must be a positive number",
        ),
        (
            "llama.vocab_size",
            Value::U32(300),
            "300 differs from token_embd.weight's 256 rows",
        ),
    ];
    for (key, v, phrase) in cases {
        let mut b = base.clone();
        b.set(key, v);
        let p = s.build("model.gguf", &b);
        let key = format!("`{key}`");
        model_error(&p, &[&key, phrase]);
    }
}

#[test]
fn missing_token_embeddings() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("missing_token_embeddings");
    b.remove_tensor("token_embd.weight");
    let p = s.build("model.gguf", &b);
    model_error(&p, &["tensor `token_embd.weight` is missing"]);
}

// ---------------------------------------------------------------------------------------------
// Weights (need kernels: the loader checks a weight's type has kernels before its shape)
// ---------------------------------------------------------------------------------------------

/// Needs kernels.
#[test]
fn weight_shape_mismatch() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("weight_shape_mismatch");
    let q8 = GgmlType::Q8_0;
    let cases: [(&str, GgmlType, &[u64], &str); 5] = [
        (
            ATTN_Q,
            q8,
            &[256, 128],
            "has shape [256, 128], expected [256, 256]",
        ),
        (
            "blk.0.ffn_down.weight",
            q8,
            &[256, 512],
            "expected [512, 256]",
        ),
        ("token_embd.weight", q8, &[128, 256], "expected [256, 256]"),
        (
            "blk.1.attn_k.weight",
            q8,
            &[256, 64, 2],
            "expected [256, 128]",
        ),
        (
            "output_norm.weight",
            GgmlType::F32,
            &[128],
            "expected [256]",
        ),
    ];
    for (name, ty, shape, phrase) in cases {
        let mut b = base.clone();
        b.retype(name, ty, shape);
        let p = s.build("model.gguf", &b);
        let name = format!("tensor `{name}`");
        model_error(&p, &[&name, phrase]);
    }
}

/// Needs kernels.
#[test]
fn missing_weight_tensor() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("missing_weight_tensor");
    for name in [
        "blk.0.ffn_down.weight",
        "blk.1.attn_v.weight",
        "blk.1.attn_norm.weight",
        "output_norm.weight",
    ] {
        let mut b = base.clone();
        b.remove_tensor(name);
        let p = s.build("model.gguf", &b);
        let phrase = format!("tensor `{name}` is missing");
        model_error(&p, &[&phrase]);
    }
}

/// Needs kernels. Q8_K is an activation format: it has no weight kernels.
#[test]
fn weight_type_without_kernels() {
    let Some(base) = llama() else { return };
    let s = Scratch::new("weight_type_without_kernels");
    for (name, shape) in [
        (ATTN_Q, &[256u64, 256][..]),
        ("token_embd.weight", &[256, 256][..]),
        ("output_norm.weight", &[256][..]),
    ] {
        let mut b = base.clone();
        b.retype(name, GgmlType::Q8_K, shape);
        let p = s.build("model.gguf", &b);
        let phrase = format!("tensor `{name}` has type Q8_K, which cannot be used as a weight");
        model_error(&p, &[&phrase]);
    }
}

/// Needs kernels. qwen2 requires q/k/v biases.
#[test]
fn qwen2_missing_bias() {
    let Some(src) = corpus("qwen2-Q4_0") else {
        return;
    };
    let s = Scratch::new("qwen2_missing_bias");
    let mut b = GgufBuilder::from_file(src);
    b.remove_tensor("blk.0.attn_q.bias");
    let p = s.build("model.gguf", &b);
    model_error(&p, &["tensor `blk.0.attn_{q,k,v}.bias` is missing"]);
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// Needs kernels (the model is loaded before the ids are checked against its vocabulary).
#[test]
fn token_id_out_of_range() {
    let Some(src) = corpus(LLAMA) else { return };
    for (tokens, id) in [
        ("1,2,256", "256"),
        ("4294967295", "4294967295"),
        ("0,1000,1", "1000"),
    ] {
        let phrase = format!("token id {id} is out of range (vocabulary has 256 tokens)");
        expect_error(&logits(&src, tokens), &[&phrase]);
    }
}

/// Needs kernels.
#[test]
fn prompt_longer_than_context() {
    let Some(mut b) = llama() else { return };
    let s = Scratch::new("prompt_longer_than_context");
    b.set("llama.context_length", Value::U32(8));
    let p = s.build("model.gguf", &b);
    let twelve = "1,2,3,4,5,6,7,8,9,10,11,12";
    expect_error(
        &logits(&p, twelve),
        &["12 tokens do not fit in the context of 8 tokens"],
    );
    expect_error(
        &logits(&p, "1,2,3,4,5,6,7,8,9"),
        &["9 tokens do not fit in the context of 8 tokens"],
    );
    expect_error(&bench(&p, 12), &["12 tokens", "context of 8"]);
    // The boundary itself is fine.
    expect_success(&logits(&p, "1,2,3,4,5,6,7,8"));
}

#[test]
fn empty_tokens() {
    let Some(src) = corpus(LLAMA) else { return };
    for tokens in ["", ",", " , ,", " "] {
        expect_error(&logits(&src, tokens), &["--tokens is empty"]);
    }
}

#[test]
fn non_numeric_token() {
    let Some(src) = corpus(LLAMA) else { return };
    for (tokens, bad) in [
        ("1,two,3", "two"),
        ("1.5", "1.5"),
        ("1,-1", "-1"),
        ("0x10", "0x10"),
        ("4294967296", "4294967296"),
        ("1;2", "1;2"),
    ] {
        let phrase = format!("`{bad}` is not a token id");
        expect_error(&logits(&src, tokens), &[&phrase]);
    }
}

/// A negative id given as its own argument (`--tokens -1`) is a bad token id too, not a usage
/// error: clap must not take it for a flag (exit code 2).
#[test]
fn negative_token_as_own_argument() {
    let Some(src) = corpus(LLAMA) else { return };
    for tokens in ["-1", "-5,2"] {
        expect_error(&logits(&src, tokens), &["is not a token id"]);
    }
}

/// The corpus models carry `tokenizer.ggml.model = none`: text cannot be tokenized.
#[test]
fn tokenize_without_tokenizer() {
    let Some(src) = corpus(LLAMA) else { return };
    expect_error(
        &tokenize(&src),
        &["has no tokenizer", "tokenizer.ggml.model = none"],
    );
}

// ---------------------------------------------------------------------------------------------
// Mixture-of-experts metadata and tensors (need kernels)
// ---------------------------------------------------------------------------------------------

/// Needs kernels. Expert counts out of range name their key; expert stacks of the wrong shape
/// name the tensor.
#[test]
fn moe_bad_expert_metadata_and_shapes() {
    let Some(base) = corpus("qwen3moe-Q8_0").map(GgufBuilder::from_file) else {
        return;
    };
    let s = Scratch::new("moe_bad_expert_metadata_and_shapes");
    let keys: [(&str, u32, &str); 3] = [
        ("qwen3moe.expert_used_count", 9, "outside [1, 8]"),
        ("qwen3moe.expert_used_count", 0, "outside [1, 8]"),
        ("qwen3moe.expert_count", 0, "outside [1, 512]"),
    ];
    for (key, v, phrase) in keys {
        let mut b = base.clone();
        b.set(key, Value::U32(v));
        let p = s.build("model.gguf", &b);
        model_error(&p, &[&format!("`{key}`"), phrase]);
    }
    let q8 = GgmlType::Q8_0;
    let tensors: [(&str, &[u64], &str); 3] = [
        (
            "blk.0.ffn_up_exps.weight",
            &[256, 64, 4],
            "expected [256, 64, 8]",
        ),
        (
            "blk.1.ffn_down_exps.weight",
            &[64, 256],
            "expected [64, 256, 8]",
        ),
        ("blk.0.ffn_gate_inp.weight", &[256, 4], "expected [256, 8]"),
    ];
    for (name, shape, phrase) in tensors {
        let mut b = base.clone();
        let ty = if name.contains("gate_inp") {
            GgmlType::F32
        } else {
            q8
        };
        b.retype(name, ty, shape);
        let p = s.build("model.gguf", &b);
        model_error(&p, &[&format!("tensor `{name}`"), phrase]);
    }
}

/// Needs kernels. gpt-oss requires its sinks and router bias.
#[test]
fn gpt_oss_missing_sinks_or_router_bias() {
    let Some(base) = corpus("gpt-oss-Q8_0").map(GgufBuilder::from_file) else {
        return;
    };
    let s = Scratch::new("gpt_oss_missing_sinks_or_router_bias");
    for name in ["blk.1.attn_sinks.weight", "blk.0.ffn_gate_inp.bias"] {
        let mut b = base.clone();
        b.remove_tensor(name);
        let p = s.build("model.gguf", &b);
        model_error(&p, &[&format!("tensor `{name}` is missing")]);
    }
}

/// Hybrid models: recurrent-layer hyper-parameters that are zero, do not divide, or disagree
/// with each other or with the tensor shapes are refused with the key (or tensor) named.
#[test]
fn hybrid_bad_recurrent_hparams() {
    let s = Scratch::new("hybrid_bad_recurrent_hparams");
    let cases: &[(&str, &str, Value, &[&str])] = &[
        (
            "qwen35-Q8_0",
            "qwen35.ssm.conv_kernel",
            Value::U32(0),
            &["`qwen35.ssm.conv_kernel`", "conv kernel width 0"],
        ),
        (
            "qwen35-Q8_0",
            "qwen35.ssm.group_count",
            Value::U32(3),
            &["`qwen35.ssm.group_count`", "3 key heads do not divide"],
        ),
        (
            "qwen35-Q8_0",
            "qwen35.ssm.group_count",
            Value::U32(0),
            &["`qwen35.ssm.group_count`", "0 is outside"],
        ),
        (
            "qwen35-Q8_0",
            "qwen35.ssm.state_size",
            Value::U32(16),
            &["`qwen35.ssm.inner_size`", "differs from ssm.state_size 16"],
        ),
        (
            "qwen3next-Q8_0",
            "qwen3next.ssm.time_step_rank",
            Value::U32(5),
            &[
                "`qwen3next.ssm.group_count`",
                "do not divide ssm.time_step_rank 5",
            ],
        ),
        (
            "lfm2-Q8_0",
            "lfm2.shortconv.l_cache",
            Value::U32(0),
            &["`lfm2.shortconv.l_cache`", "conv kernel width 0"],
        ),
        (
            "granitehybrid-Q8_0",
            "granitehybrid.ssm.conv_kernel",
            Value::U32(1),
            &["`granitehybrid.ssm.conv_kernel`", "conv kernel width 1"],
        ),
        (
            "granitehybrid-Q8_0",
            "granitehybrid.ssm.time_step_rank",
            Value::U32(3),
            &[
                "`granitehybrid.ssm.time_step_rank`",
                "3 does not divide ssm.inner_size 512",
            ],
        ),
        (
            "granitehybrid-Q8_0",
            "granitehybrid.attention.head_count_kv",
            Value::Array {
                elem_type: vt::U32,
                items: vec![Value::U32(0), Value::U32(3)],
            },
            &[
                "`granitehybrid.attention.head_count_kv`",
                "3 does not divide head_count 4",
            ],
        ),
        (
            "lfm2-Q8_0",
            "lfm2.attention.head_count_kv",
            Value::Array {
                elem_type: vt::U32,
                items: vec![Value::U32(0), Value::U32(2)],
            },
            &["lfm2.attention.head_count_kv", "2 entries for 3 layers"],
        ),
        (
            "qwen35-Q8_0",
            "qwen35.attention.recurrent_layers",
            Value::Array {
                elem_type: vt::BOOL,
                items: vec![Value::Bool(true)],
            },
            &[
                "`qwen35.attention.recurrent_layers`",
                "1 entries for 4 layers",
            ],
        ),
    ];
    for (model, key, value, phrases) in cases {
        let Some(base) = corpus(model).map(GgufBuilder::from_file) else {
            return;
        };
        let mut b = base.clone();
        b.set(key, value.clone());
        let p = s.build("model.gguf", &b);
        model_error(&p, phrases);
    }
}

/// Consistent hyper-parameters that disagree with the tensors: a shape error naming the tensor.
#[test]
fn hybrid_state_size_disagreeing_with_tensors() {
    let Some(base) = corpus("qwen35-Q8_0").map(GgufBuilder::from_file) else {
        return;
    };
    let s = Scratch::new("hybrid_state_size_disagreeing_with_tensors");
    let mut b = base.clone();
    // state 64 × 4 v-heads = inner 256: self-consistent, but attn_qkv was built for state 32.
    b.set("qwen35.ssm.state_size", Value::U32(64));
    b.set("qwen35.ssm.inner_size", Value::U32(256));
    let p = s.build("model.gguf", &b);
    model_error(
        &p,
        &["tensor `blk.0.attn_qkv.weight`", "expected [256, 512]"],
    );
}

/// A family whose forward pass does not apply YaRN must refuse a file that asks for it rather
/// than compute positions without it.
#[test]
fn yarn_scaling_on_an_architecture_without_it() {
    let Some(path) = corpus("gemma3-Q8_0") else {
        return;
    };
    let s = Scratch::new("yarn_scaling_on_an_architecture_without_it");
    let mut b = GgufBuilder::from_file(path);
    b.set("gemma3.rope.scaling.type", Value::str("yarn"));
    b.set("gemma3.rope.scaling.factor", Value::F32(4.0));
    b.set(
        "gemma3.rope.scaling.original_context_length",
        Value::U32(1024),
    );
    let p = s.build("model.gguf", &b);
    model_error(
        &p,
        &[
            "`gemma3.rope.scaling.type`",
            "YaRN scaling is not supported for gemma3",
        ],
    );
}
