//! `battleplan audit verify` end to end: exit 0 and the head hash for an intact log; exit 2 with
//! the position for a flipped byte, a deleted event, a reordered pair and a payload that does
//! not read as its type; exit 2 with the campaign for a stored projection edited by hand; and a
//! plain message for a directory without a store or a store another process holds; the store
//! left byte for byte as it was by `audit verify` and `export`, which also run on a copy on a
//! read-only file system, and `audit verify` answered by a running daemon.
//!
//! One test function on purpose: a child forked by one test while another test holds a store
//! inherits the store's locked file description until it execs, which would make the other
//! test's reopen fail at random. Sequential steps avoid that.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_adapters::sled_store::layout;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::campaign::events::CampaignCancelled;
use battleplan_core::campaign::CampaignEvent;
use battleplan_core::event::port::EventAppender;
use battleplan_core::event::{
    Append, Checkpoints, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, StreamId,
};
use battleplan_tests::{copy_dir, ok, run_in, Daemon, Run};
use uuid::Uuid;

fn event(n: u128) -> NewEvent {
    CampaignEvent::CampaignCancelled(CampaignCancelled { from: None })
        .encode(EventId(Uuid::from_u128(n)))
        .unwrap()
}

async fn append_one(store: &SledEventLog, n: u128, new_event: NewEvent) {
    store
        .append(Append {
            stream: StreamId::campaign("sept").unwrap(),
            expected: ExpectedVersion::Any,
            events: vec![new_event],
            metadata: Metadata {
                actor: "alice".into(),
                command_id: CommandId(Uuid::from_u128(n)),
                causation_id: None,
                correlation_id: None,
                reason: Some("test".into()),
            },
            recorded_at: chrono::DateTime::from_timestamp(1_788_000_000, 0).unwrap(),
        })
        .await
        .unwrap();
}

/// `count` events, appended one at a time.
async fn store_with_events(directory: &Path, count: u128) {
    let store = SledEventLog::open(directory, StoreOptions::default()).unwrap();
    for n in 1..=count {
        append_one(&store, n, event(n)).await;
    }
}

/// Changes the chunks of a closed store as an attacker with the files would.
fn tamper(data: &Path, change: impl FnOnce(&layout::Tamper)) {
    let db = sled::open(data).unwrap();
    let log = db.open_tree("log").unwrap();
    let chunks = layout::Tamper::new(data, &log).unwrap();
    // Each event in a chunk of its own, so that one event can be changed alone.
    chunks.split();
    change(&chunks);
    db.flush().unwrap();
}

fn verify(directory: &Path) -> (Run, serde_json::Value) {
    let text = run_in(directory, &["--data", "data", "audit", "verify"]);
    let json = run_in(directory, &["--data", "data", "audit", "verify", "--json"]);
    assert_eq!(text.code, json.code);
    let report = serde_json::from_str(&json.stdout).unwrap();
    (text, report)
}

#[tokio::test]
async fn verify_reports_intact_damaged_missing_and_busy_stores() {
    an_intact_log_verifies_and_a_damaged_one_names_its_position().await;
    a_deleted_event_is_found_at_its_position().await;
    a_reordered_pair_is_found_at_the_first_of_them().await;
    a_payload_that_does_not_read_is_found_at_its_position().await;
    a_stored_projection_edited_by_hand_is_found_with_its_campaign().await;
    no_store_and_a_busy_store_are_user_errors().await;
    the_page_cache_is_set_by_a_variable_checked_before_the_store_opens().await;
    verify_and_export_read_only_and_reach_a_running_daemon();
}

/// `BATTLEPLAN_STORE_CACHE_MIB` sizes sled's page cache (docs/store.md): a value that is not a
/// size is refused with its name before the store is opened, by a command that reads a copy
/// and by one that opens the store; a size is used.
async fn the_page_cache_is_set_by_a_variable_checked_before_the_store_opens() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    store_with_events(&data, 5).await;
    let with_cache = |value: &str, arguments: &[&str]| {
        let output = std::process::Command::new(battleplan_tests::binary())
            .args(["--data", "data"])
            .args(arguments)
            .current_dir(directory.path())
            .env("BATTLEPLAN_STORE_CACHE_MIB", value)
            .env("USER", battleplan_tests::TESTER)
            .env_remove("BATTLEPLAN_DATA")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for value in ["0", "64MiB", "-1", "99999999999"] {
        for arguments in [&["audit", "verify"][..], &["status"][..]] {
            let (code, stdout, stderr) = with_cache(value, arguments);
            assert_eq!(code, Some(2), "{value} {arguments:?}: {stdout}{stderr}");
            assert!(
                stderr.contains(&format!(
                    "BATTLEPLAN_STORE_CACHE_MIB is \"{value}\": it should be the size of the store's page cache in MiB"
                )),
                "{value}: {stderr}"
            );
        }
    }
    let (code, stdout, stderr) = with_cache("4", &["audit", "verify"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("intact: 5 events"), "{stdout}");
}

async fn a_deleted_event_is_found_at_its_position() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    store_with_events(&data, 5).await;
    tamper(&data, |chunks| {
        chunks.remove(3);
    });
    let (text, report) = verify(directory.path());
    assert_eq!(text.code, 2, "{}", text.stdout);
    assert!(
        text.stdout.starts_with(
            "damaged: position 3: expected the next event here, found position 4 (an event is missing or repeated)"
        ),
        "{}",
        text.stdout
    );
    assert_eq!(report["intact"], false);
    assert_eq!(report["chain_intact"], false);
    assert_eq!(report["problem_kind"], "chain");
    assert_eq!(report["problem_position"], 3);
    assert_eq!(report["events"], 2);
}

async fn a_reordered_pair_is_found_at_the_first_of_them() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    store_with_events(&data, 5).await;
    tamper(&data, |chunks| {
        let second = chunks.get(2).unwrap();
        let third = chunks.get(3).unwrap();
        chunks.insert(2, &third);
        chunks.insert(3, &second);
    });
    let (text, report) = verify(directory.path());
    assert_eq!(text.code, 2, "{}", text.stdout);
    assert!(
        text.stdout
            .starts_with("damaged: position 2: the hash chain is broken"),
        "{}",
        text.stdout
    );
    assert_eq!(report["problem_kind"], "chain");
    assert_eq!(report["problem_position"], 2);
}

async fn a_payload_that_does_not_read_is_found_at_its_position() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    {
        let store = SledEventLog::open(&data, StoreOptions::default()).unwrap();
        append_one(&store, 1, event(1)).await;
        // Chained like any other event, but not a CampaignPaused payload.
        let mut garbage = event(2);
        garbage.event_type = "CampaignPaused".into();
        garbage.payload = vec![0xc1];
        append_one(&store, 2, garbage).await;
        append_one(&store, 3, event(3)).await;
    }
    let (text, report) = verify(directory.path());
    assert_eq!(text.code, 2, "{}", text.stdout);
    assert!(
        text.stdout
            .starts_with("damaged: position 2: cannot read the CampaignPaused payload"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("the chain checks out: 3 events"),
        "{}",
        text.stdout
    );
    assert_eq!(report["chain_intact"], true);
    assert_eq!(report["problem_kind"], "payload");
    assert_eq!(report["problem_position"], 2);
}

async fn a_stored_projection_edited_by_hand_is_found_with_its_campaign() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    assert_eq!(run_in(dir, &["init", "--out", "plan.toml"]).code, 0);
    let applied = run_in(
        dir,
        &[
            "--data",
            "data",
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    // The daemon stores the campaigns projection as it goes.
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-01T00:00:00Z",
            "--until",
            "2026-08-25T00:00:00+08:00",
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
    let (text, report) = verify(dir);
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    let checkpoint = report["projection"]["checkpoint"].as_u64().unwrap();
    assert!(checkpoint > 1, "{report}");
    assert_eq!(report["projection"]["campaigns"], 1);
    assert_eq!(report["projection"]["matches_replay"], true);

    {
        let store = SledEventLog::open(&dir.join("data"), StoreOptions::default()).unwrap();
        let key = b"sept-festival-2026".to_vec();
        let stored = Checkpoints::get(&store, "campaigns", &key)
            .await
            .unwrap()
            .unwrap();
        let mut state: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(state["plan_version"], 1);
        state["plan_version"] = 7.into();
        store
            .commit(
                "campaigns",
                battleplan_core::event::Position(checkpoint),
                vec![(key, Some(serde_json::to_vec(&state).unwrap()))],
            )
            .await
            .unwrap();
    }
    let (text, report) = verify(dir);
    assert_eq!(text.code, 2, "{}", text.stdout);
    let expected = format!(
        "damaged: stored projection `campaigns` differs from the replay for campaign sept-festival-2026 (stored checkpoint at position {checkpoint}): field `plan_version` stored 7, replay 1"
    );
    assert!(text.stdout.starts_with(&expected), "{}", text.stdout);
    assert_eq!(report["intact"], false);
    assert_eq!(report["chain_intact"], true);
    assert_eq!(report["problem_kind"], "projection");
    assert_eq!(report["problem_key"], "sept-festival-2026");
    assert_eq!(report["projection"]["matches_replay"], false);
}

async fn an_intact_log_verifies_and_a_damaged_one_names_its_position() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    store_with_events(&data, 5).await;

    let intact = run_in(directory.path(), &["--data", "data", "audit", "verify"]);
    assert_eq!(intact.code, 0, "{}{}", intact.stdout, intact.stderr);
    assert!(
        intact.stdout.starts_with("intact: 5 events"),
        "{}",
        intact.stdout
    );

    let json = run_in(
        directory.path(),
        &["audit", "verify", "--json", "--data", "data"],
    );
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["events"], 5);
    assert_eq!(report["head_hash"].as_str().map(str::len), Some(64));

    tamper(&data, |chunks| {
        let stored = chunks.get(4).unwrap();
        let mut record = layout::chunk_records(&stored).unwrap().remove(0);
        let last = record.len() - 1;
        record[last] ^= 0x10;
        chunks.insert(4, &layout::chunk_of(&[&record]));
    });
    let damaged = run_in(directory.path(), &["--data", "data", "audit", "verify"]);
    assert_eq!(damaged.code, 2, "{}", damaged.stdout);
    insta::assert_snapshot!(damaged.stdout, @r"
    damaged: position 4: the record does not match its hash (its bytes were changed)
    the 3 events before it check out (head hash 9da882088746d6ae2101ca60794c3fff7d04ebadd2a1bc9646009c4adeff863d)
    ");
    let json = run_in(
        directory.path(),
        &["--data", "data", "audit", "verify", "--json"],
    );
    assert_eq!(json.code, 2);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["problem_position"], 4);
}

async fn no_store_and_a_busy_store_are_user_errors() {
    let directory = tempfile::tempdir().unwrap();
    let missing = run_in(directory.path(), &["--data", "nowhere", "audit", "verify"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("there is no battleplan store in nowhere"),
        "{}",
        missing.stderr
    );
    assert!(
        !directory.path().join("nowhere").exists(),
        "verify never creates a store"
    );

    let data = directory.path().join("data");
    store_with_events(&data, 1).await;
    let _held = SledEventLog::open(&data, StoreOptions::default()).unwrap();
    let busy = run_in(directory.path(), &["--data", "data", "audit", "verify"]);
    assert_eq!(busy.code, 2);
    assert!(
        busy.stderr.contains("held by another battleplan process"),
        "{}",
        busy.stderr
    );
}

/// Every file of a data directory and its bytes (not the control socket).
fn files(data: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut directories = vec![data.to_path_buf()];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                directories.push(entry.path());
            } else if kind.is_file() {
                found.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    found
}

/// An auditor's tools change nothing: `audit verify` and `export` leave every byte of the store
/// as it was (they read a private copy of its files), so they also run on a copy on read-only
/// media (files 0400, directories 0500, the file system mounted read-only: root ignores the
/// modes, not the mount); and `audit verify` reaches a running daemon as the other commands do.
fn verify_and_export_read_only_and_reach_a_running_daemon() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(run_in(
        dir,
        &[
            "--data",
            "data",
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            "2026-08-01T00:00:00Z",
            "--until",
            "2026-08-27T00:00:00+08:00",
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
    let data = dir.join("data");

    // Nothing of the store changes, not a byte.
    let before = files(&data);
    let (text, report) = verify(dir);
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    ok(run_in(
        dir,
        &["--data", "data", "export", "--out", "log.jsonl"],
    ));
    let after = files(&data);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
    let exported = std::fs::read(dir.join("log.jsonl")).unwrap();

    // Through a running daemon: the same report.
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            "2026-08-27T00:00:00+08:00",
        ],
    );
    daemon.wait_for("running on");
    let through = run_in(dir, &["--data", "data", "audit", "verify", "--json"]);
    assert_eq!(through.code, 0, "{}{}", through.stdout, through.stderr);
    let through: serde_json::Value = serde_json::from_str(&through.stdout).unwrap();
    assert_eq!(through["intact"], true, "{through}");
    // The daemon may have recorded more since it started (it catches up what is due).
    assert!(
        through["events"].as_u64().unwrap() >= report["events"].as_u64().unwrap(),
        "{through}"
    );
    assert_eq!(through["projection"]["matches_replay"], true, "{through}");
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{}", log.join("\n"));

    if !battleplan_tests::mount::needs_root(
        "the read-only mount of verify_reports_intact_damaged_missing_and_busy_stores",
        "audit_verify",
    ) {
        return;
    }
    let mounted = battleplan_tests::mount::Mounted::new(&dir.join("media"), "256m");
    let copy = mounted.0.join("data");
    copy_dir(&data, &copy);
    for path in files(&copy).keys() {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .unwrap();
    }
    for path in [copy.join("blobs"), copy.join("outbox"), copy.clone()] {
        if path.is_dir() {
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o500))
                .unwrap();
        }
    }
    mounted.read_only();
    let on_media = copy.to_str().unwrap();
    let verified = run_in(dir, &["--data", on_media, "audit", "verify", "--json"]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    let verified: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["head_hash"], report["head_hash"]);
    ok(run_in(
        dir,
        &["--data", on_media, "export", "--out", "from-media.jsonl"],
    ));
    assert!(
        std::fs::read(dir.join("from-media.jsonl")).unwrap() == exported,
        "the copy on read-only media exports other bytes"
    );
    ok(run_in(dir, &["--data", on_media, "store", "check"]));
    // A command that writes says why it cannot: the media, not a failing disk.
    let status = run_in(dir, &["--data", on_media, "status"]);
    assert_eq!(status.code, 2, "{}", status.stderr);
    assert!(
        status
            .stderr
            .contains("cannot be opened for writing: it is on a read-only file system"),
        "{}",
        status.stderr
    );
    drop(mounted);
}
