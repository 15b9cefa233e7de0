//! `battleplan`: the command line. Parses arguments, runs the command, and maps the outcome to
//! the exit codes the product promises: 0 ok, 2 user error (bad plan, bad input, rejected
//! command), 1 internal failure.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Customer data is the user's alone: every file and directory this process creates, sled's
    // own (`db`, `conf`, `blobs/`, `snap.*`) included, gets no permission for group or others.
    // A file a person asks for as an ordinary document (`init`'s plan) sets its mode itself.
    rustix::process::umask(rustix::fs::Mode::RWXG | rustix::fs::Mode::RWXO);
    let arguments = cli::Arguments::parse();
    match cli::run(arguments) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("battleplan: internal error: {error:#}");
            ExitCode::from(1)
        }
    }
}
