//! `ggufd serve`: the config file, then flags on top of it, then the daemon.

use super::commands::init_threads;
use super::ThreadArgs;
use crate::server::config::{Config, ModelConfig};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file (flags override its values).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// A model to serve (repeatable; replaces the config's models). The first is the default.
    #[arg(long, short = 'm')]
    pub model: Vec<PathBuf>,
    /// `host:port` or `unix:/path` (repeatable; replaces the config's addresses).
    /// Default: 127.0.0.1:50051.
    #[arg(long, short = 'l')]
    pub listen: Vec<String>,
    /// Sequences advanced together per forward pass.
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Requests waiting per model before new ones get RESOURCE_EXHAUSTED.
    #[arg(long)]
    pub queue_depth: Option<usize>,
    /// Written with the bound addresses, one per line, once the models are loaded.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    #[command(flatten)]
    pub threads: ThreadArgs,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // journald (or any pipe) shows escape codes literally.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config_path = args.config.clone();
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !args.model.is_empty() {
        config.models = args
            .model
            .into_iter()
            .map(|path| ModelConfig {
                path,
                name: None,
                ctx_size: None,
            })
            .collect();
    }
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    if let Some(n) = args.max_batch {
        config.scheduler.max_batch = n;
    }
    if let Some(n) = args.queue_depth {
        config.scheduler.queue_depth = n;
    }
    if args.threads.threads.is_some() {
        config.threads = args.threads.threads;
    }
    config.validate()?;
    init_threads(&ThreadArgs {
        threads: config.threads,
    })?;
    tracing::info!(
        "{} compute threads; {}",
        rayon::current_num_threads(),
        crate::kernels::dispatch::summary()
    );
    crate::server::run(config, args.ready_file, config_path)
}
