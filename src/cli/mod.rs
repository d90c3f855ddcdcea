//! The `ggufd` command line (subcommands and flags per DESIGN.md §2).

mod bench;
mod commands;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "ggufd", version, about = "Run quantized LLMs from GGUF files")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ThreadArgs {
    /// Compute threads (default: all available cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text from a prompt, streamed to stdout; timings on stderr.
    Run(RunArgs),
    /// Print the architecture card of a GGUF model.
    Inspect {
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate token ids in one batch and write all logits (f32 LE, n_tokens × n_vocab).
    Logits {
        #[arg(long, short = 'm')]
        model: PathBuf,
        /// Comma-separated token ids.
        #[arg(long, allow_hyphen_values = true)]
        tokens: String,
        /// Output file (`/dev/null` allowed).
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Then generate N tokens greedily and print them as a JSON array.
        #[arg(long)]
        greedy: Option<usize>,
        #[command(flatten)]
        threads: ThreadArgs,
    },
    /// Print the token ids of a text as a JSON array.
    Tokenize {
        #[arg(long, short = 'm')]
        model: PathBuf,
        #[arg(long, allow_hyphen_values = true)]
        text: String,
        /// Plain text: no BOS/EOS, special-token text is not parsed.
        #[arg(long)]
        no_special: bool,
    },
    /// Measure prompt-processing and token-generation speed.
    Bench(bench::BenchArgs),
    /// Serve models over gRPC (the daemon).
    Serve(serve::ServeArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    #[arg(long, short = 'p', allow_hyphen_values = true)]
    pub prompt: String,
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: chosen at random and printed with the timings).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Wrap the prompt as a user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Context length (default: the model's training context).
    #[arg(long)]
    pub ctx_size: Option<usize>,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

/// Runs the parsed command; errors are reported by `main` without a backtrace.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Inspect { path, json } => commands::inspect(&path, json),
        Command::Logits {
            model,
            tokens,
            out,
            greedy,
            threads,
        } => commands::logits(&model, &tokens, &out, greedy, &threads),
        Command::Tokenize {
            model,
            text,
            no_special,
        } => commands::tokenize(&model, &text, no_special),
        Command::Bench(args) => bench::bench(args),
        Command::Serve(args) => serve::serve(args),
    }
}
