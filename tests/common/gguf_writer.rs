//! A small GGUF v3 writer for tests: rebuild a valid file from an existing one, change it, and
//! (with the low-level knobs) write deliberately corrupt headers.
//!
//! Layout written (little-endian): magic `GGUF`, u32 version, u64 n_tensors, u64 n_kv, the
//! key/value pairs (u64 length + key bytes, u32 value type, value; an array is u32 element type,
//! u64 count, elements), the tensor infos (name, u32 n_dims, u64 dims[n_dims], u32 type, u64
//! offset relative to the data section), padding to `general.alignment` (default 32), the data.
#![allow(dead_code)] // each test binary uses a different subset

use ggufd::gguf::{GgmlType, GgufFile};
use serde_json::Value as Json;
use std::path::Path;

/// GGUF metadata value type ids.
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// A metadata value as it will be encoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Elements must all have the type `elem_type`.
    Array {
        elem_type: u32,
        items: Vec<Value>,
    },
    /// A string whose length field says `declared_len` but whose bytes are `bytes`.
    BadStr {
        declared_len: u64,
        bytes: Vec<u8>,
    },
    /// An array whose count field says `declared_len` but whose encoded elements are `items`.
    BadArray {
        elem_type: u32,
        declared_len: u64,
        items: Vec<Value>,
    },
    /// Any value type id followed by raw bytes (e.g. an unknown type id).
    Raw {
        type_id: u32,
        bytes: Vec<u8>,
    },
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.to_string())
    }

    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => vt::U8,
            Value::I8(_) => vt::I8,
            Value::U16(_) => vt::U16,
            Value::I16(_) => vt::I16,
            Value::U32(_) => vt::U32,
            Value::I32(_) => vt::I32,
            Value::F32(_) => vt::F32,
            Value::Bool(_) => vt::BOOL,
            Value::Str(_) | Value::BadStr { .. } => vt::STRING,
            Value::U64(_) => vt::U64,
            Value::I64(_) => vt::I64,
            Value::F64(_) => vt::F64,
            Value::Array { .. } | Value::BadArray { .. } => vt::ARRAY,
            Value::Raw { type_id, .. } => *type_id,
        }
    }

    /// The value gguf-rs decoded (a serde_json value), with the narrowest GGUF type that holds it:
    /// integers as u32 when they fit, else u64 / i64; floats as f32. Arrays take the type of their
    /// first element (u32 widened to u64/i64 if any element needs it).
    pub fn from_json(v: &Json) -> Value {
        match v {
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) => Value::Str(s.clone()),
            Json::Number(n) => {
                if let Some(u) = n.as_u64() {
                    match u32::try_from(u) {
                        Ok(u) => Value::U32(u),
                        Err(_) => Value::U64(u),
                    }
                } else if let Some(i) = n.as_i64() {
                    Value::I64(i)
                } else {
                    Value::F32(n.as_f64().unwrap_or(f64::NAN) as f32)
                }
            }
            Json::Array(a) => {
                let mut items: Vec<Value> = a.iter().map(Value::from_json).collect();
                let any = |t: u32| items.iter().any(|v| v.type_id() == t);
                let elem_type = if items.is_empty() {
                    vt::U32
                } else if any(vt::STRING) {
                    vt::STRING
                } else if any(vt::F32) {
                    vt::F32
                } else if any(vt::I64) {
                    vt::I64
                } else if any(vt::U64) {
                    vt::U64
                } else {
                    items[0].type_id()
                };
                for it in &mut items {
                    *it = match (elem_type, it.clone()) {
                        (vt::U64, Value::U32(x)) => Value::U64(x as u64),
                        (vt::I64, Value::U32(x)) => Value::I64(x as i64),
                        (vt::I64, Value::U64(x)) => Value::I64(x as i64),
                        (vt::F32, Value::U32(x)) => Value::F32(x as f32),
                        (vt::F32, Value::U64(x)) => Value::F32(x as f32),
                        (vt::F32, Value::I64(x)) => Value::F32(x as f32),
                        (_, v) => v,
                    };
                }
                Value::Array { elem_type, items }
            }
            Json::Null | Json::Object(_) => panic!("GGUF metadata cannot hold {v}"),
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.extend(x.to_le_bytes()),
            Value::U16(x) => out.extend(x.to_le_bytes()),
            Value::I16(x) => out.extend(x.to_le_bytes()),
            Value::U32(x) => out.extend(x.to_le_bytes()),
            Value::I32(x) => out.extend(x.to_le_bytes()),
            Value::F32(x) => out.extend(x.to_le_bytes()),
            Value::Bool(x) => out.push(*x as u8),
            Value::Str(s) => put_str(out, s.as_bytes()),
            Value::U64(x) => out.extend(x.to_le_bytes()),
            Value::I64(x) => out.extend(x.to_le_bytes()),
            Value::F64(x) => out.extend(x.to_le_bytes()),
            Value::Array { elem_type, items } => {
                encode_array(out, *elem_type, items.len() as u64, items)
            }
            Value::BadStr {
                declared_len,
                bytes,
            } => {
                out.extend(declared_len.to_le_bytes());
                out.extend(bytes);
            }
            Value::BadArray {
                elem_type,
                declared_len,
                items,
            } => encode_array(out, *elem_type, *declared_len, items),
            Value::Raw { bytes, .. } => out.extend(bytes),
        }
    }
}

fn encode_array(out: &mut Vec<u8>, elem_type: u32, count: u64, items: &[Value]) {
    out.extend(elem_type.to_le_bytes());
    out.extend(count.to_le_bytes());
    for it in items {
        assert_eq!(it.type_id(), elem_type, "array element {it:?}");
        it.encode_payload(out);
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
}

/// One tensor: its info fields and its bytes.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    /// GGML type id (need not be a known type).
    pub ty: u32,
    /// ggml order: `shape[0]` is the row length.
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
    /// Written instead of the computed (aligned) offset; the data is still placed where the
    /// computed offset says.
    pub offset_override: Option<u64>,
    /// Written instead of `shape.len()`; `shape` is still written in full.
    pub n_dims_override: Option<u32>,
    /// Written instead of the name's length; the name's bytes are still written.
    pub name_len_override: Option<u64>,
}

impl Tensor {
    pub fn new(name: &str, ty: GgmlType, shape: &[u64], data: Vec<u8>) -> Tensor {
        Tensor {
            name: name.to_string(),
            ty: ty.id(),
            shape: shape.to_vec(),
            data,
            offset_override: None,
            n_dims_override: None,
            name_len_override: None,
        }
    }

    /// Bytes a tensor of this type and shape occupies (panics for an unknown type or a partial block).
    pub fn expected_bytes(ty: GgmlType, shape: &[u64]) -> usize {
        let row = ty.row_bytes(shape[0] as usize).expect("whole blocks");
        shape[1..].iter().fold(row, |acc, &d| acc * d as usize)
    }
}

/// A GGUF file under construction.
#[derive(Clone, Debug)]
pub struct GgufBuilder {
    pub version: u32,
    /// Key/value pairs in file order.
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
    /// Written instead of `tensors.len()`.
    pub n_tensors_override: Option<u64>,
    /// Written instead of `kv.len()`.
    pub n_kv_override: Option<u64>,
    /// Raw bytes written after the key/value pairs, before the tensor infos (e.g. a hand-made
    /// corrupt pair; count it with `n_kv_override`).
    pub extra_kv_bytes: Vec<u8>,
}

/// Where the sections of an encoded file start.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// First key/value pair (after magic, version and the two counts).
    pub kv_start: usize,
    pub tensor_infos_start: usize,
    /// End of the tensor infos, before the padding.
    pub tensor_infos_end: usize,
    /// Start of the data section (aligned).
    pub data_start: usize,
    pub file_len: usize,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        GgufBuilder {
            version: 3,
            kv: Vec::new(),
            tensors: Vec::new(),
            n_tensors_override: None,
            n_kv_override: None,
            extra_kv_bytes: Vec::new(),
        }
    }
}

impl GgufBuilder {
    pub fn new() -> GgufBuilder {
        GgufBuilder::default()
    }

    /// Reads a valid GGUF file through ggufd's own loader.
    pub fn from_file(path: impl AsRef<Path>) -> GgufBuilder {
        let path = path.as_ref();
        let f = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kv = f
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_json(v)))
            .collect();
        let tensors = f
            .tensor_infos()
            .iter()
            .map(|t| {
                let data = f.tensor(&t.name).expect("listed tensor").bytes().to_vec();
                let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
                Tensor::new(&t.name, t.ty, &shape, data)
            })
            .collect();
        GgufBuilder {
            kv,
            tensors,
            ..GgufBuilder::default()
        }
    }

    // ---- metadata ----

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` (in place if present, else appended).
    pub fn set(&mut self, key: &str, v: Value) -> &mut Self {
        match self.kv.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = v,
            None => self.kv.push((key.to_string(), v)),
        }
        self
    }

    /// Appends `key` even if it is already present (a duplicate key).
    pub fn push_kv(&mut self, key: &str, v: Value) -> &mut Self {
        self.kv.push((key.to_string(), v));
        self
    }

    /// Removes `key`; panics if it was not there (so a test cannot silently test nothing).
    pub fn remove(&mut self, key: &str) -> &mut Self {
        let n = self.kv.len();
        self.kv.retain(|(k, _)| k != key);
        assert!(self.kv.len() < n, "no key `{key}` to remove");
        self
    }

    // ---- tensors ----

    pub fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor `{name}`"))
    }

    pub fn tensor_mut(&mut self, name: &str) -> &mut Tensor {
        self.tensors
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor `{name}`"))
    }

    pub fn set_shape(&mut self, name: &str, shape: &[u64]) -> &mut Self {
        self.tensor_mut(name).shape = shape.to_vec();
        self
    }

    pub fn set_type(&mut self, name: &str, ty: u32) -> &mut Self {
        self.tensor_mut(name).ty = ty;
        self
    }

    pub fn set_data(&mut self, name: &str, data: Vec<u8>) -> &mut Self {
        self.tensor_mut(name).data = data;
        self
    }

    /// Gives `name` a new type and shape with zeroed data of the matching size.
    pub fn retype(&mut self, name: &str, ty: GgmlType, shape: &[u64]) -> &mut Self {
        let t = self.tensor_mut(name);
        t.ty = ty.id();
        t.shape = shape.to_vec();
        t.data = vec![0u8; Tensor::expected_bytes(ty, shape)];
        self
    }

    pub fn add_tensor(&mut self, t: Tensor) -> &mut Self {
        self.tensors.push(t);
        self
    }

    /// Removes `name`; panics if it was not there.
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        let n = self.tensors.len();
        self.tensors.retain(|t| t.name != name);
        assert!(self.tensors.len() < n, "no tensor `{name}` to remove");
        self
    }

    // ---- encoding ----

    /// `general.alignment` if it is an integer, else the GGUF default of 32.
    pub fn alignment(&self) -> u64 {
        match self.get("general.alignment") {
            Some(Value::U8(a)) => *a as u64,
            Some(Value::U16(a)) => *a as u64,
            Some(Value::U32(a)) => *a as u64,
            Some(Value::U64(a)) => *a,
            _ => 32,
        }
        .max(1)
    }

    /// Computed offset of each tensor's data, relative to the data section.
    pub fn data_offsets(&self) -> Vec<u64> {
        let align = self.alignment();
        let mut off = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let o = off;
                off = (o + t.data.len() as u64).div_ceil(align) * align;
                o
            })
            .collect()
    }

    /// Absolute file offsets of the sections.
    pub fn layout(&self) -> Layout {
        let (header, mut layout) = self.header_and_layout();
        layout.data_start = header.len();
        layout.file_len = self.to_bytes().len();
        layout
    }

    /// Everything up to and including the padding before the data section.
    fn header_bytes(&self) -> Vec<u8> {
        self.header_and_layout().0
    }

    fn header_and_layout(&self) -> (Vec<u8>, Layout) {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(
            self.n_tensors_override
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        out.extend(
            self.n_kv_override
                .unwrap_or(self.kv.len() as u64)
                .to_le_bytes(),
        );
        let kv_start = out.len();
        for (k, v) in &self.kv {
            put_str(&mut out, k.as_bytes());
            out.extend(v.type_id().to_le_bytes());
            v.encode_payload(&mut out);
        }
        out.extend(&self.extra_kv_bytes);
        let tensor_infos_start = out.len();
        for (t, off) in self.tensors.iter().zip(self.data_offsets()) {
            out.extend(
                t.name_len_override
                    .unwrap_or(t.name.len() as u64)
                    .to_le_bytes(),
            );
            out.extend(t.name.as_bytes());
            out.extend(
                t.n_dims_override
                    .unwrap_or(t.shape.len() as u32)
                    .to_le_bytes(),
            );
            for d in &t.shape {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend(t.offset_override.unwrap_or(off).to_le_bytes());
        }
        let tensor_infos_end = out.len();
        let align = self.alignment() as usize;
        out.resize(out.len().div_ceil(align) * align, 0);
        let layout = Layout {
            kv_start,
            tensor_infos_start,
            tensor_infos_end,
            data_start: out.len(),
            file_len: 0,
        };
        (out, layout)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header_bytes();
        let start = out.len();
        for (t, off) in self.tensors.iter().zip(self.data_offsets()) {
            out.resize(start + off as usize, 0);
            out.extend(&t.data);
        }
        let align = self.alignment() as usize;
        let end = (out.len() - start).div_ceil(align) * align;
        out.resize(start + end, 0);
        out
    }

    pub fn write(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
