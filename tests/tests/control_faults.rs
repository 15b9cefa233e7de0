//! The control protocol under faults, through the real binary: a command sent while the daemon
//! stops is recorded at most once (its client chooses its id once and a local run after an
//! unanswered try reuses it); idle connections under a low descriptor limit neither stop
//! `status` nor make the daemon spin; an import through the socket of a device or of a file
//! larger than an import reads is refused, and a malformed request (not UTF-8, not JSON, not a
//! command) is answered as the sender's error; a stopping daemon with requests under way stops, and
//! releases the store.

// Tests report failures by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use battleplan_core::plan::EXAMPLE_PLAN;
use battleplan_tests::{binary, bp, mutate, ok, Daemon, Run};
use serde_json::Value;

/// Two hours after prep started: a daemon with its clock stopped here enters prep and waits.
const PREP_PLUS_2H: &str = "2026-08-18T18:00:00Z";
/// The failpoint of `orchestrator::control`.
const ABORT_BEFORE_ANSWER: &str = "BATTLEPLAN_FAILPOINT_CONTROL_ABORT_BEFORE_ANSWER";
/// A safety net against a hang, never a way to synchronise.
const SAFETY: Duration = Duration::from_secs(120);

fn daemon_arguments() -> [&'static str; 5] {
    ["--data", "data", "run", "--clock-at", PREP_PLUS_2H]
}

/// A directory with `count` campaigns applied: `race-0`, `race-1`... (the example plan under
/// other ids), nothing run yet.
fn campaigns(count: usize) -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    for index in 0..count {
        let plan = mutate(
            EXAMPLE_PLAN,
            &[(
                "id = \"sept-festival-2026\"",
                &format!("id = \"race-{index}\""),
            )],
        );
        let file = format!("race-{index}.toml");
        std::fs::write(dir.join(&file), plan).unwrap();
        ok(bp(
            dir,
            &["plan", "apply", &file, "--clock-at", "2026-08-01T00:00:00Z"],
        ));
    }
    directory
}

/// `battleplan --data data ARGUMENTS` started in the background.
fn spawn(dir: &Path, arguments: &[String]) -> std::process::Child {
    Command::new(binary())
        .args(["--data", "data"])
        .args(arguments)
        .current_dir(dir)
        .env("USER", battleplan_tests::TESTER)
        .env_remove("BATTLEPLAN_DATA")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: std::process::Child) -> Run {
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every campaign event, with its outbox and task events, as `history --json` lists them.
fn all_history(dir: &Path) -> Vec<Value> {
    let run = ok(bp(dir, &["history", "--json", "--clock-at", PREP_PLUS_2H]));
    serde_json::from_str::<Value>(&run.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// For each reason given, the distinct command ids of the events recorded with it.
fn ids_by_reason(events: &[Value]) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut found: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for event in events {
        if let Some(reason) = event["reason"].as_str() {
            found
                .entry(reason.to_string())
                .or_default()
                .insert(event["command_id"].as_str().unwrap_or_default().to_string());
        }
    }
    found
}

/// 200 commands (pause, resume, advance: `advance` twice would skip a step) sent to ten
/// campaigns while the daemon is being stopped, SIGTERM and SIGKILL in turn, with the signal
/// sent at a different point among the commands each time. None is given a `--command-id`: the
/// client chooses one. Each is recorded at most once (its events carry one command id), and one
/// that says it succeeded is recorded exactly once.
#[test]
fn a_command_sent_as_the_daemon_stops_is_recorded_at_most_once() {
    const CAMPAIGNS: usize = 10;
    const LIFETIMES: usize = 20;
    let directory = campaigns(CAMPAIGNS);
    let dir = directory.path();
    let mut outcomes: Vec<(String, Run)> = Vec::new();
    for life in 0..LIFETIMES {
        let mut daemon = Daemon::start(dir, &daemon_arguments());
        daemon.wait_for("other terminals reach this daemon");
        let action = ["pause", "resume", "advance"][life % 3];
        let kill = life % 2 == 1;
        let signal_after = life % (CAMPAIGNS + 1);
        let mut children = Vec::new();
        for index in 0..CAMPAIGNS {
            if index == signal_after {
                stop(&mut daemon, kill);
            }
            let reason = format!("trial {life}/{index}");
            children.push((
                reason.clone(),
                spawn(
                    dir,
                    &[
                        action.to_string(),
                        format!("race-{index}"),
                        "--actor".into(),
                        "tester".into(),
                        "--reason".into(),
                        reason,
                        "--clock-at".into(),
                        PREP_PLUS_2H.into(),
                    ],
                ),
            ));
        }
        if signal_after == CAMPAIGNS {
            stop(&mut daemon, kill);
        }
        for (reason, child) in children {
            outcomes.push((reason, finished(child)));
        }
        let (code, lines) = daemon.finish();
        if !kill {
            assert_eq!(code, 0, "{lines:#?}");
            assert!(
                lines.last().is_some_and(|line| line.contains("stopped:")),
                "{lines:#?}"
            );
        }
    }
    assert_eq!(outcomes.len(), CAMPAIGNS * LIFETIMES);

    let recorded = ids_by_reason(&all_history(dir));
    let mut succeeded = 0;
    let mut answered_by_first_try = 0;
    for (reason, run) in &outcomes {
        let ids = recorded.get(reason).map_or(0, |ids| ids.len());
        assert!(
            ids <= 1,
            "{reason} was recorded {ids} times:\n{}{}",
            run.stdout,
            run.stderr
        );
        // Refusals (a campaign already paused, over...) and a store still held are exit 2.
        assert!(
            run.code == 0 || run.code == 2,
            "{reason}: exit {}\n{}{}",
            run.code,
            run.stdout,
            run.stderr
        );
        if run.code == 0 {
            succeeded += 1;
            assert_eq!(ids, 1, "{reason} said it succeeded:\n{}", run.stdout);
        }
        if run.stdout.contains("earlier, by this same command id") {
            answered_by_first_try += 1;
        }
    }
    eprintln!(
        "{} commands as the daemon stopped: {succeeded} succeeded, {answered_by_first_try} answered by the first try's outcome, none recorded twice",
        outcomes.len()
    );
    ok(bp(dir, &["audit", "verify"]));
}

fn stop(daemon: &mut Daemon, kill: bool) {
    if kill {
        daemon.child.kill().unwrap();
    } else {
        daemon.send_terminate();
    }
}

/// The moment the race above hits by chance, made certain by a failpoint: the daemon carries
/// out the command and dies before answering. The client runs it itself under the same id and
/// is answered with what the daemon recorded, for each command that changes something: `pause`,
/// `advance`, `plan apply`, `task done`, and an import (whose ids come from the file).
#[test]
fn a_command_recorded_by_a_daemon_that_died_before_answering_is_not_recorded_again() {
    let directory = campaigns(1);
    let dir = directory.path();
    std::fs::write(
        dir.join("customers.csv"),
        "id,name,email\nc1,Ada,ada@example.com\nc2,Bo,bo@example.com\n",
    )
    .unwrap();
    let revised = mutate(
        &std::fs::read_to_string(dir.join("race-0.toml")).unwrap(),
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
    std::fs::write(dir.join("revised.toml"), revised).unwrap();
    let commands: [&[&str]; 5] = [
        &["pause", "race-0", "--actor", "a", "--reason", "r-pause"],
        &["resume", "race-0", "--actor", "a", "--reason", "r-resume"],
        &["advance", "race-0", "--actor", "a", "--reason", "r-advance"],
        &["plan", "apply", "revised.toml", "--reason", "r-revise"],
        &[
            "task",
            "done",
            "pick-high-potential",
            "--actor",
            "a",
            "--note",
            "r-task",
        ],
    ];
    for command in commands
        .iter()
        .copied()
        .chain([&["customers", "import", "customers.csv"][..]])
    {
        let mut daemon =
            Daemon::start_with(dir, &daemon_arguments(), &[(ABORT_BEFORE_ANSWER, "1")]);
        daemon.wait_for("other terminals reach this daemon");
        let mut arguments = command.to_vec();
        arguments.extend(["--clock-at", PREP_PLUS_2H]);
        let run = bp(dir, &arguments);
        let (code, lines) = daemon.finish();
        assert_ne!(code, 0, "the failpoint aborts the daemon: {lines:#?}");
        assert!(
            lines.iter().any(|line| line.contains(ABORT_BEFORE_ANSWER)),
            "{command:?} did not reach the daemon: {lines:#?}"
        );
        assert_eq!(run.code, 0, "{command:?}:\n{}\n{}", run.stdout, run.stderr);
        let repeated = match command[0] {
            "customers" => "already imported",
            "task" => "already recorded by this command id",
            _ => "earlier, by this same command id",
        };
        assert!(
            run.stdout.contains(repeated),
            "{command:?}: the local run should have found the daemon's record:\n{}",
            run.stdout
        );
    }
    let recorded = ids_by_reason(&all_history(dir));
    for reason in ["r-pause", "r-resume", "r-advance", "r-revise", "r-task"] {
        assert_eq!(
            recorded.get(reason).map(|ids| ids.len()),
            Some(1),
            "{reason}: {recorded:#?}"
        );
    }
    let verify = ok(bp(dir, &["audit", "verify"]));
    assert!(verify.stdout.starts_with("intact"), "{}", verify.stdout);
}

/// 1,000 connections that never send, against a daemon allowed 256 descriptors: `status` is
/// answered while they are open, the daemon closes every one of them (those over its cap at
/// once, the rest after the request timeout), and it does not spin meanwhile.
#[test]
fn idle_connections_under_a_low_descriptor_limit_do_not_stop_status() {
    const IDLE: usize = 1_000;
    let directory = campaigns(1);
    let dir = directory.path();
    let mut daemon = Daemon::start_limited(dir, &daemon_arguments(), 256);
    daemon.wait_for("caught up");
    let before = daemon.cpu_ticks();

    // The connections are held by a child of their own, allowed more descriptors.
    let socket = dir.join("data/control.sock");
    let mut idle = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 4096 2>/dev/null; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_idle_clients"))
        .arg(&socket)
        .arg(IDLE.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (lines, receiver) = std::sync::mpsc::channel();
    let stdout = idle.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let connected = receiver.recv_timeout(SAFETY);
    if connected.is_err() {
        let _ = idle.kill();
    }
    assert_eq!(connected.unwrap(), format!("connected {IDLE}"));

    // While they are open, other terminals are answered (each try is bounded by the client's
    // own timeouts).
    for _ in 0..3 {
        let status = ok(bp(dir, &["status", "race-0"]));
        assert!(
            status.stdout.contains("status: prep since"),
            "{}",
            status.stdout
        );
    }

    let closed = receiver.recv_timeout(SAFETY);
    if closed.is_err() {
        let _ = idle.kill();
    }
    assert_eq!(closed.unwrap(), format!("closed {IDLE}"));
    assert!(idle.wait().unwrap().success());
    ok(bp(dir, &["status", "race-0"]));

    // Holding and closing them took the daemon's request timeout (10 s): a daemon that spun
    // would have burnt a core all along; this one used a fraction of a second.
    let used = daemon.cpu_ticks() - before;
    assert!(
        used < 300,
        "the daemon used {used} ticks of CPU time serving idle connections"
    );
    let (code, lines) = daemon.terminate();
    assert_eq!(code, 0, "{lines:#?}");
}

/// One request on the control socket, as any local process could write it; the answer, after
/// the empty lines that say the daemon is at work.
fn ask(socket: &Path, request: &Value) -> Value {
    ask_bytes(socket, format!("{request}\n").as_bytes())
}

/// [`ask`] with any bytes as the request.
fn ask_bytes(socket: &Path, request: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(SAFETY)).unwrap();
    stream.write_all(request).unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "closed unanswered"
        );
        if !line.trim().is_empty() {
            return serde_json::from_str(&line).unwrap();
        }
    }
}

/// What a refused request's answer says: the daemon's words for a refusal the sender caused
/// (the command line shows them and exits 2).
fn refusal(answer: &Value) -> String {
    assert_eq!(answer["protocol"], 1, "{answer:#}");
    let outcome = &answer["outcome"];
    if let Some(error) = outcome.get("Err") {
        assert!(
            !matches!(error["code"].as_str(), Some("internal" | "disk") | None),
            "a refusal of the sender's request, not an internal failure: {answer:#}"
        );
        return error["message"].as_str().unwrap_or_default().to_string();
    }
    // A use case whose view is still its printed words: refused with exit 2.
    let view = &outcome["Ok"]["view"];
    assert_eq!(view["code"], 2, "{answer:#}");
    view["stderr"].as_str().unwrap_or_default().to_string()
}

fn import_request(path: &Path, format: &str) -> Value {
    serde_json::json!({
        "command": "import",
        "kind": "customers",
        "path": path,
        "file_name": path.display().to_string(),
        "format": format,
        "skip_bad_rows": false,
        "actor": "mallory",
        "json": false,
    })
}

/// The daemon checks what an import request names as the command line does: a device and a
/// file larger than an import reads are refused (exit 2, saying why), by the daemon and by the
/// command line alike. Then a request under way (an import of a file within the limit that
/// takes a while to read) and a request never finished do not hold up SIGTERM, and the store
/// is free as soon as the daemon says it stopped.
#[test]
fn imports_of_devices_and_huge_files_are_refused_and_stopping_is_bounded() {
    let directory = campaigns(1);
    let dir = directory.path();
    let huge = dir.join("huge.csv");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(battleplan_adapters::import::MAX_FILE_BYTES + 1)
        .unwrap();
    // As large as an import reads, in one line of zeros: seconds to read, longer than the
    // daemon's grace on stopping.
    let slow = dir.join("slow.jsonl");
    std::fs::File::create(&slow)
        .unwrap()
        .set_len(battleplan_adapters::import::MAX_FILE_BYTES)
        .unwrap();

    let mut daemon = Daemon::start(dir, &daemon_arguments());
    daemon.wait_for("other terminals reach this daemon");
    let socket = dir.join("data/control.sock");

    let device = ask(&socket, &import_request(Path::new("/dev/zero"), "csv"));
    assert!(
        refusal(&device).contains("/dev/zero is a device, not a file to import"),
        "{device:#}"
    );
    let too_large = ask(&socket, &import_request(&huge, "csv"));
    assert!(
        refusal(&too_large).contains("more than the 4294967296 (4 GiB) an import reads"),
        "{too_large:#}"
    );
    // Malformed requests, not UTF-8 among them, are the sender's error (2), said, never a
    // silent close or an internal failure (1).
    for (request, expected) in [
        (&b"\xff\xfe{}\n"[..], "it is not UTF-8 text"),
        (
            b"{\"command\":\"status\",\"campaign\":\"\xc3\x28\"}\n",
            "it is not UTF-8 text",
        ),
        (b"not json\n", "it is not a battleplan request"),
        (
            b"{\"command\":\"drop-everything\"}\n",
            "it is not a battleplan request: unknown variant `drop-everything`",
        ),
        (
            b"{\"command\":\"status\",\"campaign\":7}\n",
            "it is not a battleplan request",
        ),
    ] {
        let answer = ask_bytes(&socket, request);
        let shown = String::from_utf8_lossy(request);
        assert!(
            refusal(&answer).contains(&format!(
                "the daemon could not read the request: {expected}"
            )),
            "{shown}: {answer:#}"
        );
    }

    // The command line refuses them before asking.
    let run = bp(
        dir,
        &["customers", "import", "/dev/zero", "--format", "csv"],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is a device"), "{}", run.stderr);
    let run = bp(dir, &["customers", "import", "huge.csv"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("more than the"), "{}", run.stderr);

    // A request never finished, and an import at work (the first empty line says the daemon
    // has it), when SIGTERM comes.
    let mut unfinished = UnixStream::connect(&socket).unwrap();
    unfinished.write_all(b"{\"command\":\"sta").unwrap();
    let mut importing = UnixStream::connect(&socket).unwrap();
    importing.set_read_timeout(Some(SAFETY)).unwrap();
    writeln!(importing, "{}", import_request(&slow, "jsonl")).unwrap();
    let mut reader = BufReader::new(importing);
    let mut received = String::new();
    reader.read_line(&mut received).unwrap();
    assert_eq!(received, "\n");
    let (code, lines) = daemon.terminate();
    assert_eq!(code, 0, "{lines:#?}");
    assert!(
        lines.last().is_some_and(|line| line.contains("stopped:")),
        "{lines:#?}"
    );
    // Both connections are closed (the import answered or dropped, whichever came first).
    unfinished.set_read_timeout(Some(SAFETY)).unwrap();
    let mut rest = String::new();
    assert_eq!(
        std::io::Read::read_to_string(&mut unfinished, &mut rest).unwrap(),
        0
    );
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut reader, &mut answer).unwrap();
    eprintln!(
        "the import under way when SIGTERM came: {}",
        if answer.trim().is_empty() {
            "dropped unanswered"
        } else {
            "answered"
        }
    );
    // The store is free: a command opens it at once.
    let status = bp(dir, &["status", "race-0", "--clock-at", PREP_PLUS_2H]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(!socket.exists());
}
