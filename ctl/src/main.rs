//! `fluxctl`: parses the command line, runs it, prints errors as
//! `fluxctl: error: …` on stderr, and exits with the documented status.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = fluxctl::Cli::parse();
    match fluxctl::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!(
                "fluxctl: error: {}",
                fluxctl::clean_error(&failure.to_string())
            );
            ExitCode::from(failure.exit)
        }
    }
}
