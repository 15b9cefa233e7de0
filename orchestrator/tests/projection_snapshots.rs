//! Snapshots of the customer book, the outbox and the boards (`kernel::snapshot`), over the log
//! of a shipped scenario: read back and caught up with the tail, they are exactly what replaying
//! the whole log gives, and every question is answered the same; `audit verify` compares a
//! snapshot with a replay up to its position; a snapshot of another format, a damaged one or one
//! that is not what the log gives is never used, and said.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use battleplan_adapters::sled_store::SledEventLog;
use battleplan_adapters::StoreOptions;
use battleplan_core::context::{ManualClock, SeededIds};
use battleplan_core::event::Position;
use battleplan_orchestrator::app::audit::{check_replay, Finding};
use battleplan_orchestrator::app::outreach::OutboxQuestion;
use battleplan_orchestrator::app::{self, Request, Response};
use battleplan_orchestrator::hosts::scenario::{self, Output};
use battleplan_orchestrator::kernel::dispatcher;
use battleplan_orchestrator::kernel::runtime::{Runtime, Store};
use battleplan_orchestrator::kernel::snapshot::{self, Policy, Projections, Unusable};
use battleplan_scenarios::scenario::load;

/// A shipped scenario with customers, sends, follow-ups, tasks and outcomes.
const SCENARIO: &str = "unsubscribes-in-follow-ups";

async fn scenario_store(dir: &Path) -> (Arc<dyn Store>, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{SCENARIO}.toml"));
    let loaded = load(&file).unwrap_or_else(|message| panic!("{message}"));
    let output = Output {
        dir: dir.join("run"),
    };
    let finished = scenario::run(&loaded, &output, &|_| {})
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let store = SledEventLog::open(&output.data(), StoreOptions::default()).unwrap();
    (Arc::new(store), finished.campaign)
}

/// The three projections replayed from the start of the log up to `to`.
async fn replay(store: &dyn Store, to: Position) -> Projections {
    let mut projections = Projections::default();
    projections.replay_to(store, to).await.unwrap();
    projections
}

/// Saves a snapshot as the runtime does: in a file of the store's own (the sled store keeps
/// them), or in chunks when `files` is `None`.
async fn save_in(store: &dyn Store, projections: &Projections, files: Option<&Path>) {
    let encoded = snapshot::encode(
        &projections.book,
        &projections.outreach,
        &projections.boards,
        files,
    )
    .unwrap();
    assert!(snapshot::save(store, encoded).await.unwrap());
}

async fn save(store: &dyn Store, projections: &Projections) {
    save_in(store, projections, store.files_directory().as_deref()).await;
}

/// The snapshot files in the store's files directory, by name.
fn snapshot_files(store: &dyn Store) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.files_directory().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// What a runtime's projections stand at once caught up.
async fn caught_up(runtime: &Runtime) -> Projections {
    dispatcher::catch_up(runtime).await.unwrap();
    let book = runtime.customers.lock().await.clone();
    let outreach = runtime.outreach.lock().await.clone();
    let boards = runtime.boards.lock().await.clone();
    Projections {
        book,
        outreach,
        boards,
    }
}

fn runtime(store: &Arc<dyn Store>, policy: Policy) -> Runtime {
    // After the scenario's end, the same for every runtime of a test.
    let after = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap();
    let clock = Arc::new(ManualClock::new(after.to_utc()));
    Runtime::new(store.clone(), clock, Arc::new(SeededIds::new(1))).with_snapshots(policy)
}

/// Each difference as the projection's name, for a readable failure.
fn differences(a: &Projections, b: &Projections) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if a.book != b.book {
        differ.push("book");
    }
    if a.outreach != b.outreach {
        differ.push("outbox");
    }
    if a.boards != b.boards {
        differ.push("boards");
    }
    differ
}

async fn outbox_answer(runtime: &Runtime, campaign: &str) -> serde_json::Value {
    let answer = app::execute(
        runtime,
        Request::Outbox(OutboxQuestion {
            campaign: campaign.to_string(),
            reach_out: None,
            customers: true,
        }),
    )
    .await;
    let Ok(Response::Outbox(view)) = answer else {
        panic!("the outbox answered {answer:?}");
    };
    serde_json::to_value(view).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_the_tail_are_what_the_whole_log_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (store, campaign) = scenario_store(dir.path()).await;
    let head = store.head().await.unwrap();
    assert!(head.0 > 10_000, "a log of some length: {head}");
    let whole = replay(store.as_ref(), head).await;
    assert!(whole.book.len() >= 3_000);

    // A snapshot half-way: read back, it is the replay up to there. In chunks first (as a store
    // that keeps no files holds it, and as an older battleplan left it in this one), then, after
    // a reset, in a file of the store's.
    let half = Position(head.0 / 2);
    let at_half = replay(store.as_ref(), half).await;
    save_in(store.as_ref(), &at_half, None).await;
    let read = snapshot::load(store.as_ref()).await.unwrap().unwrap();
    assert_eq!(differences(&read, &at_half), Vec::<&str>::new());
    store.reset(snapshot::PROJECTION).await.unwrap();
    save(store.as_ref(), &at_half).await;
    assert_eq!(
        snapshot_files(store.as_ref()),
        [format!("snapshot-{:020}.msgpack", half.0)]
    );
    assert!(
        !store
            .scan(snapshot::PROJECTION)
            .await
            .unwrap()
            .iter()
            .any(|(key, _)| key.starts_with(b"chunk/")),
        "a snapshot in a file has no chunks"
    );
    let read = snapshot::load(store.as_ref()).await.unwrap().unwrap();
    assert_eq!(differences(&read, &at_half), Vec::<&str>::new());

    // A process that reads it catches up only the tail, to what the whole log gives.
    let from_snapshot = runtime(&store, Policy::READER);
    let caught = caught_up(&from_snapshot).await;
    assert_eq!(
        from_snapshot
            .snapshot
            .at
            .load(std::sync::atomic::Ordering::Acquire),
        half.0,
        "the snapshot was read"
    );
    assert_eq!(differences(&caught, &whole), Vec::<&str>::new());

    // And answers every question as one that replayed the whole log.
    let from_log = runtime(&store, Policy::default());
    let from_snapshot = runtime(&store, Policy::READER);
    let answered = outbox_answer(&from_snapshot, &campaign).await;
    assert_eq!(answered, outbox_answer(&from_log, &campaign).await);
    assert!(answered["customers"]
        .as_array()
        .is_some_and(|rows| rows.len() > 100));

    // `audit verify` finds it is what the log gives.
    let report = check_replay(store.as_ref()).await.unwrap();
    assert_eq!(report.finding, None);
    let check = report.snapshot.unwrap();
    assert_eq!((check.position, check.matches_replay), (half.0, true));

    // An owner saves a new snapshot once enough of the log was replayed past the last one, its
    // header in one commit with its checkpoint; the one before is kept (a reader of a copy of
    // the store may be reading it) until the next, and what a process killed while writing one
    // left (another process's partial file) is removed.
    let orphan = store
        .files_directory()
        .unwrap()
        .join(".snapshot-4000000000-killed");
    std::fs::write(&orphan, b"half a snapshot").unwrap();
    let owner = runtime(&store, Policy::OWNER);
    let _ = caught_up(&owner).await;
    let due = snapshot::due(half.0, head.0);
    let checkpoint = store.checkpoint(snapshot::PROJECTION).await.unwrap();
    assert_eq!(checkpoint, if due { head } else { half });
    dispatcher::save_snapshot_now(&runtime(&store, Policy::OWNER)).await;
    assert_eq!(
        store.checkpoint(snapshot::PROJECTION).await.unwrap(),
        head,
        "saved at the head"
    );
    assert_eq!(
        snapshot_files(store.as_ref()),
        [
            format!("snapshot-{:020}.msgpack", half.0),
            format!("snapshot-{:020}.msgpack", head.0)
        ],
        "the snapshot before is kept, the orphan removed"
    );
    let read = snapshot::load(store.as_ref()).await.unwrap().unwrap();
    assert_eq!(differences(&read, &whole), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_trusted_is_never_used_and_verify_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = scenario_store(dir.path()).await;
    let head = store.head().await.unwrap();
    let whole = replay(store.as_ref(), head).await;
    let at = Position(head.0 / 3);

    // Not what the log gives: the projections of a later position, saved as if at `at`.
    let mut wrong = replay(store.as_ref(), Position(at.0 + 500)).await;
    wrong.book.position = at;
    wrong.outreach.position = at;
    wrong.boards.position = at;
    save(store.as_ref(), &wrong).await;
    let report = check_replay(store.as_ref()).await.unwrap();
    let Some(Finding::Snapshot { detail }) = &report.finding else {
        panic!("verify finds the snapshot wrong: {report:?}");
    };
    assert!(detail.contains("differs from the replay"), "{detail}");
    assert!(!report.snapshot.unwrap().matches_replay);

    // Damaged: a byte of a chunk changed. Not read; the log is replayed instead.
    store.reset(snapshot::PROJECTION).await.unwrap();
    save_in(store.as_ref(), &replay(store.as_ref(), at).await, None).await;
    let stored = store.scan(snapshot::PROJECTION).await.unwrap();
    let (key, mut chunk) = stored
        .into_iter()
        .find(|(key, _)| key.starts_with(b"chunk/"))
        .unwrap();
    let middle = chunk.len() / 2;
    chunk[middle] ^= 0x20;
    store
        .commit(snapshot::PROJECTION, at, vec![(key, Some(chunk))])
        .await
        .unwrap();
    assert!(matches!(
        snapshot::load(store.as_ref()).await,
        Err(Unusable::Digest)
    ));

    // The same in a file: a byte changed where it still decodes (the middle of a text), or the
    // file cut short; and the file gone.
    store.reset(snapshot::PROJECTION).await.unwrap();
    save(store.as_ref(), &replay(store.as_ref(), at).await).await;
    let file = store
        .files_directory()
        .unwrap()
        .join(format!("snapshot-{:020}.msgpack", at.0));
    let good = std::fs::read(&file).unwrap();
    let text = good
        .windows(8)
        .position(|window| window == b"c-000123")
        .expect("a customer's id in the snapshot");
    let mut flipped = good.clone();
    flipped[text + 7] ^= 0x01;
    std::fs::write(&file, &flipped).unwrap();
    assert!(matches!(
        snapshot::load(store.as_ref()).await,
        Err(Unusable::Digest)
    ));
    std::fs::write(&file, &good[..good.len() - 1]).unwrap();
    assert!(matches!(
        snapshot::load(store.as_ref()).await,
        Err(Unusable::Digest)
    ));
    std::fs::remove_file(&file).unwrap();
    assert!(
        matches!(
            snapshot::load(store.as_ref()).await,
            Err(Unusable::File { .. })
        ),
        "a missing file is said"
    );
    std::fs::write(&file, &flipped).unwrap();
    let reader = runtime(&store, Policy::READER);
    assert_eq!(
        differences(&caught_up(&reader).await, &whole),
        Vec::<&str>::new()
    );
    assert_eq!(
        reader
            .snapshot
            .at
            .load(std::sync::atomic::Ordering::Acquire),
        0,
        "the damaged snapshot was not read"
    );
    let report = check_replay(store.as_ref()).await.unwrap();
    assert!(
        matches!(&report.finding, Some(Finding::Snapshot { detail }) if detail.contains("digest")),
        "{report:?}"
    );

    // Of another format: not read, not damage either; a new one replaces it.
    let header = store
        .get(snapshot::PROJECTION, b"header")
        .await
        .unwrap()
        .unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["format"] = serde_json::json!(snapshot::FORMAT + 1);
    store
        .commit(
            snapshot::PROJECTION,
            at,
            vec![(
                b"header".to_vec(),
                Some(serde_json::to_vec(&header).unwrap()),
            )],
        )
        .await
        .unwrap();
    assert!(matches!(
        snapshot::load(store.as_ref()).await,
        Err(Unusable::Format { .. })
    ));
    let report = check_replay(store.as_ref()).await.unwrap();
    assert_eq!(report.finding, None);
    assert!(report
        .snapshot
        .unwrap()
        .not_checked
        .is_some_and(|why| why.contains("format")));
    let owner = runtime(&store, Policy::OWNER);
    assert_eq!(
        differences(&caught_up(&owner).await, &whole),
        Vec::<&str>::new()
    );
    dispatcher::save_snapshot_now(&owner).await;
    let read = snapshot::load(store.as_ref()).await.unwrap().unwrap();
    assert_eq!(read.book.position, head);
}

/// The bytes of a snapshot of a known log. When this changes, a type a snapshot holds changed
/// its layout (or the scenario its log): raise `snapshot::FORMAT`, so that no battleplan reads
/// a snapshot in a layout it does not know, and record the new digest here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_known_log_is_these_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = scenario_store(dir.path()).await;
    let head = store.head().await.unwrap();
    let projections = replay(store.as_ref(), head).await;
    let encoded = snapshot::encode(
        &projections.book,
        &projections.outreach,
        &projections.boards,
        None,
    )
    .unwrap();
    // A file holds the same bytes as the chunks.
    let in_file = snapshot::encode(
        &projections.book,
        &projections.outreach,
        &projections.boards,
        store.files_directory().as_deref(),
    )
    .unwrap();
    assert_eq!(
        (in_file.bytes(), in_file.digest()),
        (encoded.bytes(), encoded.digest())
    );
    insta::assert_snapshot!(format!(
        "format {}: {} bytes at position {}, {}",
        snapshot::FORMAT,
        encoded.bytes(),
        encoded.position(),
        encoded.digest()
    ));
}
