//! `run`, `inspect`, `logits`, `tokenize`.

use super::{RunArgs, ThreadArgs};
use crate::engine::chat::{chat_prompt_tokens, Message};
use crate::engine::generate::generate;
use crate::engine::sampler::{argmax, Sampler, SamplingParams};
use crate::engine::text_stream::Utf8Stream;
use crate::engine::tokenizer::Tokenizer;
use crate::gguf::GgufFile;
use crate::model::{Batch, Logits, Model};
use anyhow::{bail, Context};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

/// Sizes the compute pool once per process.
pub fn init_threads(args: &ThreadArgs) -> anyhow::Result<usize> {
    let n = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        // The device's performance cores (all cores unless big.LITTLE).
        None => crate::kernels::threads::default_threads(),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("ggufd-compute-{i}"))
        .build_global()
        .context("cannot start the compute threads")?;
    Ok(n)
}

pub fn load_model(path: &Path) -> anyhow::Result<Model> {
    Model::load(path).with_context(|| format!("cannot load model {}", path.display()))
}

/// The tokenizer a GGUF file describes; an error if it carries no usable vocabulary.
fn tokenizer_of(file: &GgufFile) -> anyhow::Result<Tokenizer> {
    let tok = Tokenizer::from_metadata(&file.metadata)
        .with_context(|| format!("cannot build the tokenizer of {}", file.path.display()))?;
    if !tok.can_encode() {
        bail!(
            "{} has no tokenizer (tokenizer.ggml.model = none); drive it with token ids (`ggufd logits --tokens`)",
            file.path.display()
        );
    }
    Ok(tok)
}

/// The model's tokenizer, checked against the model's vocabulary. The metadata's copy of the
/// vocabulary is released once the tokenizer holds it.
pub fn load_tokenizer(model: &mut Model) -> anyhow::Result<Tokenizer> {
    let tok = tokenizer_of(&model.file)?;
    if tok.vocab_size() > model.n_vocab() {
        bail!(
            "tokenizer has {} tokens but the model's embeddings have only {} rows",
            tok.vocab_size(),
            model.n_vocab()
        );
    }
    model.release_vocabulary();
    Ok(tok)
}

fn set_context(model: &mut Model, ctx_size: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = ctx_size {
        if n == 0 || n > model.hparams.n_ctx_train {
            bail!(
                "--ctx-size {n} must be between 1 and the model's context length {}",
                model.hparams.n_ctx_train
            );
        }
        model.n_ctx = n;
    }
    Ok(())
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    init_threads(&args.threads)?;
    let mut model = load_model(&args.model)?;
    set_context(&mut model, args.ctx_size)?;
    let tok = load_tokenizer(&mut model)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        seed,
        ..SamplingParams::default()
    };
    params.validate()?;
    let prompt = if args.chat {
        let messages = [Message {
            role: "user".into(),
            content: args.prompt.clone(),
        }];
        chat_prompt_tokens(&model.file.metadata, &tok, &messages)?
    } else {
        tok.encode(&args.prompt, true, true)
    };
    if prompt.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    let mut sampler = Sampler::new(params);
    let mut text = Utf8Stream::default();
    let mut stdout = std::io::stdout().lock();
    let mut write_err = None;
    let out = generate(
        &model,
        &prompt,
        args.max_tokens,
        &mut sampler,
        &|t| tok.is_eog(t),
        |t| {
            let piece = text.push(&tok.token_bytes(t));
            match stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_err = Some(e);
                    ControlFlow::Break(())
                }
            }
        },
    )?;
    if let Some(e) = write_err {
        return Err(e).context("cannot write to stdout");
    }
    writeln!(stdout, "{}", text.finish())?;
    let gen_tps = out.tokens.len() as f64 / (out.generation_ms / 1e3).max(1e-9);
    eprintln!(
        "\nprompt: {} tokens in {:.1} ms ({:.1} t/s) | generated: {} tokens in {:.1} ms ({:.1} t/s) | finish: {:?} | seed: {seed}",
        out.prompt_tokens,
        out.prompt_ms,
        out.prompt_tokens as f64 / (out.prompt_ms / 1e3).max(1e-9),
        out.tokens.len(),
        out.generation_ms,
        gen_tps,
        out.finish,
    );
    Ok(())
}

pub fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let model = load_model(path)?;
    let card = model.card();
    if json {
        println!("{}", serde_json::to_string(&card)?);
        return Ok(());
    }
    println!("name:            {}", card.name);
    println!("architecture:    {} ({})", card.architecture, card.kind);
    println!(
        "parameters:      {} ({} active per token)",
        card.parameters, card.active_parameters
    );
    if card.experts > 0 {
        println!(
            "experts:         {} ({} used per token)",
            card.experts, card.experts_used
        );
    }
    println!("file size:       {} bytes", card.file_bytes);
    println!("context length:  {}", card.context_length);
    println!(
        "shape:           {} layers, embedding {}, {} heads / {} kv heads of {}",
        card.layers, card.embedding_length, card.heads, card.kv_heads, card.head_dim
    );
    println!(
        "layer map:       {}  (A = full attention, S = sliding window, L = Gated DeltaNet, C = short conv, M = Mamba2)",
        card.layer_map
    );
    println!(
        "vocabulary:      {} tokens, tokenizer {}",
        card.vocab_size, card.tokenizer
    );
    println!(
        "chat template:   {}",
        if card.has_chat_template { "yes" } else { "no" }
    );
    println!(
        "kv cache:        {} bytes per token of context",
        card.kv_bytes_per_token
    );
    if card.state_bytes_per_sequence > 0 {
        println!(
            "recurrent state: {} bytes per sequence (fixed)",
            card.state_bytes_per_sequence
        );
    }
    println!("bytes per component:");
    for (c, b) in &card.bytes_per_component {
        println!("  {c:<12} {b}");
    }
    println!("quant mix:");
    for (t, u) in &card.quant_mix {
        println!("  {t:<8} {:>4} tensors {:>12} bytes", u.tensors, u.bytes);
    }
    println!("{}", crate::kernels::dispatch::summary());
    Ok(())
}

fn parse_token_list(s: &str) -> anyhow::Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .with_context(|| format!("`{t}` is not a token id"))
        })
        .collect()
}

pub fn logits(
    model_path: &Path,
    tokens: &str,
    out: &Path,
    greedy: Option<usize>,
    threads: &ThreadArgs,
) -> anyhow::Result<()> {
    init_threads(threads)?;
    let ids = parse_token_list(tokens)?;
    if ids.is_empty() {
        bail!("--tokens is empty");
    }
    let model = load_model(model_path)?;
    let mut state = model.new_state();
    let logits = model.forward(&mut Batch::single(&ids, &mut state, Logits::All))?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
    if let Some(n) = greedy {
        let n_vocab = model.n_vocab();
        let mut last = logits[logits.len() - n_vocab..].to_vec();
        let mut generated = Vec::with_capacity(n);
        for step in 0..n {
            let next = argmax(&last);
            generated.push(next);
            if step + 1 < n {
                last = model.forward(&mut Batch::single(&[next], &mut state, Logits::Last))?;
            }
        }
        println!("{}", serde_json::to_string(&generated)?);
    }
    Ok(())
}

pub fn tokenize(model_path: &Path, text: &str, no_special: bool) -> anyhow::Result<()> {
    let file = GgufFile::open(model_path)?;
    let tok = tokenizer_of(&file)?;
    let special = !no_special;
    println!(
        "{}",
        serde_json::to_string(&tok.encode(text, special, special))?
    );
    Ok(())
}
