//! `ggufd bench`: prompt-processing and token-generation speed, like llama-bench.
//!
//! pp: one forward pass over a `-p`-token prompt on a fresh state. tg: `-n` tokens decoded one at
//! a time from an empty context. Each is repeated `--reps` times after one warm-up run; the
//! median is reported.

use super::commands::{init_threads, load_model};
use super::ThreadArgs;
use crate::model::{Batch, Logits, Model};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Prompt tokens (0 skips the pp test).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 128)]
    pub n_prompt: usize,
    /// Generated tokens (0 skips the tg test).
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    pub n_gen: usize,
    #[arg(long, short = 'r', default_value_t = 3)]
    pub reps: usize,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

#[derive(Serialize)]
struct BenchReport {
    model: String,
    architecture: String,
    file_bytes: u64,
    threads: usize,
    pp_tokens: usize,
    pp_tps: f64,
    tg_tokens: usize,
    tg_tps: f64,
    peak_rss_bytes: u64,
    /// The kernels the dispatcher selected for this CPU.
    kernels: String,
}

/// Token ids for synthetic prompts: deterministic and spread over the vocabulary.
fn synthetic_tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 1) % n_vocab) as u32).collect()
}

fn time_pp(model: &Model, tokens: &[u32]) -> anyhow::Result<f64> {
    let mut state = model.new_state();
    let t = Instant::now();
    model.forward(&mut Batch::single(tokens, &mut state, Logits::Last))?;
    Ok(t.elapsed().as_secs_f64())
}

fn time_tg(model: &Model, tokens: &[u32]) -> anyhow::Result<f64> {
    let mut state = model.new_state();
    let t = Instant::now();
    for tok in tokens {
        model.forward(&mut Batch::single(
            std::slice::from_ref(tok),
            &mut state,
            Logits::Last,
        ))?;
    }
    Ok(t.elapsed().as_secs_f64())
}

fn median_tps(
    n_tokens: usize,
    reps: usize,
    mut once: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<f64> {
    if n_tokens == 0 {
        return Ok(0.0);
    }
    once()?; // warm-up: faults in the weights, sizes the caches
    let mut tps = (0..reps)
        .map(|_| once().map(|s| n_tokens as f64 / s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tps.sort_by(f64::total_cmp);
    Ok(tps[tps.len() / 2])
}

/// Peak resident set size of this process (VmHWM), 0 if unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.reps == 0 {
        anyhow::bail!("--reps must be at least 1");
    }
    let threads = init_threads(&args.threads)?;
    let mut model = load_model(&args.model)?;
    // No tokenizer here, but the daemon and `run` hold none of the vocabulary's metadata either.
    model.release_vocabulary();
    let needed = args.n_prompt.max(args.n_gen);
    if needed > model.n_ctx {
        anyhow::bail!(
            "-p/-n of {needed} tokens exceed the model's context of {}",
            model.n_ctx
        );
    }
    let pp_tokens = synthetic_tokens(args.n_prompt, model.n_vocab());
    let tg_tokens = synthetic_tokens(args.n_gen, model.n_vocab());
    let pp_tps = median_tps(args.n_prompt, args.reps, || time_pp(&model, &pp_tokens))?;
    let tg_tps = median_tps(args.n_gen, args.reps, || time_tg(&model, &tg_tokens))?;
    let card = model.card();
    let report = BenchReport {
        model: card.name,
        architecture: card.architecture,
        file_bytes: card.file_bytes,
        threads,
        pp_tokens: args.n_prompt,
        pp_tps,
        tg_tokens: args.n_gen,
        tg_tps,
        peak_rss_bytes: peak_rss_bytes(),
        kernels: crate::kernels::dispatch::summary(),
    };
    eprintln!("{}", report.kernels);
    println!(
        "{} ({}), {} threads: pp{} {:.1} t/s | tg{} {:.1} t/s | peak RSS {:.1} MiB",
        report.model,
        report.architecture,
        threads,
        report.pp_tokens,
        report.pp_tps,
        report.tg_tokens,
        report.tg_tps,
        report.peak_rss_bytes as f64 / (1 << 20) as f64
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
