//! Typed access to GGUF key/value metadata, with errors that name the key.

use super::{GgufError, Result};
use serde_json::Value;
use std::collections::BTreeMap;

/// A metadata value as gguf-rs decodes it.
pub type MetaValue = Value;

/// The per-token arrays a tokenizer is built from.
const VOCABULARY_KEYS: [&str; 4] = [
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
];

pub struct Metadata {
    kv: Source,
}

/// Where the key/value map lives. A parsed header keeps its own map: gguf-rs only lends it
/// out, and a copy would double the peak memory of a 150k-token vocabulary (tens of MiB).
enum Source {
    Map(BTreeMap<String, Value>),
    Header(Box<gguf_rs::GGUFModel>),
}

fn kind(v: &Value) -> String {
    match v {
        // gguf-rs (through serde_json) turns a NaN or infinite float into null; say so.
        Value::Null => "a NaN or infinite float".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "integer".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => format!("array of {}", a.len()),
        Value::Object(_) => "object".into(),
    }
}

fn wrong(key: &str, expected: &'static str, v: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: kind(v),
    }
}

fn as_u32(key: &str, v: &Value) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| wrong(key, "unsigned 32-bit integer", v))
}

fn as_f32(key: &str, v: &Value) -> Result<f32> {
    v.as_f64()
        .map(|f| f as f32)
        .ok_or_else(|| wrong(key, "number", v))
}

impl Metadata {
    pub fn from_json(kv: BTreeMap<String, Value>) -> Metadata {
        Metadata {
            kv: Source::Map(kv),
        }
    }

    /// The metadata of a parsed header, kept inside it.
    pub fn from_header(header: gguf_rs::GGUFModel) -> Metadata {
        Metadata {
            kv: Source::Header(Box::new(header)),
        }
    }

    /// Drops the tokenizer's arrays (tokens, scores, token types, merges) once a tokenizer has
    /// been built from them. Decoded as JSON values they are most of a header's memory (about
    /// 50 MiB for a 262k-token vocabulary), resident for as long as the model is loaded. The
    /// other entries are kept, moved out of the header into a map of their own.
    pub fn release_vocabulary(&mut self) {
        let keep = |k: &String| !VOCABULARY_KEYS.contains(&k.as_str());
        let kept = match &mut self.kv {
            Source::Map(kv) => {
                kv.retain(|k, _| keep(k));
                return;
            }
            Source::Header(header) => header
                .metadata()
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        self.kv = Source::Map(kept);
    }

    fn map(&self) -> &BTreeMap<String, Value> {
        match &self.kv {
            Source::Map(kv) => kv,
            Source::Header(header) => header.metadata(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map().get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.map().iter()
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.map()
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn u32(&self, key: &str) -> Result<u32> {
        as_u32(key, self.require(key)?)
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get(key).map(|v| as_u32(key, v)).transpose()
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        as_f32(key, self.require(key)?)
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|v| as_f32(key, v)).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.map()
            .get(key)
            .map(|v| v.as_bool().ok_or_else(|| wrong(key, "bool", v)))
            .transpose()
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong(key, "string", v))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.map()
            .get(key)
            .map(|v| v.as_str().ok_or_else(|| wrong(key, "string", v)))
            .transpose()
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&[Value]>> {
        self.map()
            .get(key)
            .map(|v| {
                v.as_array()
                    .map(Vec::as_slice)
                    .ok_or_else(|| wrong(key, "array", v))
            })
            .transpose()
    }

    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.opt_array(key)?
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().ok_or_else(|| wrong(key, "array of strings", v)))
                    .collect()
            })
            .transpose()
    }

    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.opt_array(key)?
            .map(|a| a.iter().map(|v| as_f32(key, v)).collect())
            .transpose()
    }

    pub fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.opt_array(key)?
            .map(|a| {
                a.iter()
                    .map(|v| {
                        v.as_i64()
                            .and_then(|n| i32::try_from(n).ok())
                            .ok_or_else(|| wrong(key, "array of 32-bit integers", v))
                    })
                    .collect()
            })
            .transpose()
    }

    /// A hyper-parameter that may be one number for every layer or an array with one per layer.
    pub fn u32_per_layer(&self, key: &str, n_layer: usize) -> Result<Option<Vec<u32>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::Array(a) => {
                if a.len() != n_layer {
                    return Err(GgufError::BadValue {
                        key: key.to_string(),
                        reason: format!("has {} entries for {n_layer} layers", a.len()),
                    });
                }
                a.iter()
                    .map(|x| as_u32(key, x))
                    .collect::<Result<_>>()
                    .map(Some)
            }
            _ => Ok(Some(vec![as_u32(key, v)?; n_layer])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(v: Value) -> Metadata {
        Metadata::from_json(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn typed_access_names_the_key() {
        let m = md(json!({"a.n": 5, "a.f": 0.5, "a.s": "x", "a.arr": [1, 2], "a.neg": -1}));
        assert_eq!(m.u32("a.n").unwrap(), 5);
        assert_eq!(m.f32("a.f").unwrap(), 0.5);
        assert_eq!(m.str("a.s").unwrap(), "x");
        let e = m.u32("a.missing").unwrap_err().to_string();
        assert!(e.contains("a.missing"), "{e}");
        let e = m.u32("a.s").unwrap_err().to_string();
        assert!(e.contains("a.s") && e.contains("string"), "{e}");
        assert!(m.u32("a.neg").is_err());
        assert_eq!(m.u32_per_layer("a.n", 3).unwrap(), Some(vec![5, 5, 5]));
        assert_eq!(m.u32_per_layer("a.arr", 2).unwrap(), Some(vec![1, 2]));
        assert!(m.u32_per_layer("a.arr", 3).is_err());
    }

    #[test]
    fn releasing_the_vocabulary_keeps_everything_else() {
        let mut m = md(json!({
            "tokenizer.ggml.tokens": ["a", "b"],
            "tokenizer.ggml.scores": [0.0, 1.0],
            "tokenizer.ggml.token_type": [1, 1],
            "tokenizer.ggml.merges": ["a b"],
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.chat_template": "{{ x }}",
            "general.architecture": "llama",
        }));
        m.release_vocabulary();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "general.architecture",
                "tokenizer.chat_template",
                "tokenizer.ggml.model"
            ]
        );
    }
}
