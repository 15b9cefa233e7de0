//! `battleplan demo` as a new user meets it: the README's first command, a run in a temporary
//! directory, a readable report, and a data directory the auditor's commands then answer from.

// Tests report failure by panicking.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use battleplan_tests::{binary, ok, run_in};

#[test]
fn the_readmes_first_command_is_the_demo() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let first = readme
        .lines()
        .find(|line| line.starts_with("cargo "))
        .unwrap_or_else(|| panic!("no command in the README"));
    assert_eq!(first, "cargo run -q --bin battleplan -- demo");
}

#[test]
fn the_demo_runs_in_a_temporary_directory_and_leaves_a_log_to_question() {
    // Given a temporary directory of its own (TMPDIR), and no data directory anywhere,
    let scratch = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .arg("demo")
        .current_dir(here.path())
        .env("TMPDIR", scratch.path())
        .env_remove("BATTLEPLAN_DATA")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // when the demo runs, then it succeeds and says where it works,
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Rehearsing the September festival"),
        "{stderr}"
    );
    // the report has each part a promo manager reads,
    for part in [
        "Scenario: september-festival",
        "Timeline (Asia/Shanghai):",
        "entered prep, on time",
        "entered warm-up, on time",
        "entered burst",
        "entered review",
        "Reminders to staff, per role:",
        "Messages to customers, per local day:",
        "paid",
        "CNY",
        "Not sent, per reach-out and reason:",
        "fatigue",
        "== funnel at",
        "repurchase",
        "gmv",
        "not measured",
    ] {
        assert!(
            stdout.contains(part),
            "no `{part}` in the report:\n{stdout}"
        );
    }
    // and it ends by naming the data directory, inside the temporary one, and what to ask it.
    let closing = stdout
        .lines()
        .find(|line| line.starts_with("The log ("))
        .unwrap_or_else(|| panic!("no closing lines:\n{stdout}"));
    let data = closing
        .split(" is in ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(". Ask it what happened:"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no data directory in `{closing}`"));
    assert!(
        data.starts_with(scratch.path()),
        "{} is not under {}",
        data.display(),
        scratch.path().display()
    );
    assert!(stdout.contains("history sept-festival-2026"), "{stdout}");
    assert!(
        here.path().read_dir().unwrap().next().is_none(),
        "the current directory was written to"
    );

    // The commands it suggests answer from that directory.
    let data = data.to_str().unwrap();
    let history = ok(run_in(
        here.path(),
        &["--data", data, "history", "sept-festival-2026"],
    ));
    assert!(
        history.stdout.contains("entered burst"),
        "{}",
        history.stdout
    );
    let verified = ok(run_in(here.path(), &["--data", data, "audit", "verify"]));
    assert!(!verified.stdout.contains("damaged"), "{}", verified.stdout);
    let explained = ok(run_in(
        here.path(),
        &["--data", data, "explain", "sept-festival-2026", "c-000042"],
    ));
    assert!(
        explained.stdout.contains("c-000042"),
        "{}",
        explained.stdout
    );
}
