//! `battleplan`: the command line. Parses arguments, runs the command, and maps the outcome to
//! the exit codes the product promises: 0 ok, 2 user error (bad plan, bad input, rejected
//! command), 1 internal failure.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the log is read as millions of small short-lived values
/// (each event's strings, each customer's record), and glibc's arenas spent a fifth of an export
/// in `malloc` and `free` and kept what a daemon's catch-up freed (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // sled 0.34 panics on some damage in its files; the store catches it and says which
    // position it was reading (`guarded`), so sled's own words would only be noise.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_sled = info
            .location()
            .is_some_and(|location| location.file().contains("/sled-0.34"));
        if !in_sled {
            default(info);
        }
    }));
    // Customer data is the user's alone: every file and directory this process creates, sled's
    // own (`db`, `conf`, `blobs/`, `snap.*`) included, gets no permission for group or others.
    // A file a person asks for as an ordinary document (`init`'s plan) sets its mode itself.
    rustix::process::umask(rustix::fs::Mode::RWXG | rustix::fs::Mode::RWXO);
    let arguments = battleplan_orchestrator::fronts::cli::Arguments::parse();
    match battleplan_orchestrator::fronts::cli::run(arguments) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("battleplan: internal error: {error:#}");
            ExitCode::from(1)
        }
    }
}
