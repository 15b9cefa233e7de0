//! Customer data is readable by its owner only: the real binary, run under umask 022 as a user's
//! shell would, creates the data directory `0700` and every file and directory in it (the store,
//! sled's own files, the write-ahead files, the outbox) without any permission for group or
//! others; `export --out` writes a private file. A data directory left open to others is
//! closed, with a warning.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::{binary, instant, ok, Run};

/// `battleplan ARGUMENTS` in `dir` under umask 022, with `--data data`.
fn bp022(dir: &Path, arguments: &[&str]) -> Run {
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(binary())
        .args(["--data", "data"])
        .args(arguments)
        .current_dir(dir)
        .env("USER", battleplan_tests::TESTER)
        .env_remove("BATTLEPLAN_DATA")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `dir` (itself included) that its group or others may read, write or enter.
fn open_to_others(dir: &Path, found: &mut Vec<String>, seen: &mut usize) {
    *seen += 1;
    if mode(dir) & 0o077 != 0 {
        found.push(format!("{} {:04o}", dir.display(), mode(dir)));
    }
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            open_to_others(&entry.unwrap().path(), found, seen);
        }
    }
}

#[test]
fn under_umask_022_nothing_in_the_data_directory_is_open_to_others() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    ok(bp022(dir, &["init", "--out", "plan.toml"]));
    // The plan is an ordinary document, as the user's umask would make it.
    assert_eq!(mode(&dir.join("plan.toml")), 0o644);
    ok(bp022(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let options = Options {
        count: 300,
        seed: 7,
        as_of: instant("2026-08-20T00:00:00+08:00"),
        format: FileFormat::Csv,
    };
    let mut customers = Vec::new();
    write_customers(&mut customers, options).unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    ok(bp022(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    ));
    // The warm-up's first day under the simulated clock: reminders and mails in the outbox.
    ok(bp022(
        dir,
        &[
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-26T00:00:00+08:00",
            "--until",
            "2026-08-26T12:00:00+08:00",
        ],
    ));
    ok(bp022(dir, &["export", "--out", "export.jsonl"]));
    assert_eq!(mode(&dir.join("export.jsonl")), 0o600);

    let data = dir.join("data");
    for made in ["db", "conf", "battleplan-0.wal", "outbox/mail.jsonl"] {
        assert!(data.join(made).exists(), "{made} was not made");
    }
    let (mut found, mut seen) = (Vec::new(), 0);
    open_to_others(&data, &mut found, &mut seen);
    assert!(
        found.is_empty(),
        "open to group or others:\n{}",
        found.join("\n")
    );
    assert!(seen > 8, "only {seen} paths in the data directory");
    assert_eq!(mode(&data), 0o700);
}

#[test]
fn a_data_directory_open_to_others_is_closed_with_a_warning() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(bp022(dir, &["init", "--out", "plan.toml"]));
    let applied = ok(bp022(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    assert!(
        applied.stderr.contains(
            "warning: the data directory data was open to other users (mode 0755); it is now 0700"
        ),
        "{}",
        applied.stderr
    );
    assert_eq!(mode(&data), 0o700);
    // Once closed, nothing more is said.
    let status = ok(bp022(dir, &["status"]));
    assert!(!status.stderr.contains("warning"), "{}", status.stderr);
    let (mut found, mut seen) = (Vec::new(), 0);
    open_to_others(&data, &mut found, &mut seen);
    assert!(
        found.is_empty(),
        "open to group or others:\n{}",
        found.join("\n")
    );
}
