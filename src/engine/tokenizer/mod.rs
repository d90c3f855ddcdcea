//! Tokenizers built from GGUF metadata, reproducing llama.cpp's token ids.
//!
//! Supported `tokenizer.ggml.model` values:
//! - `"gpt2"`: byte-level BPE with `tokenizer.ggml.merges`, pre-tokenized per `tokenizer.ggml.pre`
//!   (see [`pretok`] for the supported names);
//! - `"llama"`: SentencePiece-style BPE over `tokenizer.ggml.scores` with `<0xNN>` byte fallback;
//! - `"none"` / `"no_vocab"`: no vocabulary; [`Tokenizer::can_encode`] is false.
//!
//! Encoding follows llama.cpp's `llama_tokenize`: special tokens (control, user-defined and
//! unknown-type tokens, longest text first) are cut out of the raw text before the text pieces are
//! tokenized; control and unknown tokens only when `parse_special` is set, user-defined ones always.
//! BOS/EOS are added as `tokenizer.ggml.add_bos_token` / `add_eos_token` ask, with llama.cpp's
//! per-model defaults.
//!
//! Deliberate differences from llama.cpp, all for malformed files: a BOS/EOS id outside the
//! vocabulary is an error (llama.cpp warns and falls back to a default id), and a missing byte
//! token in SPM fallback yields the unknown token (llama.cpp throws).

mod bpe;
mod merge;
mod pretok;
mod spm;
mod unicode;

use crate::gguf::{GgufError, Metadata};
use aho_corasick::AhoCorasick;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type (the message names the key).
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("tokenizer: unknown tokenizer model `{0}` (metadata key `tokenizer.ggml.model`)")]
    UnknownModel(String),
    #[error(
        "tokenizer: tokenizer model `{0}` (metadata key `tokenizer.ggml.model`) is not supported"
    )]
    UnsupportedModel(String),
    #[error("tokenizer: pre-tokenizer `{0}` (metadata key `tokenizer.ggml.pre`) is unknown or not supported")]
    UnsupportedPre(String),
    #[error("tokenizer: metadata key `{key}` is invalid: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

// Token attributes (llama.cpp's `llama_token_attr` bits).
const ATTR_UNKNOWN: u16 = 1 << 0;
const ATTR_UNUSED: u16 = 1 << 1;
const ATTR_NORMAL: u16 = 1 << 2;
const ATTR_CONTROL: u16 = 1 << 3;
const ATTR_USER_DEFINED: u16 = 1 << 4;
const ATTR_BYTE: u16 = 1 << 5;
const ATTR_LSTRIP: u16 = 1 << 7;
const ATTR_RSTRIP: u16 = 1 << 8;

/// `tokenizer.ggml.token_type` values → attributes.
fn attr_of_type(t: i32) -> u16 {
    match t {
        1 => ATTR_NORMAL,
        2 => ATTR_UNKNOWN,
        3 => ATTR_CONTROL,
        4 => ATTR_USER_DEFINED,
        5 => ATTR_UNUSED,
        6 => ATTR_BYTE,
        _ => 0, // undefined
    }
}

/// The vocabulary: texts, attributes, scores and the text → id map.
pub(crate) struct Vocab {
    texts: Vec<String>,
    attrs: Vec<u16>,
    scores: Vec<f32>,
    ids: HashMap<Box<str>, u32>,
    /// SPM byte fallback: the token for each byte.
    bytes: Vec<Option<u32>>,
}

impl Vocab {
    pub(crate) fn lookup(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
    pub(crate) fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }
    pub(crate) fn byte_token(&self, b: u8) -> Option<u32> {
        self.bytes.get(b as usize).copied().flatten()
    }
    fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }
}

enum Kind {
    None,
    Bpe(bpe::Bpe),
    Spm,
}

/// A tokenizer for one model.
pub struct Tokenizer {
    kind: Kind,
    vocab: Vocab,
    n_vocab: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first (ties: lower id first).
    specials: Vec<u32>,
    /// Finds which special tokens occur in a text at all (pattern i = `specials[i]`).
    special_finder: Option<AhoCorasick>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::None => "none",
            Kind::Bpe(_) => "bpe",
            Kind::Spm => "spm",
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("n_vocab", &self.n_vocab)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish()
    }
}

/// A piece of the input during special-token partitioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frag {
    /// A byte range of the raw text.
    Text(usize, usize),
    Token(u32),
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";

/// Special-token ids as llama.cpp tracks them.
#[derive(Default, Clone, Copy)]
struct SpecialIds {
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    fim_pre: Option<u32>,
    fim_suf: Option<u32>,
    fim_mid: Option<u32>,
    fim_pad: Option<u32>,
    fim_rep: Option<u32>,
    fim_sep: Option<u32>,
}

impl Tokenizer {
    /// A tokenizer without a vocabulary (`tokenizer.ggml.model = "none"`): it cannot encode, and
    /// decodes to nothing.
    pub fn none(vocab_size: usize) -> Tokenizer {
        Tokenizer {
            kind: Kind::None,
            vocab: Vocab {
                texts: Vec::new(),
                attrs: Vec::new(),
                scores: Vec::new(),
                ids: HashMap::new(),
                bytes: Vec::new(),
            },
            n_vocab: vocab_size,
            bos: None,
            eos: None,
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            eog: BTreeSet::new(),
            specials: Vec::new(),
            special_finder: None,
        }
    }

    /// Builds the tokenizer described by the `tokenizer.ggml.*` metadata.
    ///
    /// For `"none"` the vocabulary size is `{general.architecture}.vocab_size` (0 if absent); use
    /// [`Tokenizer::none`] to give it from elsewhere (e.g. the output tensor).
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let model = md.str(KEY_MODEL)?;
        let pre = md.opt_str(KEY_PRE)?.unwrap_or("");
        let is_spm = match model {
            "none" | "no_vocab" => {
                let n = match md.opt_str("general.architecture")? {
                    Some(arch) => md.opt_u32(&format!("{arch}.vocab_size"))?.unwrap_or(0),
                    None => 0,
                };
                return Ok(Tokenizer::none(n as usize));
            }
            "llama" => true,
            "gpt2" => false,
            "bert" | "t5" | "rwkv" | "plamo2" | "gemma4" | "hybriddna" | "whitespace" => {
                return Err(TokenizerError::UnsupportedModel(model.to_string()))
            }
            _ => return Err(TokenizerError::UnknownModel(model.to_string())),
        };

        // Defaults per model type (and pre-type), before the metadata overrides them.
        let pre_cfg = if is_spm {
            None
        } else {
            Some(
                pretok::pre_config(pre)
                    .ok_or_else(|| TokenizerError::UnsupportedPre(pre.to_string()))?,
            )
        };
        let (mut ids, mut add_bos, mut add_space_prefix) = if is_spm {
            let ids = SpecialIds {
                bos: Some(1),
                eos: Some(2),
                ..Default::default()
            };
            (ids, true, true)
        } else {
            let cfg = pre_cfg.as_ref().expect("BPE has a pre-tokenizer config");
            let ids = SpecialIds {
                bos: if cfg.no_default_bos { None } else { Some(11) },
                eos: Some(11),
                ..Default::default()
            };
            (ids, cfg.add_bos, false)
        };
        let mut add_eos = false;
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        let vocab = load_vocab(md)?;
        let n = vocab.texts.len();
        let mut vocab = vocab;

        // Special ids: defaults outside the vocabulary are disabled; metadata ids must be inside.
        let fix_default = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        ids.bos = fix_default(ids.bos);
        ids.eos = fix_default(ids.eos);
        let read =
            |key: &str, slot: &mut Option<u32>, strict: bool| -> Result<(), TokenizerError> {
                if let Some(v) = md.opt_u32(key)? {
                    if (v as usize) < n {
                        *slot = Some(v);
                    } else if strict {
                        return Err(invalid(
                            key,
                            format!("token id {v} is outside the vocabulary of {n} tokens"),
                        ));
                    }
                    // else: llama.cpp warns and keeps the default.
                }
                Ok(())
            };
        read(KEY_BOS, &mut ids.bos, true)?;
        read(KEY_EOS, &mut ids.eos, true)?;
        read("tokenizer.ggml.eot_token_id", &mut ids.eot, false)?;
        read("tokenizer.ggml.eom_token_id", &mut ids.eom, false)?;
        read("tokenizer.ggml.fim_pre_token_id", &mut ids.fim_pre, false)?;
        read("tokenizer.ggml.fim_suf_token_id", &mut ids.fim_suf, false)?;
        read("tokenizer.ggml.fim_mid_token_id", &mut ids.fim_mid, false)?;
        read("tokenizer.ggml.fim_pad_token_id", &mut ids.fim_pad, false)?;
        read("tokenizer.ggml.fim_rep_token_id", &mut ids.fim_rep, false)?;
        read("tokenizer.ggml.fim_sep_token_id", &mut ids.fim_sep, false)?;
        // Deprecated names of the FIM ids.
        read("tokenizer.ggml.prefix_token_id", &mut ids.fim_pre, false)?;
        read("tokenizer.ggml.suffix_token_id", &mut ids.fim_suf, false)?;
        read("tokenizer.ggml.middle_token_id", &mut ids.fim_mid, false)?;
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if add_bos && ids.bos.is_none() {
            return Err(invalid(
                "tokenizer.ggml.add_bos_token",
                format!("is true, but `{KEY_BOS}` is not set"),
            ));
        }
        if add_eos && ids.eos.is_none() {
            return Err(invalid(
                "tokenizer.ggml.add_eos_token",
                format!("is true, but `{KEY_EOS}` is not set"),
            ));
        }

        let eog = detect_special_tokens(&mut vocab, &mut ids);
        apply_model_attrs(md, &mut vocab)?;

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| vocab.attr(id) & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0)
            .collect();
        specials.sort_by(|&a, &b| {
            vocab.texts[b as usize]
                .len()
                .cmp(&vocab.texts[a as usize].len())
                .then(a.cmp(&b))
        });
        let special_finder = if specials.is_empty() {
            None
        } else {
            let pats: Vec<&str> = specials
                .iter()
                .map(|&id| vocab.texts[id as usize].as_str())
                .collect();
            Some(AhoCorasick::new(pats).map_err(|e| {
                invalid(KEY_TOKENS, format!("cannot index the special tokens: {e}"))
            })?)
        };

        let kind = if is_spm {
            Kind::Spm
        } else {
            let cfg = pre_cfg.expect("BPE has a pre-tokenizer config");
            let merges = md
                .opt_str_array(KEY_MERGES)?
                .ok_or_else(|| GgufError::MissingKey(KEY_MERGES.to_string()))?;
            let rules = cfg
                .regexes
                .iter()
                .map(|r| pretok::Rule::new(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(KEY_PRE, e))?;
            Kind::Bpe(bpe::Bpe::new(&merges, rules, cfg.ignore_merges))
        };

        Ok(Tokenizer {
            kind,
            vocab,
            n_vocab: n,
            bos: ids.bos,
            eos: ids.eos,
            add_bos,
            add_eos,
            add_space_prefix: is_spm && add_space_prefix,
            eog,
            specials,
            special_finder,
        })
    }

    /// False for a tokenizer without vocabulary ("none"); then [`Tokenizer::encode`] returns
    /// nothing and callers must report that the model cannot tokenize text.
    pub fn can_encode(&self) -> bool {
        !matches!(self.kind, Kind::None)
    }

    /// Token ids of `text`, as `llama_tokenize(text, add_special, parse_special)` gives them.
    ///
    /// `add_special`: add BOS/EOS as the metadata asks. `parse_special`: treat the text of control
    /// tokens (like `<|im_start|>`) as those tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if !self.can_encode() {
            return out;
        }
        let frags = self.partition(text, parse_special);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.kind {
            Kind::None => {}
            Kind::Spm => {
                let mut prev_special = true; // a leading text piece gets the space prefix
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(off, len) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for ch in text[off..off + len].chars() {
                                buf.push(if ch == ' ' { '▁' } else { ch });
                            }
                            spm::tokenize(&self.vocab, &buf, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Kind::Bpe(bpe) => {
                for f in frags {
                    match f {
                        Frag::Text(off, len) => {
                            bpe.tokenize(&self.vocab, &text[off..off + len], &mut out)
                        }
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Cuts special tokens out of `text` (llama.cpp's `tokenizer_st_partition`).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Frag::Text(0, text.len()));
        let Some(finder) = &self.special_finder else {
            return frags;
        };
        // Only tokens that occur somewhere in the text can split it.
        let mut present = vec![false; self.specials.len()];
        match finder.try_find_overlapping_iter(text) {
            Ok(matches) => {
                for m in matches {
                    present[m.pattern().as_usize()] = true;
                }
            }
            // Cannot happen with the default (standard) automaton; be exhaustive anyway.
            Err(_) => present.fill(true),
        }
        let raw = text.as_bytes();
        for (i, &id) in self.specials.iter().enumerate() {
            if !present[i] {
                continue;
            }
            let attr = self.vocab.attr(id);
            if !parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let pat = self.vocab.texts[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Frag::Text(off, len) = f else {
                    next.push(f);
                    continue;
                };
                let end = off + len;
                let mut base = off;
                while let Some(rel) = text[base..end].find(pat) {
                    let m = base + rel;
                    let mut left = m - base;
                    if attr & ATTR_LSTRIP != 0 {
                        while left > 0 && is_c_space(raw[base + left - 1]) {
                            left -= 1;
                        }
                    }
                    if left > 0 {
                        next.push(Frag::Text(base, left));
                    }
                    next.push(Frag::Token(id));
                    base = m + pat.len();
                    if attr & ATTR_RSTRIP != 0 {
                        while base < end && is_c_space(raw[base]) {
                            base += 1;
                        }
                    }
                    if base >= end {
                        break;
                    }
                }
                if base < end {
                    next.push(Frag::Text(base, end - base));
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes of one token's text, as llama.cpp's `token_to_piece(.., special = true)` gives
    /// them (control tokens render their text). May be a partial UTF-8 sequence; empty for ids
    /// outside the vocabulary and for unused tokens.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(text) = self.vocab.texts.get(id as usize) else {
            return Vec::new();
        };
        let attr = self.vocab.attr(id);
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if attr & ATTR_NORMAL != 0 {
            return match self.kind {
                Kind::Bpe(_) => {
                    let mut out = Vec::with_capacity(text.len());
                    let mut buf = [0u8; 4];
                    for ch in text.chars() {
                        match unicode::char_to_byte(ch) {
                            Some(b) => out.push(b),
                            None => {
                                // llama.cpp's marker for a character outside the byte alphabet.
                                out.extend_from_slice(b"[UNK_BYTE_0x");
                                for b in ch.encode_utf8(&mut buf).bytes() {
                                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                                }
                                out.extend_from_slice(text.as_bytes());
                                out.push(b']');
                            }
                        }
                    }
                    out
                }
                _ => text.replace('▁', " ").into_bytes(),
            };
        }
        if attr & ATTR_BYTE != 0 {
            return vec![parse_byte_token(text)];
        }
        Vec::new()
    }

    /// The text of `ids`: their bytes concatenated, decoded as UTF-8 (invalid sequences replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn vocab_size(&self) -> usize {
        self.n_vocab
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// End-of-generation tokens: eos, eot, eom, FIM pad/repo/sep, and tokens whose text llama.cpp
    /// recognises as ending a turn (`<|im_end|>`, `<end_of_turn>`, `<|endoftext|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The raw vocabulary text of a token.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.lookup(text)
    }

    /// Whether a token is a control token (rendered only in special mode by llama.cpp).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & ATTR_CONTROL != 0
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The byte of a `<0xNN>` token (llama.cpp parses the two characters after `<0x` as hex).
fn parse_byte_token(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..5).unwrap_or(&[]);
    let mut v = 0u8;
    for &d in digits {
        let Some(x) = (d as char).to_digit(16) else {
            break;
        };
        v = v.wrapping_mul(16).wrapping_add(x as u8);
    }
    v
}

fn load_vocab(md: &Metadata) -> Result<Vocab, TokenizerError> {
    let tokens = md
        .opt_str_array(KEY_TOKENS)?
        .ok_or_else(|| GgufError::MissingKey(KEY_TOKENS.to_string()))?;
    let n = tokens.len();
    if n == 0 {
        return Err(invalid(KEY_TOKENS, "the vocabulary is empty"));
    }
    if u32::try_from(n).is_err() {
        return Err(invalid(
            KEY_TOKENS,
            format!("{n} tokens do not fit 32-bit ids"),
        ));
    }
    let scores = match md.opt_f32_array(KEY_SCORES)? {
        Some(s) if s.len() < n => {
            return Err(invalid(
                KEY_SCORES,
                format!("has {} entries for {n} tokens", s.len()),
            ))
        }
        Some(s) => s,
        None => vec![0.0; n],
    };
    let attrs: Vec<u16> = match md.opt_i32_array(KEY_TYPES)? {
        Some(t) if t.len() < n => {
            return Err(invalid(
                KEY_TYPES,
                format!("has {} entries for {n} tokens", t.len()),
            ))
        }
        Some(t) => t[..n].iter().map(|&t| attr_of_type(t)).collect(),
        None => vec![ATTR_NORMAL; n],
    };
    let mut texts = Vec::with_capacity(n);
    let mut ids = HashMap::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        let text = if t.is_empty() {
            format!("[EMPTY_{i}]")
        } else {
            (*t).to_string()
        };
        if let Some(prev) = ids.insert(Box::from(text.as_str()), i as u32) {
            return Err(invalid(
                KEY_TOKENS,
                format!("duplicate token {text:?} at ids {prev} and {i}"),
            ));
        }
        texts.push(text);
    }
    let mut v = Vocab {
        texts,
        attrs,
        scores: scores[..n].to_vec(),
        ids,
        bytes: Vec::new(),
    };
    v.bytes = (0..=255u8)
        .map(|b| {
            v.lookup(&format!("<0x{b:02X}>"))
                .or_else(|| std::str::from_utf8(&[b]).ok().and_then(|s| v.lookup(s)))
        })
        .collect();
    Ok(v)
}

/// llama.cpp's text-based detection of EOT/EOM/FIM/EOG tokens (which also marks them as control
/// tokens). Returns the end-of-generation set.
fn detect_special_tokens(v: &mut Vocab, ids: &mut SpecialIds) -> BTreeSet<u32> {
    const EOT: &[&str] = &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "<｜end▁of▁sentence｜>",
        "<end_of_utterance>",
    ];
    const EOM: &[&str] = &["<|eom_id|>"];
    const FIM_PRE: &[&str] = &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ];
    const FIM_SUF: &[&str] = &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ];
    const FIM_MID: &[&str] = &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ];
    const FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
    const FIM_REP: &[&str] = &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ];
    const FIM_SEP: &[&str] = &["<|file_sep|>"];
    const EOG: &[&str] = &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<｜end▁of▁sentence｜>",
        "[e~[",
    ];

    // llama.cpp walks a hash map, so which of several candidates wins is unspecified there;
    // here the lowest id does.
    let n = v.texts.len() as u32;
    for (slot, names) in [
        (&mut ids.eot, EOT),
        (&mut ids.eom, EOM),
        (&mut ids.fim_pre, FIM_PRE),
        (&mut ids.fim_suf, FIM_SUF),
        (&mut ids.fim_mid, FIM_MID),
        (&mut ids.fim_pad, FIM_PAD),
        (&mut ids.fim_rep, FIM_REP),
        (&mut ids.fim_sep, FIM_SEP),
    ] {
        if slot.is_none() {
            if let Some(id) = (0..n).find(|&id| names.contains(&v.texts[id as usize].as_str())) {
                *slot = Some(id);
                v.attrs[id as usize] |= ATTR_CONTROL;
            }
        }
    }

    let mut eog = BTreeSet::new();
    eog.extend(ids.fim_pad);
    eog.extend(ids.fim_rep);
    eog.extend(ids.fim_sep);
    for id in 0..n {
        if EOG.contains(&v.texts[id as usize].as_str()) {
            eog.insert(id);
            v.attrs[id as usize] |= ATTR_CONTROL;
        }
    }
    // gpt-oss: these are always rendered.
    for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(id) = v.lookup(name) {
            v.attrs[id as usize] = ATTR_USER_DEFINED;
        }
    }
    eog.extend(ids.eos);
    eog.extend(ids.eot);
    eog.extend(ids.eom);

    // o200k_harmony / solar-open: `<|end|>` does not end generation there.
    let has = |eog: &BTreeSet<u32>, name: &str| eog.iter().any(|&id| v.texts[id as usize] == name);
    let has_end = has(&eog, "<|end|>");
    let has_call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
    if has_end && has_call && (has(&eog, "<|return|>") || has(&eog, "<|flush|>")) {
        if let Some(&end) = eog.iter().find(|&&id| v.texts[id as usize] == "<|end|>") {
            eog.remove(&end);
            v.attrs[end as usize] = ATTR_USER_DEFINED;
        }
    }
    // gemma4 / paddleocr: `</s>` is not an end-of-generation token next to `<|tool_response>`.
    if has(&eog, "<|tool_response>") {
        if let Some(&s) = eog.iter().find(|&&id| v.texts[id as usize] == "</s>") {
            eog.remove(&s);
            v.attrs[s as usize] = ATTR_NORMAL;
        }
    }
    eog
}

/// Per-model token attributes llama.cpp sets by name (lstrip/rstrip).
fn apply_model_attrs(md: &Metadata, v: &mut Vocab) -> Result<(), TokenizerError> {
    let name = md
        .opt_str("general.name")?
        .unwrap_or("")
        .to_ascii_lowercase();
    let pre = md.opt_str(KEY_PRE)?.unwrap_or("");
    let arch = md.opt_str("general.architecture")?.unwrap_or("");
    let set = |v: &mut Vocab, text: &str, attr: u16, on: bool| {
        if let Some(id) = v.lookup(text) {
            let a = &mut v.attrs[id as usize];
            *a = if on { *a | attr } else { *a & !attr };
        }
    };
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
        .iter()
        .any(|p| pre.contains(p))
        || ["nomic-bert-moe", "jina-bert-v3"]
            .iter()
            .any(|a| arch.contains(a))
    {
        set(v, "<mask>", ATTR_LSTRIP, true);
    } else if name.contains("phi-3") || name.contains("phi3") {
        for a in v.attrs.iter_mut() {
            if *a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0 {
                *a |= ATTR_RSTRIP;
            }
        }
        set(v, "</s>", ATTR_RSTRIP, true);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set(v, t, ATTR_RSTRIP, false);
        }
    } else if name.contains("modern-bert") {
        set(v, "[MASK]", ATTR_LSTRIP, true);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
