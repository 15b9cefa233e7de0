//! What the benches that drive the real binary share.

use std::path::Path;
use std::process::Command;

/// Runs `battleplan ARGS` in `dir` and gives its standard output; a failure stops the bench.
pub fn battleplan(dir: &Path, arguments: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_battleplan"))
        .args(arguments)
        .current_dir(dir)
        .env_remove("BATTLEPLAN_DATA")
        // The actor of what it records without --actor, on a machine that may not set USER.
        .env("USER", "bench")
        .output()
        .expect("battleplan runs");
    assert!(
        output.status.success(),
        "battleplan {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
