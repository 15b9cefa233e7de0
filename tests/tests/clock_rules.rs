//! The clock cannot rewrite the record: a command whose clock is behind the log's last event is
//! refused, and a rehearsal clock (`--clock-at`, `run --simulate`) is refused on a store that
//! holds real history, so a rehearsal never mixes into it.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_tests::{ok, run_in};

#[test]
fn a_command_dated_before_the_last_event_is_refused_and_nothing_is_recorded() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    assert_eq!(run_in(dir, &["init"]).code, 0);
    let apply = run_in(
        dir,
        &[
            "plan",
            "apply",
            "battleplan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    );
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let pause = run_in(
        dir,
        &[
            "pause",
            "sept-festival-2026",
            "--actor",
            "mei",
            "--reason",
            "stock",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    );
    assert_eq!(pause.code, 0, "{}", pause.stderr);
    // When mallory resumes it with the clock set back to 2026-08-02,
    let resume = run_in(
        dir,
        &[
            "resume",
            "sept-festival-2026",
            "--actor",
            "mallory",
            "--reason",
            "backdated",
            "--clock-at",
            "2026-08-02T00:00:00Z",
        ],
    );
    // then it is refused with both instants named, and the history has no resume.
    assert_eq!(resume.code, 2, "{}{}", resume.stdout, resume.stderr);
    assert!(
        resume.stderr.contains("2026-08-20T00:00:00+00:00")
            && resume.stderr.contains("never goes back in time"),
        "{}",
        resume.stderr
    );
    let history = run_in(dir, &["history"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(history.stdout.contains("paused"), "{}", history.stdout);
    assert!(!history.stdout.contains("resumed"), "{}", history.stdout);
    assert!(!history.stdout.contains("mallory"), "{}", history.stdout);
    let verify = run_in(dir, &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[test]
fn a_rehearsal_clock_is_refused_on_a_store_with_real_history() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    assert_eq!(run_in(dir, &["init"]).code, 0);
    // Given a store started with the system clock: real history,
    let apply = run_in(dir, &["--data", "real", "plan", "apply", "battleplan.toml"]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let before = run_in(dir, &["--data", "real", "history", "--json"]).stdout;
    // when a rehearsal is started in it, or a command recorded under --clock-at,
    for arguments in [
        &[
            "--data",
            "real",
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ][..],
        &[
            "--data",
            "real",
            "pause",
            "sept-festival-2026",
            "--actor",
            "a",
            "--reason",
            "r",
            "--clock-at",
            "2027-08-01T00:00:00Z",
        ][..],
    ] {
        let refused = run_in(dir, arguments);
        // then each is refused, saying where to rehearse, and nothing is recorded;
        assert_eq!(refused.code, 2, "{arguments:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("holds real history")
                && refused.stderr.contains("--data ./rehearsal"),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(
        run_in(dir, &["--data", "real", "history", "--json"]).stdout,
        before
    );
    assert!(!dir.join("real").join("outbox").exists());
    // questions under --clock-at are answered.
    let status = run_in(
        dir,
        &[
            "--data",
            "real",
            "status",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    );
    assert_eq!(status.code, 0, "{}", status.stderr);
    // A store started under a rehearsal clock carries the mark, and rehearsals there go on.
    let rehearsal = run_in(
        dir,
        &[
            "--data",
            "rehearsal",
            "plan",
            "apply",
            "battleplan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    );
    assert_eq!(rehearsal.code, 0, "{}", rehearsal.stderr);
    assert!(dir.join("rehearsal").join("rehearsal").is_file());
    let run = run_in(
        dir,
        &[
            "--data",
            "rehearsal",
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-01T00:00:00Z",
            "--until",
            "2026-08-20T00:00:00Z",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A rehearsal command that fails leaves no mark: the mark is written once the command that
/// created the store has succeeded, so a failed `--clock-at` command on an empty directory
/// cannot open to rehearsals the store a real `plan apply` later fills.
#[test]
fn a_failed_rehearsal_command_leaves_no_mark() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    ok(run_in(dir, &["init"]));
    std::fs::write(dir.join("broken.toml"), "[campaign]\nid = \n").unwrap();
    // Given a rehearsal command on a directory with no store that fails (a pause of nothing, a
    // plan that does not parse),
    for arguments in [
        &[
            "--data",
            "data",
            "pause",
            "sept-festival-2026",
            "--actor",
            "mallory",
            "--reason",
            "x",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ][..],
        &[
            "--data",
            "data",
            "plan",
            "apply",
            "broken.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ][..],
    ] {
        let failed = run_in(dir, arguments);
        assert_eq!(failed.code, 2, "{arguments:?}: {}", failed.stderr);
        // then no mark is left,
        assert!(
            !dir.join("data").join("rehearsal").exists(),
            "{arguments:?}"
        );
    }
    // so once a real plan apply has filled the store, a rehearsal clock is refused there.
    ok(run_in(
        dir,
        &["--data", "data", "plan", "apply", "battleplan.toml"],
    ));
    assert!(!dir.join("data").join("rehearsal").exists());
    let refused = run_in(
        dir,
        &[
            "--data",
            "data",
            "pause",
            "sept-festival-2026",
            "--actor",
            "mallory",
            "--reason",
            "rehearse",
            "--clock-at",
            "2027-01-01T00:00:00Z",
        ],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("holds real history"),
        "{}",
        refused.stderr
    );
}
