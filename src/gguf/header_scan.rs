//! A structural pass over the GGUF header, run on the mapped bytes before gguf-rs parses them.
//!
//! Why it exists: gguf-rs trusts declared sizes. It allocates a string's declared length (up to
//! its 1 GiB cap) before reading a byte of it, so a 40-byte file can make it allocate 1 GiB (an
//! abort under a memory limit); it reports every truncation as "failed to fill whole buffer"; it
//! accepts GGUF v1 (obsolete, with another layout); it panics on tensor type id 40; and it keeps
//! the last of duplicate keys without a word. This pass checks every count and length against
//! the bytes actually left in the file, allocates nothing in proportion to a declared size,
//! rejects unknown value and tensor types and duplicate keys, and names the key or tensor at
//! fault. It does not interpret values: gguf-rs still does that.

use super::{GgmlType, GgufError, MAX_DIMS};
use std::collections::HashSet;
use std::path::Path;

/// Smallest encodings, to bound declared counts by the bytes left: a key/value pair is at least
/// a key length, a value type and a one-byte value; a tensor info at least a name length, a
/// dimension count, a type and an offset.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Longest key or tensor name quoted in a message.
const MAX_QUOTED: usize = 120;

/// Checks the header structure of `buf` (the whole file; the magic is already checked).
pub(super) fn scan(path: &Path, buf: &[u8]) -> Result<(), GgufError> {
    let malformed = |reason: String| GgufError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let mut c = Cursor { buf, pos: 4 };
    let version = c.u32(&|| "the version".into()).map_err(malformed)?;
    if version != 2 && version != 3 {
        let note = if version == 1 {
            " (GGUF v1 is obsolete; re-convert the model)"
        } else if (1..=3).contains(&version.swap_bytes()) {
            " (this looks like a big-endian file, which is not supported)"
        } else {
            ""
        };
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            note,
        });
    }
    let n_tensors = c.u64(&|| "the tensor count".into()).map_err(malformed)?;
    let n_kv = c.u64(&|| "the metadata count".into()).map_err(malformed)?;
    let left = c.remaining();
    if n_kv.checked_mul(MIN_KV_BYTES).is_none_or(|n| n > left) {
        return Err(malformed(format!(
            "header declares {n_kv} metadata entries, more than the {left} bytes left in the file can hold (truncated or corrupt file)"
        )));
    }
    if n_tensors
        .checked_mul(MIN_TENSOR_INFO_BYTES)
        .is_none_or(|n| n > left)
    {
        return Err(malformed(format!(
            "header declares {n_tensors} tensors, more than the {left} bytes left in the file can hold (truncated or corrupt file)"
        )));
    }
    // gguf-rs keeps the last of duplicate keys silently; like llama.cpp, refuse the ambiguity.
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let raw_key = c
            .string(&|| format!("the key of metadata entry #{i}"))
            .map_err(malformed)?;
        let key = quote(raw_key);
        if !keys.insert(raw_key) {
            return Err(malformed(format!("key `{key}` appears twice")));
        }
        let ty = c
            .u32(&|| format!("the value type of key `{key}`"))
            .map_err(malformed)?;
        c.value(ty, &key).map_err(malformed)?;
    }
    for i in 0..n_tensors {
        let name = c
            .string(&|| format!("the name of tensor #{i}"))
            .map_err(malformed)?;
        let name = quote(name);
        let n_dims = c
            .u32(&|| format!("the dimension count of tensor `{name}`"))
            .map_err(malformed)?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadTensor {
                name,
                reason: format!("has {n_dims} dimensions (at most {MAX_DIMS} are supported)"),
            });
        }
        c.take(8 * n_dims as u64, &|| {
            format!("the shape of tensor `{name}`")
        })
        .map_err(malformed)?;
        let id = c
            .u32(&|| format!("the type of tensor `{name}`"))
            .map_err(malformed)?;
        if GgmlType::from_id(id).is_none() {
            return Err(GgufError::UnsupportedTensorType { name, id });
        }
        c.take(8, &|| format!("the data offset of tensor `{name}`"))
            .map_err(malformed)?;
    }
    Ok(())
}

fn quote(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.into_owned(),
    }
}

/// Size of a scalar metadata value type, or `None` for strings, arrays and unknown ids.
fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

const STRING: u32 = 8;
const ARRAY: u32 = 9;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {} needs {n} bytes at offset {}, but the file ends at {}",
                what(),
                self.pos,
                self.buf.len()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-prefixed string; the declared length must fit in the rest of the file.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], String> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > self.remaining() {
            return Err(format!(
                "{}: string length {len} exceeds the {} bytes left in the file (truncated or corrupt file)",
                what(),
                self.remaining()
            ));
        }
        self.take(len, what)
    }

    fn value(&mut self, ty: u32, key: &str) -> Result<(), String> {
        let what = || format!("the value of key `{key}`");
        if let Some(n) = scalar_size(ty) {
            return self.take(n, &what).map(drop);
        }
        match ty {
            STRING => self.string(&what).map(drop),
            ARRAY => {
                let elem = self.u32(&|| format!("the element type of array `{key}`"))?;
                let count = self.u64(&|| format!("the length of array `{key}`"))?;
                let left = self.remaining();
                let (elem_bytes, kind) = match (scalar_size(elem), elem) {
                    (Some(n), _) => (n, "values"),
                    (None, STRING) => (8, "strings"),
                    (None, ARRAY) => {
                        return Err(format!(
                            "key `{key}` is an array of arrays, which GGUF does not allow"
                        ))
                    }
                    (None, other) => {
                        return Err(format!("array `{key}` has unknown element type {other}"))
                    }
                };
                if count.checked_mul(elem_bytes).is_none_or(|n| n > left) {
                    return Err(format!(
                        "array `{key}` declares {count} {kind}, more than the {left} bytes left in the file can hold (truncated or corrupt file)"
                    ));
                }
                if elem == STRING {
                    for i in 0..count {
                        self.string(&|| format!("element {i} of array `{key}`"))?;
                    }
                } else {
                    self.take(count * elem_bytes, &what)?;
                }
                Ok(())
            }
            other => Err(format!("key `{key}` has unknown value type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    fn push_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    fn err(buf: &[u8]) -> String {
        scan(Path::new("f"), buf).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_well_formed_header() {
        let mut b = header(3, 1, 2);
        push_str(&mut b, "general.architecture");
        b.extend(STRING.to_le_bytes());
        push_str(&mut b, "llama");
        push_str(&mut b, "tokenizer.ggml.tokens");
        b.extend(ARRAY.to_le_bytes());
        b.extend(STRING.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        push_str(&mut b, "a");
        push_str(&mut b, "bc");
        push_str(&mut b, "t");
        b.extend(2u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        scan(Path::new("f"), &b).unwrap();
    }

    #[test]
    fn rejects_declared_sizes_beyond_the_file() {
        let e = err(&header(3, 1 << 60, 0));
        assert!(e.contains("1152921504606846976 tensors"), "{e}");
        let e = err(&header(3, 0, u64::MAX));
        assert!(e.contains("metadata entries"), "{e}");
        let mut b = header(3, 0, 1);
        push_str(&mut b, "general.name");
        b.extend(STRING.to_le_bytes());
        b.extend((1u64 << 30).to_le_bytes());
        b.extend(b"abc");
        let e = err(&b);
        assert!(
            e.contains("general.name") && e.contains("string length 1073741824"),
            "{e}"
        );
        let mut b = header(3, 0, 1);
        push_str(&mut b, "x.arr");
        b.extend(ARRAY.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend((1u64 << 62).to_le_bytes());
        b.extend([0u8; 16]);
        let e = err(&b);
        assert!(
            e.contains("x.arr") && e.contains("4611686018427387904 values"),
            "{e}"
        );
    }

    #[test]
    fn rejects_versions_and_types() {
        assert!(err(&header(1, 0, 0)).contains("version 1"));
        assert!(err(&header(3u32.swap_bytes(), 0, 0)).contains("big-endian"));
        let mut b = header(3, 1, 0);
        push_str(&mut b, "t");
        b.extend(1u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(40u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        let e = err(&b);
        assert!(
            e.contains("`t`") && e.contains("unsupported type id 40"),
            "{e}"
        );
    }
}
