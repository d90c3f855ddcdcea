use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    ggufd::alloc::tune_for_inference();
    let cli = ggufd::cli::Cli::parse();
    match ggufd::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
