//! `coordinatool-ctl`: see the library crate for the commands; this only
//! parses arguments, sets up logging and maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use coordinatool_ctl::cli::Cli;
use coordinatool_ctl::exit::{self, CtlError};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coordinatool-ctl: {e:#}");
            ExitCode::from(
                e.downcast_ref::<CtlError>()
                    .map_or(exit::FAILURE, CtlError::exit_code),
            )
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed.
            let _ = e.print();
            return Ok(ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            }));
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .try_init();
    let code = coordinatool_ctl::run_cli(&cli)?;
    Ok(ExitCode::from(code))
}
