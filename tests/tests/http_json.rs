//! One answer, three ways in: every question that has `--json` is asked of a store through the
//! command line on its own, through the command line with a daemon running (the control
//! socket) and over HTTP, and the three give the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use battleplan_tests::http::{self, address_in};
use battleplan_tests::{ok, run_in, Daemon};

/// The instant the scenario ends at; every way in asks at it.
const END: &str = "2026-09-26T00:00:00+08:00";
const CAMPAIGN: &str = "sept-festival-2026";

/// A question: its command line (after `--data data --clock-at END`) and its HTTP path.
struct Question {
    arguments: Vec<&'static str>,
    path: String,
}

fn questions() -> Vec<Question> {
    let c = CAMPAIGN;
    let q = |arguments: &[&'static str], path: String| Question {
        arguments: arguments.to_vec(),
        path,
    };
    vec![
        q(&["status", "--json"], "/api/v1/campaigns".into()),
        q(&["status", c, "--json"], format!("/api/v1/campaigns/{c}")),
        q(
            &["history", c, "--json"],
            format!("/api/v1/campaigns/{c}/history"),
        ),
        q(
            &[
                "history",
                c,
                "--as-of",
                "2026-09-06T00:00:00+08:00",
                "--json",
            ],
            format!("/api/v1/campaigns/{c}/history?as_of=2026-09-06T00:00:00%2B08:00"),
        ),
        q(
            &["explain", c, "c-000042", "--json"],
            format!("/api/v1/campaigns/{c}/customers/c-000042/explain"),
        ),
        q(
            &[
                "audience",
                "preview",
                c,
                "--reach-out",
                "late-stage-mail",
                "--json",
            ],
            format!("/api/v1/campaigns/{c}/audience?reach_out=late-stage-mail"),
        ),
        q(
            &["outbox", c, "--json"],
            format!("/api/v1/campaigns/{c}/outbox"),
        ),
        q(
            &["tasks", "--campaign", c, "--json"],
            format!("/api/v1/campaigns/{c}/tasks"),
        ),
        q(
            &["funnel", c, "--json"],
            format!("/api/v1/campaigns/{c}/funnel"),
        ),
        q(
            &["audit", "verify", "--json"],
            "/api/v1/audit/verify".into(),
        ),
    ]
}

fn ask_cli(dir: &Path, arguments: &[&str]) -> String {
    let mut all = vec!["--data", "data", "--clock-at", END];
    all.extend_from_slice(arguments);
    ok(run_in(dir, &all)).stdout
}

#[test]
fn the_command_line_the_control_socket_and_http_give_the_same_json() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/revision-mid-flight.toml")
        .display()
        .to_string();
    ok(run_in(dir, &["scenario", "run", &scenario, "--out", "run"]));
    let dir = &dir.join("run");
    let token = ok(run_in(
        dir,
        &[
            "--data", "data", "token", "create", "--name", "ma.audit", "--role", "auditor",
        ],
    ))
    .stdout
    .trim()
    .to_string();

    // The daemon first, so that whatever it records on starting is in every answer.
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            END,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let address = address_in(&daemon.wait_for("HTTP API on http://"));
    daemon.wait_for("other terminals reach this daemon");
    let mut through_daemon = Vec::new();
    for question in questions() {
        let socket = ask_cli(dir, &question.arguments);
        let answer = http::send(
            &address,
            "GET",
            &question.path,
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{}: {}", question.path, answer.text());
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{}",
            question.path
        );
        assert_eq!(
            answer.text(),
            socket,
            "HTTP {} and `battleplan {}` through the daemon differ",
            question.path,
            question.arguments.join(" ")
        );
        through_daemon.push(socket);
    }
    daemon.terminate();

    for (question, socket) in questions().iter().zip(through_daemon) {
        let alone = ask_cli(dir, &question.arguments);
        if question
            .arguments
            .first()
            .is_some_and(|first| *first == "audit")
        {
            // The daemon saved a snapshot of its projections as it stopped: `audit verify`
            // checks it now, and says so; the rest of its answer is the same.
            let mut value: serde_json::Value = serde_json::from_str(&alone).unwrap();
            let snapshot = value
                .as_object_mut()
                .and_then(|fields| fields.remove("snapshot"))
                .unwrap_or_else(|| panic!("verify checks the daemon's snapshot: {alone}"));
            assert_eq!(
                snapshot["matches_replay"],
                serde_json::json!(true),
                "{alone}"
            );
            let before: serde_json::Value = serde_json::from_str(&socket).unwrap();
            assert_eq!(
                value, before,
                "`battleplan audit verify` differs with and without a daemon"
            );
            continue;
        }
        assert_eq!(
            alone,
            socket,
            "`battleplan {}` differs with and without a daemon",
            question.arguments.join(" ")
        );
    }
}
