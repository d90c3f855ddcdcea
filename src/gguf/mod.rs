//! GGUF files: the header is parsed with gguf-rs from a buffered reader, the file is mapped with
//! memmap2, and tensors are handed out as validated, zero-copy views into the map.
//!
//! Every offset, size and shape is checked (with checked arithmetic) against the file length when the
//! file is opened, so later reads through a [`TensorData`] cannot go out of bounds.

mod header_scan;
mod metadata;
mod types;

pub use metadata::{MetaValue, Metadata};
pub use types::GgmlType;

use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    // The io error is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot open {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a GGUF file ({reason})")]
    NotGguf { path: PathBuf, reason: String },
    #[error("{path}: malformed GGUF header: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: GGUF version {version} is not supported (only versions 2 and 3){note}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        note: &'static str,
    },
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    #[error("metadata key `{key}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("metadata key `{key}` has an invalid value: {reason}")]
    BadValue { key: String, reason: String },
    #[error("tensor `{name}` has unsupported type id {id}")]
    UnsupportedTensorType { name: String, id: u32 },
    #[error("tensor `{name}` is invalid: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

pub type Result<T> = std::result::Result<T, GgufError>;

/// Where one tensor lives in the file, validated against the file length.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// ggml order: `shape[0]` is the contiguous dimension (the row length).
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        // Cannot overflow: checked when the file was opened.
        self.shape.iter().product()
    }

    pub fn n_bytes(&self) -> usize {
        self.range.len()
    }
}

/// A zero-copy view of one tensor's bytes; it keeps the map alive.
#[derive(Clone)]
pub struct TensorData {
    pub name: String,
    pub ty: GgmlType,
    pub shape: Vec<usize>,
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TensorData({} {} {:?})", self.name, self.ty, self.shape)
    }
}

impl TensorData {
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }

    /// Length of a row (the contiguous dimension).
    pub fn row_len(&self) -> usize {
        self.shape[0]
    }

    /// Number of rows: the product of every dimension but the first.
    pub fn n_rows(&self) -> usize {
        self.shape[1..].iter().product()
    }

    pub fn row_bytes(&self) -> usize {
        // Validated at open: the row length is a whole number of blocks.
        self.ty.row_bytes(self.shape[0]).unwrap_or(0)
    }

    pub fn row(&self, i: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes()[i * rb..(i + 1) * rb]
    }

    /// Fails unless the shape is exactly `expected` (trailing 1s are ignored on both sides).
    pub fn expect_shape(&self, expected: &[usize]) -> Result<()> {
        fn trim(s: &[usize]) -> &[usize] {
            let mut n = s.len();
            while n > 1 && s[n - 1] == 1 {
                n -= 1;
            }
            &s[..n]
        }
        if trim(&self.shape) == trim(expected) {
            Ok(())
        } else {
            Err(GgufError::ShapeMismatch {
                name: self.name.clone(),
                expected: expected.to_vec(),
                found: self.shape.clone(),
            })
        }
    }
}

/// An opened GGUF file: metadata in memory, tensor data mapped (not read).
pub struct GgufFile {
    pub path: PathBuf,
    pub version: String,
    pub metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    map: Arc<Mmap>,
}

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const MAX_DIMS: usize = 4;

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let io_err = |err| GgufError::Io {
            path: path.clone(),
            err,
        };
        let file = File::open(&path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut reader = BufReader::new(file.try_clone().map_err(io_err)?);
        let mut magic = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut magic) {
            // Not an EOF (e.g. EISDIR for a directory): report the real cause, not the length.
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                return Err(io_err(e));
            }
            return Err(GgufError::NotGguf {
                path,
                reason: format!("file is only {file_len} bytes"),
            });
        }
        if &magic != GGUF_MAGIC {
            return Err(GgufError::NotGguf {
                path,
                reason: format!("magic is {magic:02x?}, expected \"GGUF\" (little-endian)"),
            });
        }
        // SAFETY: the map is read-only and private. Like every mmap-based model loader we assume the
        // file is not truncated or rewritten while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        if map.len() as u64 != file_len {
            return Err(GgufError::Malformed {
                path,
                reason: "file changed size while it was opened".into(),
            });
        }
        // Bounds every declared count and length by the file size before gguf-rs sees them (it
        // would allocate declared string lengths up front); see header_scan.rs.
        header_scan::scan(&path, &map)?;
        let header = parse_header(reader).map_err(|reason| GgufError::Malformed {
            path: path.clone(),
            reason,
        })?;
        let data_offset = header.data_offset();
        let alignment = header.alignment();
        let mut tensors = Vec::with_capacity(header.tensors().len());
        let mut by_name = HashMap::new();
        for t in header.tensors() {
            let info = validate_tensor(t, data_offset, alignment, file_len)?;
            if by_name.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::BadTensor {
                    name: info.name,
                    reason: "appears twice in the file".into(),
                });
            }
            tensors.push(info);
        }
        Ok(GgufFile {
            path,
            version: header.get_version(),
            metadata: Metadata::from_header(header),
            tensors,
            by_name,
            map: Arc::new(map),
        })
    }

    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// Locks the whole mapping in RAM (mlock(2)): every page is read now and never paged out.
    /// Unlocked when the map goes away. Fails with ENOMEM / EPERM / EAGAIN when RLIMIT_MEMLOCK
    /// (or the machine's free memory) is too small.
    pub fn lock_in_memory(&self) -> std::io::Result<()> {
        self.map.lock()
    }

    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn tensor(&self, name: &str) -> Result<TensorData> {
        self.opt_tensor(name)?
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    pub fn opt_tensor(&self, name: &str) -> Result<Option<TensorData>> {
        Ok(self.by_name.get(name).map(|&i| {
            let info = &self.tensors[i];
            TensorData {
                name: info.name.clone(),
                ty: info.ty,
                shape: info.shape.clone(),
                map: self.map.clone(),
                range: info.range.clone(),
            }
        }))
    }
}

/// Runs gguf-rs over the header. Its parser can panic on some malformed inputs (e.g. an
/// `unreachable!` for type id 40), so a panic is turned into an error here: a bad file must never
/// take the process down.
fn parse_header(reader: BufReader<File>) -> std::result::Result<gguf_rs::GGUFModel, String> {
    let outcome = crate::panic_guard::catch_quietly(move || {
        gguf_rs::GGUFContainer::new(gguf_rs::ByteOrder::LE, Box::new(reader), u64::MAX).decode()
    });
    match outcome {
        Ok(Ok(model)) => Ok(model),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(msg) => Err(format!("parser rejected the file ({msg})")),
    }
}

fn validate_tensor(
    t: &gguf_rs::Tensor,
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<TensorInfo> {
    let bad = |reason: String| GgufError::BadTensor {
        name: t.name.clone(),
        reason,
    };
    let ty = GgmlType::from_id(t.kind).ok_or_else(|| GgufError::UnsupportedTensorType {
        name: t.name.clone(),
        id: t.kind,
    })?;
    if t.shape.is_empty() || t.shape.len() > MAX_DIMS {
        return Err(bad(format!("has {} dimensions", t.shape.len())));
    }
    let mut shape = Vec::with_capacity(t.shape.len());
    for &d in &t.shape {
        let d = usize::try_from(d)
            .ok()
            .filter(|&d| d > 0)
            .ok_or_else(|| bad(format!("has invalid dimension {d}")))?;
        shape.push(d);
    }
    let row_bytes = ty.row_bytes(shape[0]).ok_or_else(|| {
        bad(format!(
            "row length {} is not a multiple of the {} block size {}",
            shape[0],
            ty,
            ty.block_size()
        ))
    })?;
    let n_bytes = shape[1..]
        .iter()
        .try_fold(row_bytes, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("size of shape {shape:?} overflows")))?;
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("element count of shape {shape:?} overflows")))?;
    if !t.offset.is_multiple_of(alignment) {
        return Err(bad(format!(
            "offset {} is not aligned to {alignment}",
            t.offset
        )));
    }
    let start = data_offset
        .checked_add(t.offset)
        .ok_or_else(|| bad("offset overflows".into()))?;
    let end = start
        .checked_add(n_bytes as u64)
        .filter(|&end| end <= file_len)
        .ok_or_else(|| {
            bad(format!(
                "data [{start}, {start}+{n_bytes}) lies beyond the end of the file ({file_len} bytes)"
            ))
        })?;
    Ok(TensorInfo {
        name: t.name.clone(),
        ty,
        shape,
        range: start as usize..end as usize,
    })
}
