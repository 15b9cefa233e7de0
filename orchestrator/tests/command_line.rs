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

#[test]
fn a_bad_scenario_is_refused_with_its_place_and_nothing_is_written() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let base = "name = \"bad\"\ndemonstrates = \"nothing\"\n[plan]\nfile = \"example\"\napply_at = \"2026-08-01T00:00:00+08:00\"\n[run]\nfrom = \"2026-08-18T00:00:00+08:00\"\nuntil = \"2026-08-20T00:00:00+08:00\"\n";
    let cases = [
        // An unknown key, with its line and column.
        (format!("{base}speed = 3\n"), "bad.toml:9:1: unknown field `speed`"),
        // Two inputs in one entry.
        (
            format!("{base}[[at]]\ninstant = \"2026-08-19T00:00:00+08:00\"\npause = {{ actor = \"a\", reason = \"r\" }}\ncapture = [\"status\"]\n"),
            "at[0]",
        ),
        // A plan edit whose text is not in the plan.
        (
            base.replace("file = \"example\"\n", "file = \"example\"\nedits = [{ from = \"no such text\", to = \"x\" }]\n"),
            "`no such text` occurs 0 times",
        ),
        // An answer to a reach-out the plan does not have.
        (
            format!("{base}[[at]]\ninstant = \"2026-08-19T00:00:00+08:00\"\noutcomes = {{ kind = \"replied\", reach_out = \"warm-up-recal\", share = 0.5 }}\n"),
            "at[0] (2026-08-18T16:00:00+00:00): outcomes: the plan has no reach-out `warm-up-recal`",
        ),
        // An order amount that is not money.
        (
            format!("{base}[[at]]\ninstant = \"2026-08-19T00:00:00+08:00\"\noutcomes = {{ kind = \"ordered\", reach_out = \"warm-up-recall\", share = 0.5, amount = \"lots\" }}\n"),
            "amount `lots`",
        ),
        // A revision whose text is not in the plan, found before anything runs.
        (
            format!("{base}[[at]]\ninstant = \"2026-08-19T00:00:00+08:00\"\nrevise = {{ actor = \"a\", edits = [{{ from = \"nowhere\", to = \"x\" }}] }}\n"),
            "at[0] (2026-08-18T16:00:00+00:00): revise: edit 0: `nowhere` occurs 0 times",
        ),
        // A capture the orchestrator refuses part way: what was written is removed.
        (
            format!("{base}[[at]]\ninstant = \"2026-08-19T12:00:00+08:00\"\ncapture = [\"explain:c-999999\"]\n"),
            "explain:c-999999 at 2026-08-19 12:00 +08:00:",
        ),
        // A customers file that does not exist.
        (
            format!("{base}[customers]\nfile = \"missing.csv\"\nimport_at = \"2026-08-18T00:00:00+08:00\"\n"),
            "missing.csv is not a file",
        ),
    ];
    for (n, (text, expected)) in cases.iter().enumerate() {
        std::fs::write(dir.join("bad.toml"), text).unwrap();
        let out = dir.join(format!("out-{n}"));
        let output = Command::new(env!("CARGO_BIN_EXE_battleplan"))
            .args(["scenario", "run", "bad.toml", "--out"])
            .arg(&out)
            .current_dir(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "case {n}: {stderr}");
        assert!(stderr.contains(expected), "case {n}: {stderr}");
        assert!(!out.exists(), "case {n}: the output directory was created");
    }
    // An output directory that is not empty is refused before anything runs.
    std::fs::write(dir.join("bad.toml"), base).unwrap();
    std::fs::create_dir_all(dir.join("full")).unwrap();
    std::fs::write(dir.join("full/keep.txt"), "mine").unwrap();
    let output = battleplan(&[
        "scenario",
        "run",
        dir.join("bad.toml").to_str().unwrap(),
        "--out",
        dir.join("full").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.join("full/keep.txt")).unwrap(),
        "mine"
    );
    // A file given as the output directory is named as such.
    let output = battleplan(&[
        "scenario",
        "run",
        dir.join("bad.toml").to_str().unwrap(),
        "--out",
        dir.join("full/keep.txt").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is a file"));
}
