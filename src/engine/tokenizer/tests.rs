use super::*;
use serde_json::{json, Value};

fn md(v: Value) -> Metadata {
    Metadata::from_json(serde_json::from_value(v).unwrap())
}

/// A tiny byte-level BPE vocabulary: the 256 byte characters, a few merges, special tokens.
fn bpe_json() -> serde_json::Map<String, Value> {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
        "<tool>".into(),
        "<x>".into(),
        "<x>y".into(),
    ];
    let mut types = vec![3, 3, 3, 4, 3, 3];
    for b in 0..=255u8 {
        tokens.push(unicode::byte_to_char(b).to_string());
        types.push(1);
    }
    for t in [
        "he", "ll", "hell", "hello", "Ġw", "Ġwo", "Ġwor", "Ġworl", "Ġworld",
    ] {
        tokens.push(t.into());
        types.push(1);
    }
    let merges = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġwo r", "Ġwor l",
    ];
    let v = json!({
        "general.architecture": "llama",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 2,
    });
    v.as_object().unwrap().clone()
}

fn bpe() -> Tokenizer {
    Tokenizer::from_metadata(&md(Value::Object(bpe_json()))).unwrap()
}

fn err_of(v: serde_json::Map<String, Value>) -> String {
    Tokenizer::from_metadata(&md(Value::Object(v)))
        .unwrap_err()
        .to_string()
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}

#[test]
fn bpe_merges_and_byte_tokens() {
    let t = bpe();
    let id = |s: &str| t.token_id(s).unwrap();
    assert_eq!(t.encode("hello", false, false), [id("hello")]);
    // "Ġworl" + "d": the merge list stops before "Ġworld".
    assert_eq!(
        t.encode("hello world", false, false),
        [id("hello"), id("Ġworl"), id("d")]
    );
    let text = "héllo\n\t wörld 🦀";
    assert_eq!(t.decode(&t.encode(text, false, false)), text);
    // gpt2 does not add BOS by default.
    assert_eq!(t.encode("he", true, true), [id("he")]);
    assert!(!t.adds_bos());
}

#[test]
fn bpe_rejects_then_accepts_missing_merges_entry() {
    let mut v = bpe_json();
    v.remove("tokenizer.ggml.merges");
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");
}

#[test]
fn special_tokens_are_parsed_only_when_asked() {
    let t = bpe();
    let text = "<|im_start|>hello<|im_end|>";
    assert_eq!(
        t.encode(text, false, true),
        [1, t.token_id("hello").unwrap(), 2]
    );
    let plain = t.encode(text, false, false);
    assert!(!plain.contains(&1) && !plain.contains(&2));
    assert_eq!(t.decode(&plain), text);
    // User-defined tokens are cut out in both modes.
    let id_tool = 3;
    assert!(t.encode("a<tool>b", false, false).contains(&id_tool));
    assert!(t.encode("a<tool>b", false, true).contains(&id_tool));
    // Longest first: "<x>y" wins over "<x>".
    assert_eq!(t.encode("<x>y", false, true), [5]);
    assert_eq!(t.encode("<x><x>y<x>", false, true), [4, 5, 4]);
    // Adjacent and repeated specials, text around them.
    let ids = t.encode("he<|im_end|><|im_end|>he", false, true);
    let he = t.token_id("he").unwrap();
    assert_eq!(ids, [he, 2, 2, he]);
}

#[test]
fn partition_keeps_text_around_specials() {
    let t = bpe();
    let text = "ab<|im_start|>cd<|im_start|><|im_end|>ef";
    let frags = t.partition(text, true);
    let shown: Vec<String> = frags
        .iter()
        .map(|f| match *f {
            Frag::Text(o, l) => text[o..o + l].to_string(),
            Frag::Token(id) => format!("#{id}"),
        })
        .collect();
    assert_eq!(shown, ["ab", "#1", "cd", "#1", "#2", "ef"]);
    assert_eq!(t.partition("", true), []);
}

#[test]
fn eog_detection() {
    let t = bpe();
    // eos (2 = <|im_end|>) and <|endoftext|> by text.
    assert!(t.is_eog(2) && t.is_eog(0));
    assert!(!t.is_eog(1) && !t.is_eog(1_000_000));
    assert_eq!((t.bos(), t.eos()), (Some(0), Some(2)));
}

#[test]
fn malformed_metadata_is_an_error_naming_the_key() {
    let mut v = bpe_json();
    v.remove("tokenizer.ggml.tokens");
    let e = err_of(v);
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("missing"),
        "{e}"
    );

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.tokens".into(), json!("not an array"));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.tokens".into(), json!([1, 2, 3]));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.bos_token_id".into(), json!(100_000));
    let e = err_of(v);
    assert!(
        e.contains("tokenizer.ggml.bos_token_id") && e.contains("100000"),
        "{e}"
    );

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.eos_token_id".into(), json!("two"));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.eos_token_id"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.model".into(), json!("klingon"));
    let e = err_of(v);
    assert!(
        e.contains("klingon") && e.contains("tokenizer.ggml.model"),
        "{e}"
    );

    let mut v = bpe_json();
    v.remove("tokenizer.ggml.model");
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.model"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.pre".into(), json!("no-such-pre"));
    let e = err_of(v);
    assert!(
        e.contains("no-such-pre") && e.contains("tokenizer.ggml.pre"),
        "{e}"
    );

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.merges".into(), json!([1, 2]));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.token_type".into(), json!([1, 1]));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.token_type"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.scores".into(), json!([0.5]));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.scores"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.tokens".into(), json!(["a", "b", "a"]));
    v.remove("tokenizer.ggml.token_type");
    v.remove("tokenizer.ggml.bos_token_id");
    v.remove("tokenizer.ggml.eos_token_id");
    let e = err_of(v);
    assert!(e.contains("duplicate"), "{e}");

    let mut v = bpe_json();
    v.insert("tokenizer.ggml.tokens".into(), json!([]));
    let e = err_of(v);
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");

    // add_bos without a BOS token (chatglm has no default BOS id; gpt2's default is 11).
    let mut v = bpe_json();
    v.remove("tokenizer.ggml.bos_token_id");
    v.insert("tokenizer.ggml.pre".into(), json!("chatglm-bpe"));
    v.insert("tokenizer.ggml.add_bos_token".into(), json!(true));
    let e = err_of(v);
    assert!(e.contains("add_bos_token"), "{e}");
}

#[test]
fn none_tokenizer_cannot_encode() {
    let t = Tokenizer::from_metadata(&md(json!({
        "general.architecture": "llama",
        "llama.vocab_size": 1000,
        "tokenizer.ggml.model": "none",
    })))
    .unwrap();
    assert!(!t.can_encode());
    assert_eq!(t.vocab_size(), 1000);
    assert_eq!(t.encode("hello", true, true), Vec::<u32>::new());
    assert_eq!(t.decode(&[1, 2, 3]), "");
    assert!(t.token_bytes(5).is_empty());
    assert_eq!((t.bos(), t.eos(), t.is_eog(0)), (None, None, false));
    let t = Tokenizer::none(77);
    assert_eq!(t.vocab_size(), 77);
    assert!(!t.can_encode());
}

/// A tiny SentencePiece vocabulary with byte fallback.
fn spm_json() -> serde_json::Map<String, Value> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("▁", -1.0f32),
        ("a", -2.0),
        ("b", -2.0),
        ("c", -2.0),
        ("ab", -3.0),
        ("bc", -1.5),
        ("▁a", -0.5),
        ("▁ab", -4.0),
        ("\n", -1.0),
    ] {
        tokens.push(t.into());
        types.push(if t == "\n" { 4 } else { 1 });
        scores.push(s);
    }
    let v = json!({
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.scores": scores,
    });
    v.as_object().unwrap().clone()
}

#[test]
fn spm_merges_by_score_with_byte_fallback() {
    let t = Tokenizer::from_metadata(&md(Value::Object(spm_json()))).unwrap();
    let id = |s: &str| t.token_id(s).unwrap();
    // Defaults: add BOS (1), add a space prefix.
    assert!(t.adds_bos());
    // "▁abc": best first pair is "▁a" (-0.5) — then "bc" (-1.5); "▁ab" never forms.
    assert_eq!(t.encode("abc", true, true), [1, id("▁a"), id("bc")]);
    assert_eq!(t.encode("abc", false, false), [id("▁a"), id("bc")]);
    // Unknown characters fall back to bytes; decode restores the text (minus the space prefix).
    let ids = t.encode("a€", false, false);
    assert_eq!(&ids[..1], &[id("▁a")]);
    assert_eq!(ids.len(), 4);
    assert_eq!(t.decode(&ids), " a€");
    // User-defined "\n" is cut out before SPM; the text after a special token gets the prefix too.
    assert_eq!(
        t.encode("a\na", false, false),
        [id("▁a"), id("\n"), id("▁a")]
    );
    assert_eq!(t.encode("", true, true), [1]);
    assert_eq!(t.encode("", false, true), Vec::<u32>::new());
    // Control token text: parsed in special mode only.
    assert_eq!(t.encode("</s>", false, true), [2]);
    assert_ne!(t.encode("</s>", false, false), [2]);
    assert!(t.is_eog(2));
}

#[test]
fn spm_space_prefix_can_be_disabled() {
    let mut v = spm_json();
    v.insert("tokenizer.ggml.add_space_prefix".into(), json!(false));
    v.insert("tokenizer.ggml.add_bos_token".into(), json!(false));
    let t = Tokenizer::from_metadata(&md(Value::Object(v))).unwrap();
    let id = |s: &str| t.token_id(s).unwrap();
    assert_eq!(t.encode("abc", true, true), [id("a"), id("bc")]);
    assert_eq!(t.encode(" abc", true, true), [id("▁a"), id("bc")]);
}

#[test]
fn encoding_arbitrary_text_never_panics() {
    let tokenizers = [
        bpe(),
        Tokenizer::from_metadata(&md(Value::Object(spm_json()))).unwrap(),
    ];
    // A deterministic pseudo-random mix of ASCII, whitespace, specials and wide characters.
    let alphabet: Vec<char> = "ab \n\t\r'sS0123456789<>|_-.,!?€日本🦀\u{200D}\u{301}\u{A0}\u{3000}\u{E000}\u{10FFFF}\u{378}"
        .chars()
        .collect();
    let mut state = 0x2545F4914F6CDD1Du64;
    for len in 0..200 {
        let mut s = String::new();
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            if state.is_multiple_of(29) {
                s.push_str("<|im_start|>");
            }
        }
        for t in &tokenizers {
            for (a, p) in [(false, false), (true, true), (true, false), (false, true)] {
                let ids = t.encode(&s, a, p);
                assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
                let _ = t.decode(&ids);
            }
        }
    }
    for t in &tokenizers {
        assert!(t.token_bytes(u32::MAX).is_empty());
    }
}
