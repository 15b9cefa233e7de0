//! A snapshot of the projections survives SIGKILL at any moment of its saving: a child process
//! saves snapshot after snapshot of a shipped scenario's log (each a file written, synced and
//! renamed, then its header committed with the checkpoint, then the files before it removed)
//! and is killed with SIGKILL at varied moments, again and again over one store. After each kill
//! the store is opened and its snapshot must read (the last one whose commit the child saw, or
//! the one it was saving), be exactly the replay of the log up to its position, and `audit
//! verify` must agree; the files directory holds nothing but that snapshot's file, the one
//! before it and what the killed child was writing, and the next save removes all but its own.
//!
//! The child is this test binary run again (`harness = false`: `main` says which it is).

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use battleplan_adapters::sled_store::SledEventLog;
use battleplan_adapters::StoreOptions;
use battleplan_core::event::port::EventReader;
use battleplan_core::event::{Checkpoints, Position};
use battleplan_orchestrator::app::audit::check_replay;
use battleplan_orchestrator::hosts::scenario::{self, Output};
use battleplan_orchestrator::kernel::snapshot::{self, Projections};
use battleplan_scenarios::scenario::load;

/// Set in the child's environment: the store it saves snapshots into.
const CHILD: &str = "BATTLEPLAN_SNAPSHOT_CRASH_CHILD";
/// Events fed between two snapshots.
const STEP: u64 = 250;
const KILLS: usize = 12;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var_os(CHILD) {
        Some(store) => runtime.block_on(child(PathBuf::from(store))),
        None => {
            runtime.block_on(a_snapshot_survives_sigkill_at_any_moment_of_its_saving());
            println!("test a_snapshot_survives_sigkill_at_any_moment_of_its_saving ... ok");
        }
    }
}

fn open(data: &Path) -> SledEventLog {
    SledEventLog::open(data, StoreOptions::default()).unwrap()
}

/// The child: from the stored snapshot (or the start), a snapshot every [`STEP`] events, each
/// said before it is saved (`saving P`) and once committed (`saved P`), until the head.
async fn child(data: PathBuf) {
    let store = open(&data);
    let head = store.head().await.unwrap();
    let mut projections: Projections = snapshot::load(&store).await.unwrap().unwrap_or_default();
    let files = store.files_directory();
    let mut at = projections.book.position;
    while at < head {
        let next = Position((at.0 + STEP).min(head.0));
        projections.replay_to(&store, next).await.unwrap();
        at = projections.book.position;
        println!("saving {}", at.0);
        let encoded = snapshot::encode(
            &projections.book,
            &projections.outreach,
            &projections.boards,
            files.as_deref(),
        )
        .unwrap();
        assert!(snapshot::save(&store, encoded).await.unwrap());
        println!("saved {}", at.0);
    }
    println!("done");
}

/// Runs the child until it has said `lines` lines, then kills it with SIGKILL. Returns the
/// positions it said it saved, whether it ran to the end, and its process id.
fn run_and_kill(data: &Path, lines: usize) -> (Vec<u64>, bool, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let id = child.id();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut saved = Vec::new();
    let mut done = false;
    for line in stdout.lines().take(lines) {
        let line = line.unwrap();
        if let Some(position) = line.strip_prefix("saved ") {
            saved.push(position.parse().unwrap());
        }
        done |= line == "done";
    }
    // SIGKILL: nothing of the child's runs after this, not even a destructor.
    child.kill().unwrap();
    child.wait().unwrap();
    (saved, done, id)
}

fn files_in(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn file_of(position: u64) -> String {
    format!("snapshot-{position:020}.msgpack")
}

async fn a_snapshot_survives_sigkill_at_any_moment_of_its_saving() {
    let dir = tempfile::tempdir().unwrap();
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/unsubscribes-in-follow-ups.toml");
    let loaded = load(&file).unwrap_or_else(|message| panic!("{message}"));
    let output = Output {
        dir: dir.path().join("run"),
    };
    scenario::run(&loaded, &output, &|_| {})
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let data = output.data();
    let (head, files) = {
        let store = open(&data);
        (
            store.head().await.unwrap(),
            store.files_directory().unwrap(),
        )
    };
    assert!(
        head.0 > STEP * (KILLS as u64 + 4),
        "a log long enough for every kill: {head}"
    );

    let mut last_saved = 0u64;
    let mut landed_mid_save = 0;
    for kill in 0..KILLS {
        // Killed after 1 to 4 lines: just after `saving` (encoding, syncing, renaming or
        // committing) or just after `saved` (removing the files before).
        let (saved, done, _) = run_and_kill(&data, 1 + kill % 4);
        assert!(!done, "the child ran to the head before kill {kill}");
        let store = open(&data);
        // None only when the first save was killed before its commit.
        let stored = snapshot::load(&store)
            .await
            .unwrap_or_else(|unusable| panic!("kill {kill}: the snapshot is unusable: {unusable}"))
            .unwrap_or_default();
        let at = stored.book.position.0;
        let said = saved.last().copied().unwrap_or(last_saved);
        // The one whose commit was seen, or the next, whose commit landed before the kill.
        assert!(
            at == said || at == said + STEP,
            "kill {kill}: the snapshot at {at}, the last saved {said}"
        );
        if at != said {
            landed_mid_save += 1;
        }
        last_saved = at;
        let mut replayed = Projections::default();
        replayed.replay_to(&store, Position(at)).await.unwrap();
        assert!(
            stored == replayed,
            "kill {kill}: the snapshot is the replay up to {at}"
        );
        let report = check_replay(&store).await.unwrap();
        assert_eq!(report.finding, None, "kill {kill}");
        assert_eq!(
            report.snapshot.map(|check| check.position),
            (at > 0).then_some(at)
        );
        // Nothing but its file, the one before it (kept), the one before that (when the kill
        // came before it was removed), and what the child was writing.
        for name in files_in(&files) {
            assert!(
                name == file_of(at)
                    || name == file_of(at.saturating_sub(STEP))
                    || name == file_of(at.saturating_sub(2 * STEP))
                    || name == file_of(at + STEP)
                    || name.starts_with(".snapshot-"),
                "kill {kill}: {name} is in the files directory"
            );
        }
        drop(store);
    }

    // A child killed after its first `saved`: that save removed every file before the one it
    // replaced and what the killed children left half-written; what is left is its file, the
    // one before it, and the next one (renamed, or half-written) when the kill came during it.
    let before = last_saved;
    let (saved, _, id) = run_and_kill(&data, 2);
    let saved = saved.last().copied().unwrap();
    let store = open(&data);
    let at = store.checkpoint(snapshot::PROJECTION).await.unwrap().0;
    assert!(
        at == saved || at == saved + STEP,
        "{at} after saving {saved}"
    );
    let ours = format!(".snapshot-{id}-");
    let left = files_in(&files);
    assert!(left.contains(&file_of(saved)), "{left:?}");
    for name in &left {
        assert!(
            name == &file_of(saved)
                || (name == &file_of(before) && before > 0)
                || name == &file_of(saved + STEP)
                || name.starts_with(&ours),
            "after a save: {left:?}"
        );
    }
    println!("{KILLS} kills, {landed_mid_save} landed between a commit and its word");
}
