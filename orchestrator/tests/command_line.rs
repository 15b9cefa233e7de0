//! The binary's contract at its edges: help, version, usage errors, and the global `--data`
//! option accepted before or after the subcommand.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

fn battleplan(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_battleplan"))
        .args(arguments)
        .env_remove("BATTLEPLAN_DATA")
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_2() {
    let output = battleplan(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    let output = battleplan(&["validate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("<PLAN>"));
}

#[test]
fn help_lists_the_commands() {
    let output = battleplan(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["init", "validate", "--data"] {
        assert!(
            help.contains(command),
            "{command} missing from help:\n{help}"
        );
    }
}

#[test]
fn data_is_accepted_before_or_after_the_subcommand() {
    let directory = tempfile::tempdir().unwrap();
    let plan = directory.path().join("p.toml");
    let plan = plan.to_str().unwrap();
    for arguments in [
        vec!["--data", "/nonexistent", "init", "--out", plan],
        vec!["init", "--out", plan, "--force", "--data", "/nonexistent"],
    ] {
        let output = battleplan(&arguments);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_directory_or_missing_file_is_a_user_error() {
    let directory = tempfile::tempdir().unwrap();
    let output = battleplan(&["validate", directory.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is a directory"));
    let output = battleplan(&["validate", "/nonexistent/plan.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the plan"));
}
