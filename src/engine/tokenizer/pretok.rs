//! The BPE pre-tokenizer: splits text into words with a chain of regexes, as llama.cpp does.
//!
//! llama.cpp applies the regexes of a pre-tokenizer type one after another, each one splitting the
//! pieces the previous one produced (a piece's ends bound every match and look-ahead). A few regexes
//! have hand-written matchers there (GPT-2, llama3, and in newer versions qwen2 and qwen35); those
//! are reproduced as code here, with their exact behaviour (the unit tests check them against the
//! general path below, and all of it was checked against llama.cpp itself on ~9000 random and
//! adversarial texts per model and pre-type). Every other regex runs on a *collapsed* copy of the text
//! when it uses `\p{..}` categories: each non-ASCII code point is replaced by one placeholder
//! character for its category (whitespace by `\x0B`), and each `\p{X}` in the regex by
//! `[placeholder + the ASCII members of X]`. Regexes without categories run on the code points,
//! with non-ASCII whitespace replaced by `\x0B`. Unmatched stretches between matches are pieces
//! too. The words come out GPT-2 byte-encoded.

use super::unicode::{self, Cat, Flags};
use fancy_regex::Regex;

/// One regex of a pre-tokenizer, ready to run.
pub(crate) enum Rule {
    /// llama.cpp's custom matcher for `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// llama.cpp's custom matchers for the llama3 regex (`digits` = 3) and its qwen2 (`digits` = 1)
    /// and qwen35 (`digits` = 1, letter runs include marks) variants.
    Llama3 { digits: usize, marks: bool },
    /// A regex over the category-collapsed text.
    Collapsed(Regex),
    /// A regex over the code points (non-ASCII whitespace replaced by `\x0B`).
    Wide(Regex),
}

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX_ORIG: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What a `tokenizer.ggml.pre` value selects.
pub(crate) struct PreConfig {
    pub regexes: &'static [&'static str],
    /// If a whole word is a token, take it without merging (llama3-style vocabularies).
    pub ignore_merges: bool,
    /// Default for `add_bos` before `tokenizer.ggml.add_bos_token` overrides it.
    pub add_bos: bool,
    /// The pre-type disables the default BOS id.
    pub no_default_bos: bool,
}

const fn cfg(regexes: &'static [&'static str]) -> PreConfig {
    PreConfig {
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_default_bos: false,
    }
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value (the names llama.cpp accepts), or `None`
/// when the name is unknown or its splitter is not implemented here.
pub(crate) fn pre_config(pre: &str) -> Option<PreConfig> {
    const DEFAULT: &[&str] = &[
        r"[\p{P}\$\+<=>\^~\|]+",
        GPT2_REGEX,
        r"\p{N}+",
        r"[0-9][0-9][0-9]",
    ];
    const GPT2: &[&str] = &[GPT2_REGEX];
    const STARCODER: &[&str] = &[r"\p{N}", GPT2_REGEX];
    const LLAMA3: &[&str] = &[LLAMA3_REGEX];
    const QWEN2: &[&str] = &[QWEN2_REGEX];
    const QWEN35: &[&str] = &[QWEN35_REGEX];
    const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_REGEX, r"[0-9][0-9][0-9]"];
    const DEEPSEEK_CODER: &[&str] = &[
        "[\r\n]",
        r"\s?\p{L}+",
        r"\s?\p{P}+",
        "[一-龥ࠀ-一가-퟿]+",
        r"\p{N}",
    ];
    const DEEPSEEK3: &[&str] = &[
        r"\p{N}{1,3}",
        "[一-龥぀-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ];
    const TEKKEN: &[&str] = &[
        r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ];
    const GPT4O: &[&str] = &[
        r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ];
    const BLOOM: &[&str] = &[r" ?[^(\s|.,!?…。，、।۔،)]+"];
    const VIKING: &[&str] = &[r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"];
    const SEED_CODER: &[&str] = &[
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
    ];
    const BAILINGMOE: &[&str] = &[
        r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
    ];
    const UFAKZEKA: &[&str] =
        &[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"];
    const MINICPM5: &[&str] = &[
        r"\p{N}{1,3}",
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ];

    let c = match pre {
        // An absent pre-type means "default" in llama.cpp (with a loud warning).
        "" | "default" => cfg(DEFAULT),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreConfig {
            ignore_merges: true,
            add_bos: true,
            ..cfg(LLAMA3)
        },
        "dbrx" | "smaug-bpe" => cfg(LLAMA3),
        "glm4" | "chatglm-bpe" => PreConfig {
            no_default_bos: true,
            ..cfg(LLAMA3)
        },
        "minicpm5" => PreConfig {
            ignore_merges: true,
            ..cfg(MINICPM5)
        },
        "deepseek-coder" => cfg(DEEPSEEK_CODER),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => cfg(DEEPSEEK3),
        "falcon" => cfg(FALCON),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "mpt" | "olmo" | "jais" | "exaone4" | "trillion" | "granite-docling" => cfg(GPT2),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => cfg(STARCODER),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez" | "hunyuan"
        | "solar-open" | "grok-2" => cfg(QWEN2),
        "qwen35" => cfg(QWEN35),
        "poro-chat" | "bloom" | "gpt3-finnish" => cfg(BLOOM),
        "viking" => cfg(VIKING),
        "tekken" => PreConfig {
            ignore_merges: true,
            add_bos: true,
            ..cfg(TEKKEN)
        },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => cfg(GPT4O),
        "seed-coder" => cfg(SEED_CODER),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => cfg(BAILINGMOE),
        "ufakzeka" => cfg(UFAKZEKA),
        _ => return None,
    };
    Some(c)
}

/// The placeholder of a category in the collapsed text and regexes (llama.cpp uses the bytes
/// 0xD0..0xD5; private-use characters play that role in a Rust string).
fn placeholder(cat: Cat) -> char {
    match cat {
        Cat::Number => '\u{E0D1}',
        Cat::Letter => '\u{E0D2}',
        Cat::Punctuation => '\u{E0D3}',
        Cat::Mark => '\u{E0D4}',
        Cat::Symbol => '\u{E0D5}',
        _ => '\u{E0D0}',
    }
}

/// `\p{..}` names llama.cpp knows, with their category and ASCII members (in class syntax).
fn known_category(name: &str) -> Option<(Cat, &'static str)> {
    Some(match name {
        r"\p{N}" => (Cat::Number, "0-9"),
        r"\p{L}" | r"\p{Lu}" | r"\p{Ll}" | r"\p{Lt}" | r"\p{Lm}" | r"\p{Lo}" => {
            (Cat::Letter, "A-Za-z")
        }
        r"\p{P}" => (Cat::Punctuation, r"!-#%-*,-/:-;?-@\[-\]_\{\}"),
        r"\p{M}" => (Cat::Mark, ""),
        // `~` since llama.cpp PR #26972 (2026-08); before, ` ~` split in two.
        r"\p{S}" => (Cat::Symbol, r"\$\+<->^`\|\~"),
        _ => return None,
    })
}

fn uses_categories(expr: &str) -> bool {
    [
        r"\p{N}", r"\p{L}", r"\p{P}", r"\p{M}", r"\p{S}", r"\p{Lu}", r"\p{Ll}", r"\p{Lt}",
        r"\p{Lm}", r"\p{Lo}",
    ]
    .iter()
    .any(|k| expr.contains(k))
}

/// Rewrites a regex for the collapsed text, the way llama.cpp does (bracket tracking included).
fn collapse_regex(expr: &str) -> Result<String, String> {
    if !expr.is_ascii() {
        return Err(format!(
            "regex `{expr}` mixes Unicode categories with non-ASCII characters"
        ));
    }
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'[' && (i == 0 || b[i - 1] != b'\\') {
            out.push('[');
            inside = true;
            i += 1;
            continue;
        }
        if inside && c == b']' && b[i - 1] != b'\\' {
            out.push(']');
            inside = false;
            i += 1;
            continue;
        }
        if c == b'\\' && i + 3 < b.len() && b[i + 1] == b'p' && b[i + 2] == b'{' {
            if let Some(rel) = expr[i + 3..].find('}') {
                let close = i + 3 + rel;
                if close <= i + 10 {
                    if let Some((cat, ascii)) = known_category(&expr[i..=close]) {
                        if !inside {
                            out.push('[');
                        }
                        out.push(placeholder(cat));
                        out.push_str(ascii);
                        if !inside {
                            out.push(']');
                        }
                        i = close + 1;
                        continue;
                    }
                }
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    Ok(out)
}

impl Rule {
    pub(crate) fn new(expr: &str) -> Result<Rule, String> {
        if expr == GPT2_REGEX {
            return Ok(Rule::Gpt2);
        }
        if expr == LLAMA3_REGEX || expr == LLAMA3_REGEX_ORIG {
            return Ok(Rule::Llama3 {
                digits: 3,
                marks: false,
            });
        }
        // Newer llama.cpp matches these two with code too; the results are the regex's.
        if expr == QWEN2_REGEX {
            return Ok(Rule::Llama3 {
                digits: 1,
                marks: false,
            });
        }
        if expr == QWEN35_REGEX {
            return Ok(Rule::Llama3 {
                digits: 1,
                marks: true,
            });
        }
        let compile = |p: &str| Regex::new(p).map_err(|e| format!("regex `{expr}`: {e}"));
        if uses_categories(expr) {
            Ok(Rule::Collapsed(compile(&collapse_regex(expr)?)?))
        } else {
            Ok(Rule::Wide(compile(expr)?))
        }
    }
}

/// Splits `text` with `rules` in order and returns the GPT-2 byte-encoded words.
pub(crate) fn split(text: &str, rules: &[Rule]) -> Vec<String> {
    let cpts: Vec<char> = text.chars().collect();
    let mut lens = vec![cpts.len()];
    let mut collapsed: Option<Vec<char>> = None;
    let mut wide: Option<Vec<char>> = None;
    for rule in rules {
        let mut out = Vec::with_capacity(lens.len());
        let mut start = 0;
        for &len in &lens {
            let seg = start..start + len;
            match rule {
                Rule::Gpt2 => split_gpt2(&cpts, seg, &mut out),
                &Rule::Llama3 { digits, marks } => {
                    split_llama3(&cpts, seg, digits, marks, &mut out)
                }
                Rule::Collapsed(re) => {
                    let chars = collapsed.get_or_insert_with(|| collapse_text(&cpts));
                    split_regex(re, &chars[seg], &mut out)
                }
                Rule::Wide(re) => {
                    let chars = wide.get_or_insert_with(|| wide_text(&cpts));
                    split_regex(re, &chars[seg], &mut out)
                }
            }
            start += len;
        }
        lens = out;
    }
    let mut words = Vec::with_capacity(lens.len());
    let mut start = 0;
    for len in lens {
        let mut word = String::new();
        let mut buf = [0u8; 4];
        for &c in &cpts[start..start + len] {
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                word.push(unicode::byte_to_char(b));
            }
        }
        words.push(word);
        start += len;
    }
    words
}

fn collapse_text(cpts: &[char]) -> Vec<char> {
    cpts.iter()
        .map(|&c| {
            if c.is_ascii() {
                c
            } else if unicode::is_whitespace(c) {
                '\u{0B}'
            } else {
                placeholder(unicode::category(c))
            }
        })
        .collect()
}

fn wide_text(cpts: &[char]) -> Vec<char> {
    cpts.iter()
        .map(|&c| {
            if !c.is_ascii() && unicode::is_whitespace(c) {
                '\u{0B}'
            } else {
                c
            }
        })
        .collect()
}

/// Pieces of one segment: every match, and every unmatched stretch between them.
fn split_regex(re: &Regex, seg: &[char], out: &mut Vec<usize>) {
    if seg.is_empty() {
        return;
    }
    let s: String = seg.iter().collect();
    // Code-point index of each byte offset that starts a character (and of the end).
    let mut cp_at = vec![0usize; s.len() + 1];
    for (i, (off, _)) in s.char_indices().enumerate() {
        cp_at[off] = i;
    }
    cp_at[s.len()] = seg.len();
    let mut done = 0; // code points emitted so far
    for m in re.find_iter(&s) {
        let Ok(m) = m else {
            // The matcher gave up (backtracking limit): keep the rest as one piece.
            break;
        };
        let (a, b) = (cp_at[m.start()], cp_at[m.end()]);
        if a > done {
            out.push(a - done);
        }
        if b > a {
            out.push(b - a);
        }
        done = b.max(done);
    }
    if done < seg.len() {
        out.push(seg.len() - done);
    }
}

/// Splits `seg` of `cpts` into pieces via the hand-written matcher; `emit(end)` closes a piece.
struct Cursor<'a> {
    cpts: &'a [char],
    end: usize,
    prev: usize,
    out: &'a mut Vec<usize>,
}

impl Cursor<'_> {
    fn cpt(&self, p: usize) -> Option<char> {
        (p < self.end).then(|| self.cpts[p])
    }
    /// `None` outside the segment (llama.cpp's all-false flags).
    fn flags(&self, p: usize) -> Option<Flags> {
        self.cpt(p).map(unicode::flags)
    }
    fn emit(&mut self, end: usize) -> usize {
        let len = end - self.prev;
        if len > 0 {
            self.out.push(len);
        }
        self.prev = end;
        len
    }
}

fn letter(f: Option<Flags>) -> bool {
    f.is_some_and(Flags::is_letter)
}
fn number(f: Option<Flags>) -> bool {
    f.is_some_and(Flags::is_number)
}
fn space(f: Option<Flags>) -> bool {
    f.is_some_and(|f| f.whitespace)
}
/// Inside the segment and none of whitespace, letter, number: `[^\s\p{L}\p{N}]`.
fn other(f: Option<Flags>) -> bool {
    f.is_some_and(|f| !f.whitespace && !f.is_letter() && !f.is_number())
}

/// The contraction alternatives at `pos`; returns the piece length (0 if none). `fold` lower-cases.
fn contraction(c: &Cursor, pos: usize, fold: bool) -> usize {
    if c.cpt(pos) != Some('\'') || pos + 1 >= c.end {
        return 0;
    }
    let low = |p: usize| {
        c.cpt(p)
            .map(|ch| if fold { unicode::to_lower(ch) } else { ch })
    };
    if matches!(low(pos + 1), Some('s' | 't' | 'm' | 'd')) {
        return 2;
    }
    if pos + 2 < c.end {
        if let (Some(a), Some(b)) = (low(pos + 1), low(pos + 2)) {
            if matches!((a, b), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return 3;
            }
        }
    }
    0
}

/// Whitespace run at `pos`: (length, end just past its last `\r`/`\n`, if any).
fn whitespace_run(c: &Cursor, pos: usize) -> (usize, Option<usize>) {
    let mut n = 0;
    let mut last_nl = None;
    while space(c.flags(pos + n)) {
        if matches!(c.cpt(pos + n), Some('\r' | '\n')) {
            last_nl = Some(pos + n + 1);
        }
        n += 1;
    }
    (n, last_nl)
}

fn split_gpt2(cpts: &[char], seg: std::ops::Range<usize>, out: &mut Vec<usize>) {
    let mut c = Cursor {
        cpts,
        end: seg.end,
        prev: seg.start,
        out,
    };
    let mut pos = seg.start;
    'next: while pos < c.end {
        let n = contraction(&c, pos, false);
        if n > 0 {
            pos += c.emit(pos + n);
            continue;
        }
        let is_sp = cpts[pos] == ' ';
        let f2 = c.flags(pos + usize::from(is_sp));
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        for class in [letter as fn(Option<Flags>) -> bool, number, other] {
            if class(f2) {
                pos += usize::from(is_sp);
                while class(c.flags(pos)) {
                    pos += 1;
                }
                c.emit(pos);
                continue 'next;
            }
        }
        let (nws, _) = whitespace_run(&c, pos);
        if nws > 1 && pos + nws < c.end {
            // `\s+(?!\S)`: leave the last whitespace for the next word.
            pos += nws - 1;
        } else if nws > 0 {
            pos += nws;
        } else {
            pos += 1;
        }
        c.emit(pos);
    }
}

fn split_llama3(
    cpts: &[char],
    seg: std::ops::Range<usize>,
    digits: usize,
    marks: bool,
    out: &mut Vec<usize>,
) {
    let mut c = Cursor {
        cpts,
        end: seg.end,
        prev: seg.start,
        out,
    };
    // What a letter run consumes: `\p{L}`, or `[\p{L}\p{M}]` for qwen35.
    let word = |f: Option<Flags>| letter(f) || (marks && f.is_some_and(|f| f.cat == Cat::Mark));
    let mut pos = seg.start;
    while pos < c.end {
        let ch = cpts[pos];
        let f = unicode::flags(ch);
        let n = contraction(&c, pos, true);
        if n > 0 {
            pos += c.emit(pos + n);
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(ch == '\r' || ch == '\n' || f.is_number()) && (word(Some(f)) || word(c.flags(pos + 1)))
        {
            pos += 1;
            while word(c.flags(pos)) {
                pos += 1;
            }
            c.emit(pos);
            continue;
        }
        // `\p{N}{1,3}` (or `\p{N}`)
        if f.is_number() {
            let mut ini = pos;
            while number(c.flags(pos)) {
                pos += 1;
                if pos - ini >= digits {
                    c.emit(pos);
                    ini = pos;
                }
            }
            c.emit(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*` (the current code point is inside the segment, so llama.cpp's
        // "defined" test on it always holds)
        let f2 = if ch == ' ' { c.flags(pos + 1) } else { Some(f) };
        let stop = |f: Option<Flags>| space(f) || word(f) || number(f);
        if !stop(f2) {
            pos += usize::from(ch == ' ');
            while c.flags(pos).is_some() && !stop(c.flags(pos)) {
                pos += 1;
            }
            while matches!(c.cpt(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            c.emit(pos);
            continue;
        }
        let (nws, last_nl) = whitespace_run(&c, pos);
        if let Some(e) = last_nl {
            // `\s*[\r\n]+`
            pos = e;
        } else if nws > 1 && pos + nws < c.end {
            // `\s+(?!\S)`
            pos += nws - 1;
        } else if nws > 0 {
            // `\s+`
            pos += nws;
        } else {
            pos += 1;
        }
        c.emit(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, pre: &str) -> Vec<String> {
        let cfg = pre_config(pre).unwrap();
        let rules: Vec<Rule> = cfg.regexes.iter().map(|r| Rule::new(r).unwrap()).collect();
        split(text, &rules)
            .into_iter()
            .map(|w| {
                let bytes: Vec<u8> = w
                    .chars()
                    .map(|c| unicode::char_to_byte(c).unwrap())
                    .collect();
                String::from_utf8(bytes).unwrap()
            })
            .collect()
    }

    #[test]
    fn every_pre_type_regex_compiles() {
        for pre in [
            "default",
            "llama-bpe",
            "dbrx",
            "chatglm-bpe",
            "minicpm5",
            "deepseek-coder",
            "deepseek-v3",
            "falcon",
            "gpt-2",
            "smollm",
            "qwen2",
            "qwen35",
            "bloom",
            "viking",
            "tekken",
            "gpt-4o",
            "seed-coder",
            "bailingmoe",
            "ufakzeka",
        ] {
            let cfg = pre_config(pre).unwrap();
            for r in cfg.regexes {
                Rule::new(r).unwrap_or_else(|e| panic!("{pre}: {e}"));
            }
            // And they split arbitrary text without losing anything.
            let text = "Hello  wörld 123,456 — ‘x’ 日本語 🦀\u{200D}💻\t\r\n\n  end  ";
            assert_eq!(pieces(text, pre).concat(), text, "{pre}");
        }
        assert!(pre_config("no-such-pre").is_none());
    }

    #[test]
    fn custom_matchers_agree_with_the_regexes() {
        // The hand-written matchers must give what the regexes give (run the general way).
        let alphabet: Vec<char> =
            "aZ é日 \t\r\n\u{A0}\u{3000}'sSltTdD09٣½.,!?—🦀\u{200D}\u{301}\u{E000}\u{378}$+<|"
                .chars()
                .collect();
        let mut state = 0x9E3779B97F4A7C15u64;
        for (expr, custom) in [
            (GPT2_REGEX, Rule::new(GPT2_REGEX).unwrap()),
            (LLAMA3_REGEX, Rule::new(LLAMA3_REGEX).unwrap()),
            (QWEN2_REGEX, Rule::new(QWEN2_REGEX).unwrap()),
            (QWEN35_REGEX, Rule::new(QWEN35_REGEX).unwrap()),
        ] {
            assert!(!matches!(custom, Rule::Collapsed(_)));
            let general = Rule::Collapsed(Regex::new(&collapse_regex(expr).unwrap()).unwrap());
            for len in 0..300 {
                let text: String = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(
                    split(&text, std::slice::from_ref(&custom)),
                    split(&text, std::slice::from_ref(&general)),
                    "{expr} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn gpt2_style_splits() {
        assert_eq!(
            pieces("Hello  world's  ", "gpt-2"),
            ["Hello", " ", " world", "'s", "  "]
        );
        // smollm: digits one by one first.
        assert_eq!(pieces("a 3.14", "smollm"), ["a", " ", "3", ".", "1", "4"]);
        assert_eq!(pieces("x\n\ny", "gpt-2"), ["x", "\n", "\n", "y"]);
    }

    #[test]
    fn llama3_and_qwen2_splits() {
        assert_eq!(
            pieces("I'M 12345 ok!\n\n  x", "llama-bpe"),
            ["I", "'M", " ", "123", "45", " ok", "!\n\n", " ", " x"]
        );
        assert_eq!(
            pieces("I'M 12345 ok!\n\n  x", "qwen2"),
            ["I", "'M", " ", "1", "2", "3", "4", "5", " ok", "!\n\n", " ", " x"]
        );
    }
}
