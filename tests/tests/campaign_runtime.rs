//! The campaign runtime end to end, through the real binary: `plan apply`, `status`,
//! `history`, the people's commands, revisions, and `run` as a daemon that is killed, restarted,
//! doubled, and reached from other processes.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_core::plan::EXAMPLE_PLAN;
use battleplan_tests::{bp, mutate, ok, Daemon};
use serde_json::Value;

/// Prep starts 2026-08-19 00:00 +08:00, which is 2026-08-18T16:00:00Z.
const BEFORE_PREP: &str = "2026-08-18T15:00:00Z";
/// Two hours after prep started.
const PREP_PLUS_2H: &str = "2026-08-18T18:00:00Z";

fn setup() -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("plan.toml"), EXAMPLE_PLAN).unwrap();
    directory
}

fn history(directory: &Path) -> Vec<Value> {
    let run = ok(bp(directory, &["history", "sept-festival-2026", "--json"]));
    serde_json::from_str::<Value>(&run.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn apply_revise_pause_and_refuse_without_a_daemon() {
    let directory = setup();
    let dir = directory.path();
    let applied = ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
            "--actor",
            "mei",
        ],
    ));
    assert!(
        applied.stdout.contains("applied plan version 1"),
        "{}",
        applied.stdout
    );
    assert!(
        applied
            .stdout
            .contains("next:   prep at 2026-08-19 00:00 +08:00, in 17 d 16 h"),
        "{}",
        applied.stdout
    );
    let again = ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-02T00:00:00Z",
        ],
    ));
    assert!(
        again.stdout.contains("nothing recorded"),
        "{}",
        again.stdout
    );

    // The virtual clock runs the campaign into the early stage.
    let simulated = ok(bp(
        dir,
        &[
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-01T00:00:00Z",
            "--until",
            "2026-09-03T00:00:00Z",
        ],
    ));
    assert!(
        simulated
            .stderr
            .contains("entered burst (early stage), on time"),
        "{}",
        simulated.stderr
    );
    let status = ok(bp(
        dir,
        &[
            "status",
            "sept-festival-2026",
            "--clock-at",
            "2026-09-03T00:00:00Z",
        ],
    ));
    assert!(
        status
            .stdout
            .contains("status: burst (early stage) since 2026-09-02 00:00 +08:00"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("next:   burst (middle stage) at 2026-09-11 00:00 +08:00, in 7 d 16 h"),
        "{}",
        status.stdout
    );

    // A revision that moves a boundary in the past: refused, nothing recorded.
    let before = history(dir).len();
    let past = mutate(
        EXAMPLE_PLAN,
        &[
            (
                "[phases.warm_up]\nstart = 2026-08-26\nend = 2026-09-01",
                "[phases.warm_up]\nstart = 2026-08-27\nend = 2026-09-01",
            ),
            (
                "[phases.prep]\nstart = 2026-08-19\nend = 2026-08-25",
                "[phases.prep]\nstart = 2026-08-19\nend = 2026-08-26",
            ),
        ],
    );
    std::fs::write(dir.join("past.toml"), past).unwrap();
    let refused = bp(
        dir,
        &[
            "plan",
            "apply",
            "past.toml",
            "--clock-at",
            "2026-09-03T00:00:00Z",
        ],
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("warm-up starts at 2026-08-26 00:00 +08:00, which has passed; a revision cannot move it"), "{}", refused.stderr);
    assert_eq!(history(dir).len(), before);

    // A plan with errors: refused whole, with its diagnostics.
    std::fs::write(
        dir.join("broken.toml"),
        EXAMPLE_PLAN.replacen(
            "time_zone = \"Asia/Shanghai\"",
            "time_zone = \"Mars/Olympus\"",
            1,
        ),
    )
    .unwrap();
    let broken = bp(
        dir,
        &[
            "plan",
            "apply",
            "broken.toml",
            "--clock-at",
            "2026-09-03T00:00:00Z",
        ],
    );
    assert_eq!(broken.code, 2);
    assert!(
        broken.stderr.contains("broken.toml:") && broken.stderr.contains("nothing was applied"),
        "{}",
        broken.stderr
    );
    assert_eq!(history(dir).len(), before);

    // A valid revision: the late stage moves a day; it shows in status and in the events.
    let later = mutate(
        EXAMPLE_PLAN,
        &[
            (
                "start = 2026-09-11\nend = 2026-09-20",
                "start = 2026-09-11\nend = 2026-09-21",
            ),
            (
                "start = 2026-09-21\nend = 2026-09-30",
                "start = 2026-09-22\nend = 2026-09-30",
            ),
        ],
    );
    std::fs::write(dir.join("later.toml"), later).unwrap();
    let revised = ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "later.toml",
            "--clock-at",
            "2026-09-03T00:00:00Z",
            "--actor",
            "mei",
            "--reason",
            "the platform moved the late stage",
        ],
    ));
    assert!(
        revised.stdout.contains("revised to plan version 2"),
        "{}",
        revised.stdout
    );
    assert!(
        revised.stdout.contains(
            "burst (late stage) starts 2026-09-22 00:00 +08:00 instead of 2026-09-21 00:00 +08:00"
        ),
        "{}",
        revised.stdout
    );
    let status = ok(bp(
        dir,
        &[
            "status",
            "sept-festival-2026",
            "--json",
            "--clock-at",
            "2026-09-03T00:00:00Z",
        ],
    ));
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["plan_version"], 2);
    assert_eq!(status["state"], "Burst");
    let events = history(dir);
    let revisions = of_type(&events, "PlanRevised");
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0]["actor"], "mei");
    assert_eq!(revisions[0]["reason"], "the platform moved the late stage");

    // People take the wheel, with reasons; refusals explain themselves.
    ok(bp(
        dir,
        &[
            "pause",
            "sept-festival-2026",
            "--actor",
            "alice",
            "--reason",
            "stock problem",
            "--clock-at",
            "2026-09-03T02:00:00Z",
        ],
    ));
    let advance = bp(
        dir,
        &[
            "advance",
            "sept-festival-2026",
            "--actor",
            "bob",
            "--reason",
            "go",
            "--clock-at",
            "2026-09-04T00:00:00Z",
        ],
    );
    assert_eq!(advance.code, 2);
    assert_eq!(
        advance.stderr.trim(),
        "battleplan: cannot advance: the campaign has been paused since 2026-09-03 10:00 +08:00 by alice: 'stock problem'; resume it first"
    );
    let unknown = bp(
        dir,
        &["pause", "no-such-sale", "--actor", "alice", "--reason", "x"],
    );
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("no campaign named no-such-sale; known: sept-festival-2026"),
        "{}",
        unknown.stderr
    );
    let text = ok(bp(dir, &["history", "sept-festival-2026"]));
    assert!(
        text.stdout.contains("alice") && text.stdout.contains("reason: stock problem"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_daemon_killed_before_a_boundary_enters_it_once_after_restart() {
    let directory = setup();
    let dir = directory.path();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));

    // Up before prep starts; killed while waiting for it.
    let mut first = Daemon::start(dir, &["--data", "data", "run", "--clock-at", BEFORE_PREP]);
    first.wait_for("caught up: 0 overdue");
    first.kill();
    assert!(of_type(&history(dir), "PhaseEntered").is_empty());

    // Down across the boundary; back two hours after it.
    let mut second = Daemon::start(dir, &["--data", "data", "run", "--clock-at", PREP_PLUS_2H]);
    let line = second.wait_for("entered prep");
    assert!(
        line.contains("2 h late (planned 2026-08-19 00:00 +08:00)"),
        "{line}"
    );
    second.wait_for("caught up: 1 overdue");
    // Asked while the daemon runs: through its control socket.
    let events = history(dir);
    let entered = of_type(&events, "PhaseEntered");
    assert_eq!(entered.len(), 1, "{events:#?}");
    assert_eq!(entered[0]["late_by_ms"], 7_200_000);
    assert_eq!(entered[0]["actor"], "system:scheduler");
    second.kill();

    // Killed again and restarted at the same instant: nothing more to do.
    let mut third = Daemon::start(dir, &["--data", "data", "run", "--clock-at", PREP_PLUS_2H]);
    third.wait_for("caught up: 0 overdue");
    assert_eq!(of_type(&history(dir), "PhaseEntered").len(), 1);
    let (code, lines) = third.terminate();
    assert_eq!(code, 0, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("stopped: 0 transition(s)")),
        "{lines:#?}"
    );
    assert!(
        !dir.join("data/control.sock").exists(),
        "the socket is removed on a clean stop"
    );
    let verify = ok(bp(dir, &["audit", "verify"]));
    // The plan, prep entered once, and the planning (with no customers yet) of the reach-out
    // whose window opens with prep.
    assert!(
        verify.stdout.starts_with("intact: 3 events"),
        "{}",
        verify.stdout
    );
}

#[test]
fn two_daemons_one_acts_and_other_terminals_reach_it() {
    let directory = setup();
    let dir = directory.path();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));

    let arguments = ["--data", "data", "run", "--clock-at", PREP_PLUS_2H];
    let mut a = Daemon::start(dir, &arguments);
    let b = Daemon::start(dir, &arguments);
    // One of them refuses and ends; the other runs on.
    let (mut running, mut refused) = match a.wait_for_or_end("other terminals reach this daemon") {
        Some(_) => (a, b),
        None => (b, a),
    };
    let (code, lines) = refused.finish();
    assert_eq!(code, 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("battleplan run is already running on data (pid")),
        "{lines:#?}"
    );
    running.wait_for("caught up: 1 overdue");
    assert_eq!(of_type(&history(dir), "PhaseEntered").len(), 1);

    // Other terminals: status, pause, resume reach the daemon and are recorded.
    let status = ok(bp(dir, &["status"]));
    assert!(
        status.stdout.contains("status: prep since"),
        "{}",
        status.stdout
    );
    let paused = ok(bp(
        dir,
        &[
            "pause",
            "sept-festival-2026",
            "--actor",
            "alice",
            "--reason",
            "stock problem",
        ],
    ));
    assert!(
        paused.stdout.contains("paused in prep"),
        "{}",
        paused.stdout
    );
    let status = ok(bp(dir, &["status", "sept-festival-2026"]));
    assert!(
        status.stdout.contains(
            "status: paused in prep since 2026-08-19 02:00 +08:00 by alice: 'stock problem'"
        ),
        "{}",
        status.stdout
    );
    let again = bp(
        dir,
        &[
            "pause",
            "sept-festival-2026",
            "--actor",
            "alice",
            "--reason",
            "again",
        ],
    );
    assert_eq!(again.code, 2);
    assert!(
        again
            .stderr
            .contains("cannot pause: the campaign has been paused since"),
        "{}",
        again.stderr
    );
    ok(bp(
        dir,
        &[
            "resume",
            "sept-festival-2026",
            "--actor",
            "bob",
            "--reason",
            "stock arrived",
        ],
    ));
    let events = history(dir);
    let paused = of_type(&events, "CampaignPaused");
    let resumed = of_type(&events, "CampaignResumed");
    assert_eq!((paused.len(), resumed.len()), (1, 1));
    assert_eq!(
        (paused[0]["actor"].as_str(), paused[0]["reason"].as_str()),
        (Some("alice"), Some("stock problem"))
    );
    assert_eq!(
        (resumed[0]["actor"].as_str(), resumed[0]["reason"].as_str()),
        (Some("bob"), Some("stock arrived"))
    );
    let (code, _) = running.terminate();
    assert_eq!(code, 0);
    // With the daemon gone the same commands open the store themselves.
    let status = ok(bp(
        dir,
        &["status", "sept-festival-2026", "--clock-at", PREP_PLUS_2H],
    ));
    assert!(
        status.stdout.contains("status: prep since"),
        "{}",
        status.stdout
    );
}
