//! `battleplan`: the command line. Parses arguments, runs the command, and maps the outcome to
//! the exit codes the product promises: 0 ok, 2 user error (bad plan, bad input, rejected
//! command), 1 internal failure.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let arguments = cli::Arguments::parse();
    match cli::run(arguments) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("battleplan: internal error: {error:#}");
            ExitCode::from(1)
        }
    }
}
