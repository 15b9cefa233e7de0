//! `battleplan audit verify`, after the hash chain: every payload read as its type (upcasts
//! included), and the stored campaigns projection compared with a replay of the log up to the
//! projection's checkpoint, byte for byte (invariant 1: a rebuild gives exactly the same
//! result).
//!
//! The replay folds events with the projection's own rule (`projection::Campaigns::apply`) and
//! encodes each state as it does (`serde_json::to_vec`), stopping at the stored checkpoint
//! rather than at the head.
//!
//! The snapshot of the customer book, the outbox and the boards (`kernel::snapshot`), when there
//! is one, is compared the same way: the three projections replayed up to its position in the
//! same pass over the log, and compared with what it holds.

use std::collections::{BTreeMap, BTreeSet};

use battleplan_core::campaign::{CampaignEvent, CampaignState};
use battleplan_core::customer::events::CustomerEvent;
use battleplan_core::event::{Position, RecordedEvent, StoreError};
use battleplan_core::outreach::OutreachEvent;
use battleplan_core::task::TaskEvent;

use battleplan_adapters::VerifyReport;
use serde::{Deserialize, Serialize};

use crate::app::{AppError, Ctx};
use crate::kernel::projection::{Campaigns, NAME};
use crate::kernel::runtime::Store;
use crate::kernel::snapshot;

const BATCH: usize = 10_000;

/// How many times the stored projection is read while a daemon keeps storing it.
const PROJECTION_READS: usize = 20;

/// The first thing found wrong after the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An event whose payload cannot be read as its type.
    Payload { position: Position, detail: String },
    /// The stored projection is not what the log gives.
    Projection { key: Option<String>, detail: String },
    /// An event recorded at an instant before the event before it: the clock was set back
    /// (a store's instants never go backwards; see docs/auditing.md).
    BackInTime { position: Position, detail: String },
    /// The snapshot of the projections cannot be read, or is not what the log gives.
    Snapshot { detail: String },
}

impl Finding {
    pub fn position(&self) -> Option<u64> {
        match self {
            Finding::Payload { position, .. } | Finding::BackInTime { position, .. } => {
                Some(position.0)
            }
            Finding::Projection { .. } | Finding::Snapshot { .. } => None,
        }
    }

    pub fn key(&self) -> Option<&str> {
        match self {
            Finding::Payload { .. } | Finding::BackInTime { .. } | Finding::Snapshot { .. } => None,
            Finding::Projection { key, .. } => key.as_deref(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Payload { position, detail } | Finding::BackInTime { position, detail } => {
                write!(formatter, "position {position}: {detail}")
            }
            Finding::Projection { detail, .. } | Finding::Snapshot { detail } => {
                formatter.write_str(detail)
            }
        }
    }
}

/// What the replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events whose payload was read (all of them when nothing is found).
    pub payloads: u64,
    /// The stored projection's checkpoint.
    pub checkpoint: u64,
    /// Campaigns in the stored projection.
    pub campaigns: usize,
    /// The snapshot of the projections, when there is one.
    pub snapshot: Option<SnapshotCheck>,
    pub finding: Option<Finding>,
}

/// Reads an event's payload as the type its event type names; `Err` in words otherwise.
pub fn read_payload(event: &RecordedEvent) -> Result<(), String> {
    let kind = event.event_type.as_str();
    let result = if CampaignEvent::holds(kind) {
        CampaignEvent::decode(event).map(|_| ())
    } else if CustomerEvent::holds(kind) {
        CustomerEvent::decode(event).map(|_| ())
    } else if OutreachEvent::holds(kind) {
        OutreachEvent::decode(event).map(|_| ())
    } else if TaskEvent::holds(kind) {
        TaskEvent::decode(event).map(|_| ())
    } else if battleplan_core::metrics::MetricsEvent::holds(kind) {
        battleplan_core::metrics::MetricsEvent::decode(event).map(|_| ())
    } else if battleplan_core::report::schedule::ReportEvent::holds(kind) {
        battleplan_core::report::schedule::ReportEvent::decode(event).map(|_| ())
    } else {
        return Err(format!(
            "event type `{}` is not one this battleplan knows",
            kind.escape_debug()
        ));
    };
    result.map_err(|error| error.to_string())
}

/// Reads every payload and replays the campaigns up to the stored checkpoint, then compares.
/// Call it on a log whose chain checks out.
pub async fn check_replay(store: &dyn Store) -> Result<ReplayReport, StoreError> {
    // A running daemon may store the projection while it is read: read it again until its
    // checkpoint is the same before and after (it only moves forward, with the states).
    let mut attempts = 0;
    let (checkpoint, stored) = loop {
        let checkpoint = store.checkpoint(NAME).await?;
        let stored: BTreeMap<String, Vec<u8>> = store
            .scan(NAME)
            .await?
            .into_iter()
            .map(|(key, value)| (String::from_utf8_lossy(&key).into_owned(), value))
            .collect();
        attempts += 1;
        if store.checkpoint(NAME).await? == checkpoint || attempts == PROJECTION_READS {
            break (checkpoint, stored);
        }
    };
    let head = store.head().await?;
    let mut report = ReplayReport {
        payloads: 0,
        checkpoint: checkpoint.0,
        campaigns: stored.len(),
        snapshot: None,
        finding: None,
    };
    let mut replay = Campaigns::default();
    // The snapshot's projections replayed up to its position, when there is one.
    let snapshot_at = snapshot::position(store).await?;
    let mut projections = snapshot_at.map(|_| snapshot::Projections::default());
    let mut after = Position::START;
    let mut previous: Option<chrono::DateTime<chrono::Utc>> = None;
    'read: loop {
        let events = store.read_all(after, BATCH).await?;
        if events.is_empty() {
            break;
        }
        for event in &events {
            after = event.position;
            if let Some(previous) = previous.filter(|previous| event.recorded_at < *previous) {
                report.finding = Some(Finding::BackInTime {
                    position: event.position,
                    detail: format!(
                        "recorded at {}, before the event before it ({}): the clock was set back (--clock-at), so the log's order and its instants disagree",
                        event.recorded_at.to_rfc3339(),
                        previous.to_rfc3339()
                    ),
                });
                return Ok(report);
            }
            previous = Some(event.recorded_at);
            if let Err(detail) = read_payload(event) {
                report.finding = Some(Finding::Payload {
                    position: event.position,
                    detail,
                });
                return Ok(report);
            }
            report.payloads += 1;
            if let (Some(at), Some(projections)) = (snapshot_at, projections.as_mut()) {
                if event.position <= at {
                    // Its payload reads (checked above), so feeding cannot fail here.
                    let _ = crate::kernel::work::feed(
                        &mut projections.book,
                        &mut projections.outreach,
                        &mut projections.boards,
                        event,
                    );
                }
            }
            if event.position > checkpoint {
                continue;
            }
            // Its payload reads (checked above), so the fold cannot fail here.
            let _ = replay.apply(event);
        }
        if after >= head {
            break 'read;
        }
    }
    if checkpoint > head {
        report.finding = Some(Finding::Projection {
            key: None,
            detail: format!(
                "stored projection `{NAME}` says it reflects the log up to position {checkpoint}, but the log ends at {head}"
            ),
        });
        return Ok(report);
    }
    report.finding = compare(&stored, &replay.states, checkpoint)
        .map_err(|detail| StoreError::Io(format!("cannot encode a replayed campaign: {detail}")))?;
    if let Some(replayed) = projections {
        let (check, finding) = check_snapshot(store, replayed).await?;
        report.snapshot = Some(check);
        if report.finding.is_none() {
            report.finding = finding;
        }
    }
    Ok(report)
}

/// The snapshot read and compared with the projections replayed up to its position.
async fn check_snapshot(
    store: &dyn Store,
    replayed: snapshot::Projections,
) -> Result<(SnapshotCheck, Option<Finding>), StoreError> {
    let mut check = SnapshotCheck {
        position: replayed.book.position.0,
        matches_replay: false,
        not_checked: None,
    };
    let stored = match snapshot::load(store).await {
        Ok(Some(stored)) => stored,
        // Gone meanwhile (a daemon replaced it): nothing to compare.
        Ok(None) => {
            check.not_checked = Some("the snapshot was replaced while it was read".to_string());
            return Ok((check, None));
        }
        Err(snapshot::Unusable::Store(error)) => return Err(error),
        // An older battleplan's snapshot is not read, only replaced: no damage.
        Err(unusable @ snapshot::Unusable::Format { .. }) => {
            check.not_checked = Some(format!(
                "{unusable}; it is rebuilt from the log at the next start"
            ));
            return Ok((check, None));
        }
        Err(unusable) => {
            return Ok((
                check,
                Some(Finding::Snapshot {
                    detail: format!("{unusable} (a snapshot is never used when it does not read; the projections are rebuilt from the log)"),
                }),
            ))
        }
    };
    check.position = stored.book.position.0;
    if stored.book.position != replayed.book.position {
        // Replaced between the two reads: not the one replayed.
        check.not_checked = Some("the snapshot was replaced while it was read".to_string());
        return Ok((check, None));
    }
    let differs = [
        ("customer book", stored.book == replayed.book),
        ("outbox", stored.outreach == replayed.outreach),
        ("boards", stored.boards == replayed.boards),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(name, _)| name)
    .collect::<Vec<_>>();
    check.matches_replay = differs.is_empty();
    let finding = (!differs.is_empty()).then(|| Finding::Snapshot {
        detail: format!(
            "the snapshot of the projections at position {} differs from the replay of the log up to it: {}",
            check.position,
            differs.join(", ")
        ),
    });
    Ok((check, finding))
}

/// The first campaign whose stored bytes differ from the replay's, in key order.
fn compare(
    stored: &BTreeMap<String, Vec<u8>>,
    replayed: &BTreeMap<String, CampaignState>,
    checkpoint: Position,
) -> Result<Option<Finding>, String> {
    let keys: BTreeSet<&String> = stored.keys().chain(replayed.keys()).collect();
    for key in keys {
        let replay = replayed
            .get(key)
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|error| error.to_string())?;
        let stored = stored.get(key);
        let what = match (stored, replay) {
            (Some(stored), Some(replay)) if *stored == replay => continue,
            (Some(stored), Some(replay)) => difference(stored, &replay),
            (Some(_), None) => "stored, but the replay has no such campaign".to_string(),
            (None, Some(_)) => {
                "missing from the stored projection, present in the replay".to_string()
            }
            (None, None) => continue,
        };
        return Ok(Some(Finding::Projection {
            key: Some(key.clone()),
            detail: format!(
                "stored projection `{NAME}` differs from the replay for campaign {key} (stored checkpoint at position {checkpoint}): {what}"
            ),
        }));
    }
    Ok(None)
}

/// Words for the first field that differs between two encodings of a campaign.
fn difference(stored: &[u8], replay: &[u8]) -> String {
    let Ok(stored) = serde_json::from_slice::<serde_json::Value>(stored) else {
        return "the stored value is not JSON".to_string();
    };
    let Ok(replay) = serde_json::from_slice::<serde_json::Value>(replay) else {
        return "the replayed value is not JSON".to_string();
    };
    match first_difference(&stored, &replay, String::new()) {
        Some((path, stored, replay)) => format!(
            "field `{}` stored {}, replay {}",
            if path.is_empty() {
                "(the whole value)"
            } else {
                &path
            },
            show(stored),
            show(replay)
        ),
        None => "the same fields, encoded differently".to_string(),
    }
}

fn show(value: Option<&serde_json::Value>) -> String {
    const LONGEST: usize = 120;
    match value {
        None => "(absent)".to_string(),
        Some(value) => {
            let text = value.to_string();
            if text.chars().count() > LONGEST {
                let cut: String = text.chars().take(LONGEST).collect();
                format!("{cut}…")
            } else {
                text
            }
        }
    }
}

fn first_difference<'a>(
    a: &'a serde_json::Value,
    b: &'a serde_json::Value,
    path: String,
) -> Option<(
    String,
    Option<&'a serde_json::Value>,
    Option<&'a serde_json::Value>,
)> {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .find_map(|key| match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => first_difference(p, q, join(key)),
                    (p, q) => Some((join(key), p, q)),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(index, (p, q))| first_difference(p, q, format!("{path}[{index}]"))),
        _ if a == b => None,
        _ => Some((path, Some(a), Some(b))),
    }
}

/// `audit verify` on the runtime's store (by the daemon for another terminal, or by a process
/// on a read-only copy): the chain walked, then, on an intact chain, the payloads read and the
/// stored projection compared with a replay. The view says whether everything checks out.
pub async fn verify(ctx: &Ctx<'_>) -> Result<VerifyView, AppError> {
    let runtime = ctx.runtime;
    let Some(chain) = runtime.chain.clone() else {
        return Err(AppError::invalid(
            "this store cannot walk its chain over the bytes it stores",
        ));
    };
    // The sled store's walk blocks (it reads every chunk of the log): it runs off the daemon's
    // async threads (`ChainCheck`), beside the replay, which reads the log a second time.
    let (report, replay) = tokio::join!(chain.verify_chain(), check_replay(runtime.store.as_ref()));
    let report = report?;
    // The payloads and the replay count only on an intact chain: what a damaged log reads
    // as (or the error reading it gave) is left aside.
    let replay = if report.problem.is_none() {
        Some(replay?)
    } else {
        None
    };
    Ok(view(&report, replay.as_ref()))
}

/// The report as data.
fn view(report: &VerifyReport, replay: Option<&ReplayReport>) -> VerifyView {
    let finding = replay.and_then(|replay| replay.finding.as_ref());
    let intact = report.problem.is_none() && finding.is_none();
    let (problem_kind, problem_position, problem_key, problem) = match (&report.problem, finding) {
        (Some(problem), _) => (
            Some(ProblemKind::Chain),
            Some(problem.position.0),
            None,
            Some(problem.to_string()),
        ),
        (None, Some(finding)) => (
            Some(match finding {
                Finding::Payload { .. } => ProblemKind::Payload,
                Finding::Projection { .. } => ProblemKind::Projection,
                Finding::BackInTime { .. } => ProblemKind::Time,
                Finding::Snapshot { .. } => ProblemKind::Snapshot,
            }),
            finding.position(),
            finding.key().map(str::to_string),
            Some(finding.to_string()),
        ),
        (None, None) => (None, None, None, None),
    };
    VerifyView {
        intact,
        events: report.checked,
        head_hash: report.head_hash.clone(),
        problem_kind,
        problem_position,
        problem_key,
        problem,
        chain_intact: report.problem.is_none(),
        payloads_read: replay.map(|replay| replay.payloads),
        projection: replay
            .filter(|replay| {
                !matches!(
                    replay.finding,
                    Some(Finding::Payload { .. } | Finding::BackInTime { .. })
                )
            })
            .map(|replay| ProjectionCheck {
                name: NAME.to_string(),
                checkpoint: replay.checkpoint,
                campaigns: replay.campaigns,
                matches_replay: !matches!(replay.finding, Some(Finding::Projection { .. })),
            }),
        snapshot: replay.and_then(|replay| replay.snapshot.clone()),
    }
}

/// What failed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Positions, hashes or stream versions.
    Chain,
    /// A payload that does not read as its type.
    Payload,
    /// An event dated before the one before it.
    Time,
    /// The stored projection is not what the log gives.
    Projection,
    /// The snapshot of the projections does not read, or is not what the log gives.
    Snapshot,
}

/// What `audit verify` found (fields in the order the JSON has always shown them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyView {
    /// Everything checks out: the chain, the payloads and the stored projection.
    pub intact: bool,
    /// Events whose chain checks out.
    pub events: u64,
    pub head_hash: String,
    /// What failed first: `chain`, `payload`, `time` (an event dated before the one before it)
    /// or `projection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_kind: Option<ProblemKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_position: Option<u64>,
    /// The campaign whose stored state differs, for a projection problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_key: Option<String>,
    /// The problem, where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Whether the chain checks out (positions, hashes, stream versions).
    pub chain_intact: bool,
    /// Events whose payload was read as its type (not checked when the chain is broken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads_read: Option<u64>,
    /// The stored projection compared with the replay (not when an earlier check failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<ProjectionCheck>,
    /// The snapshot of the customer book, the outbox and the boards compared with the replay,
    /// when the store has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotCheck>,
}

/// The snapshot of the projections against the replay of the log up to its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotCheck {
    /// The log position the snapshot reflects.
    pub position: u64,
    pub matches_replay: bool,
    /// Why it was not compared (a snapshot of an older format, one replaced while read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
}

/// The stored projection against the replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectionCheck {
    pub name: String,
    /// The log position the stored projection reflects.
    pub checkpoint: u64,
    pub campaigns: usize,
    pub matches_replay: bool,
}
