//! Helpers for the workspace-level tests: find the `battleplan` binary that `cargo test
//! --workspace` builds, and run it in a scratch directory.

// This crate exists only to support tests: a panic is how it reports a broken setup.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `battleplan` binary of this build (same target directory and profile as the running test).
pub fn binary() -> PathBuf {
    let current = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test binary> -> target/<profile>/battleplan
    let profile_directory = current
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let binary = profile_directory.join(format!("battleplan{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        binary.display()
    );
    binary
}

/// A finished run of the binary: exit code and what it printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `battleplan ARGS` in `directory`, with no data directory set from outside.
pub fn run_in(directory: &Path, arguments: &[&str]) -> Run {
    let output = Command::new(binary())
        .args(arguments)
        .current_dir(directory)
        .env_remove("BATTLEPLAN_DATA")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|error| panic!("cannot start battleplan: {error}"));
    Run::from_output(output)
}

/// Replaces each `from` with its `to`, insisting that `from` occurs exactly once so that a case
/// cannot silently stop applying when the base text changes.
pub fn mutate(base: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = base.to_string();
    for (from, to) in replacements {
        let count = text.matches(from).count();
        assert_eq!(
            count, 1,
            "`{from}` occurs {count} times in the base plan, expected once"
        );
        text = text.replacen(from, to, 1);
    }
    text
}
