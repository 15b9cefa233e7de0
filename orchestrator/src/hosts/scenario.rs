//! The scenario runner: a discrete-event simulation of a battle plan with the real orchestrator.
//! The same command handler, scheduler, projections and dispatcher as `battleplan run`, under a
//! manual clock and seeded ids, stepping from one due instant to the next (no sleeping). The
//! script's outside inputs (outcomes, people's commands, plan revisions, downtime) are applied
//! at their instants exactly as the command line would apply them; the captures are the same
//! commands' output at their instants. Running a scenario twice gives the same log, byte for
//! byte (the same head hash).
//!
//! The scenario format is `battleplan_scenarios::scenario` (docs/scenarios.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use battleplan_adapters::outbox::FileOutbox;
use battleplan_adapters::{SledEventLog, StoreOptions};
use battleplan_core::campaign::timeline::local;
use battleplan_core::campaign::{CampaignEvent, EventMeta};
use battleplan_core::context::{Clock as _, ManualClock, SeededIds};
use battleplan_core::customer::events::{CustomerEvent, ImportKind};
use battleplan_core::customer::quota::cost_of;
use battleplan_core::event::{Position, RecordedEvent};
use battleplan_core::outreach::events::OutreachEvent;
use battleplan_core::outreach::state::SendStatus;
use battleplan_core::plan::values::{grouped, Money};
use battleplan_core::plan::{Plan, EXAMPLE_PLAN};
use battleplan_core::report::schedule::ReportEvent;
use battleplan_core::task::events::{ReminderKind, TaskEvent};
use battleplan_scenarios::customers::{
    write_customers, write_outcomes, FileFormat, Options, GENERATED_OUTCOME_COLUMNS,
};
use battleplan_scenarios::scenario::{self, Action, Loaded, OutcomeInput};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::app::import::{self, ImportRequest};
use crate::app::{self, Action as Act, Request};
use crate::kernel::runtime::{HandleError, Runtime};
use crate::kernel::scheduler::{Scheduler, Timing};
use crate::present::{self, Reply};

/// Where a scenario's run is written.
#[derive(Debug, Clone)]
pub struct Output {
    /// The directory: `data/` (the store, the outbox), `plan.toml`, the imported files,
    /// `timeline.txt`, `report.txt` and `captures/`.
    pub dir: PathBuf,
}

impl Output {
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// What a scenario's run produced.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The report: what the scenario demonstrates, the timeline, the captures and the summary.
    pub report: String,
    /// Events in the log, and the hash of the last (the whole log's fingerprint).
    pub events: u64,
    pub head_hash: String,
    pub campaign: String,
}

/// A scenario that could not run: its file, or a step the orchestrator refused unexpectedly.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario is wrong (its file, a plan edit, a capture that fails): exit 2.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Handle(#[from] HandleError),
    #[error("{0}")]
    Io(String),
}

/// Progress as the run goes: the virtual clock's instant.
pub type Progress<'a> = &'a (dyn Fn(DateTime<Utc>) + Sync);

/// One line of the timeline: when, who or what, what.
#[derive(Debug, Clone)]
struct Line {
    at: DateTime<Utc>,
    order: u64,
    who: String,
    what: String,
}

/// Runs a loaded scenario into `output.dir` (which must not exist or be empty).
pub async fn run(
    loaded: &Loaded,
    output: &Output,
    progress: Progress<'_>,
) -> Result<Finished, ScenarioError> {
    let scenario = &loaded.scenario;
    let plan_text = match scenario.plan.file.as_str() {
        "example" => EXAMPLE_PLAN.to_string(),
        relative => std::fs::read_to_string(loaded.resolve(relative)).map_err(|error| {
            ScenarioError::Invalid(format!(
                "{}: plan: cannot read {relative}: {error}",
                loaded.path.display()
            ))
        })?,
    };
    let plan_text = scenario::edit(&plan_text, &scenario.plan.edits).map_err(|message| {
        ScenarioError::Invalid(format!("{}: plan: {message}", loaded.path.display()))
    })?;
    let plan = checked_plan(&plan_text).map_err(|message| {
        ScenarioError::Invalid(format!("{}: plan: {message}", loaded.path.display()))
    })?;
    for file in [
        &scenario.customers.as_ref().and_then(|c| c.file.clone()),
        &scenario.outcomes.as_ref().and_then(|o| o.file.clone()),
    ]
    .into_iter()
    .flatten()
    {
        if !loaded.resolve(file).is_file() {
            return Err(ScenarioError::Invalid(format!(
                "{}: {file} is not a file (paths are relative to the scenario file)",
                loaded.path.display()
            )));
        }
    }
    preflight(loaded, &plan_text)?;
    // Only now, with the scenario's own parts checked, is anything written; and a run that
    // fails part way (a capture the orchestrator refuses) leaves nothing behind.
    let existed = output.dir.exists();
    prepare(&output.dir)?;
    let result = execute(loaded, output, progress, plan_text, plan).await;
    if result.is_err() {
        discard(&output.dir, existed);
    }
    result
}

/// The run itself, into a prepared output directory.
async fn execute(
    loaded: &Loaded,
    output: &Output,
    progress: Progress<'_>,
    plan_text: String,
    plan: Plan,
) -> Result<Finished, ScenarioError> {
    let scenario = &loaded.scenario;
    let campaign = plan.campaign.id.clone();
    let sled = Arc::new(
        SledEventLog::open(&output.data(), StoreOptions::default())
            .map_err(|error| ScenarioError::Io(format!("opening the scenario's store: {error}")))?,
    );
    let clock = Arc::new(ManualClock::new(scenario.plan.apply_at));
    let ids = Arc::new(SeededIds::new(scenario.seed));
    let store: Arc<dyn crate::kernel::runtime::Store> = sled.clone();
    let fresh_runtime = || Runtime::new(store.clone(), clock.clone(), ids.clone());
    let mut runner = Runner {
        output: output.clone(),
        runtime: fresh_runtime(),
        clock: clock.clone(),
        campaign: campaign.clone(),
        plan_text,
        plan,
        notes: Vec::new(),
        captures: String::new(),
        files: 0,
    };

    // The plan, the customers and their past outcomes, as a promo manager would set them up.
    write(&output.dir.join("plan.toml"), runner.plan_text.as_bytes())?;
    runner
        .expect(
            "plan",
            Request::ApplyPlan {
                file_name: "plan.toml".into(),
                source: runner.plan_text.clone(),
                actor: scenario.plan.actor.clone(),
                reason: None,
                command_id: None,
            },
        )
        .await?;
    if let Some(customers) = &scenario.customers {
        clock.set(customers.import_at);
        let path = match (customers.generate, &customers.file) {
            (Some(count), _) => {
                let mut bytes = Vec::new();
                write_customers(
                    &mut bytes,
                    Options {
                        count,
                        seed: scenario.seed,
                        as_of: customers.import_at,
                        format: FileFormat::Csv,
                    },
                )
                .map_err(|error| ScenarioError::Io(error.to_string()))?;
                let path = output.dir.join("customers.csv");
                write(&path, &bytes)?;
                path
            }
            (None, Some(file)) => loaded.resolve(file),
            (None, None) => return Err(ScenarioError::Invalid("customers: no source".into())),
        };
        runner
            .import(ImportKind::Customers, &path, &customers.actor)
            .await?;
    }
    if let Some(outcomes) = &scenario.outcomes {
        clock.set(outcomes.import_at);
        let path = match (&outcomes.file, &scenario.customers) {
            (Some(file), _) => loaded.resolve(file),
            (None, Some(customers)) => {
                let mut bytes = Vec::new();
                write_outcomes(
                    &mut bytes,
                    Options {
                        count: customers.generate.unwrap_or(0),
                        seed: scenario.seed,
                        as_of: outcomes.import_at,
                        format: FileFormat::Csv,
                    },
                )
                .map_err(|error| ScenarioError::Io(error.to_string()))?;
                let path = output.dir.join("outcomes.csv");
                write(&path, &bytes)?;
                path
            }
            (None, None) => return Err(ScenarioError::Invalid("outcomes: no source".into())),
        };
        runner
            .import(ImportKind::Outcomes, &path, &outcomes.actor)
            .await?;
    }

    // The daemon starts at `run.from` and runs to each input in turn, a day at a time.
    clock.set(scenario.run.from);
    let outbox = Arc::new(FileOutbox::new(output.data().join("outbox")));
    let start = |runtime: &Runtime| {
        Scheduler::new(runtime.clone(), Timing::Simulated(clock.clone()), None)
            .with_outbox(outbox.clone())
    };
    let mut scheduler = Some(start(&runner.runtime));
    if let Some(scheduler) = scheduler.as_mut() {
        scheduler.start().await?;
    }
    let mut down_until: Option<DateTime<Utc>> = None;
    let mut steps = loaded.steps.iter().peekable();
    loop {
        let next_step = steps.peek().map(|step| step.instant);
        let target = next_step.unwrap_or(scenario.run.until);
        // A downtime that ends before the next input: the daemon restarts at its end.
        if let Some(until) = down_until.filter(|until| *until <= target) {
            clock.set(until);
            // A restarted daemon: nothing in memory, everything from the log.
            runner.runtime = fresh_runtime();
            let mut restarted = start(&runner.runtime);
            restarted.start().await?;
            let summary = restarted.advance_to(until).await?;
            runner.note_first(
                until,
                "daemon",
                format!(
                    "restarts after downtime and catches up: {} overdue step(s) recorded",
                    summary.caught_up
                ),
            );
            scheduler = Some(restarted);
            down_until = None;
        }
        if let Some(scheduler) = scheduler.as_mut() {
            // A day at a time, so that progress can be shown; the steps are the same.
            let mut now = clock.now();
            while now < target {
                let to = (now + Duration::days(1)).min(target);
                scheduler.advance_to(to).await?;
                progress(to);
                now = to;
            }
            scheduler.advance_to(target).await?;
        } else {
            clock.set(target.max(clock.now()));
        }
        progress(target);
        let Some(step) = steps.next() else { break };
        clock.set(step.instant);
        match &step.action {
            Action::Down { until } => {
                runner.note(
                    step.instant,
                    "daemon",
                    format!("stops (down until {})", runner.local(*until)),
                );
                scheduler = None;
                down_until = Some(*until);
            }
            action => runner.apply(step.instant, step.index, action).await?,
        }
    }
    if let Some(until) = down_until {
        runner.note(
            scenario.run.until,
            "daemon",
            format!(
                "still down at the end of the run (it was to restart at {})",
                runner.local(until)
            ),
        );
    }
    drop(scheduler);
    crate::kernel::dispatcher::catch_up(&runner.runtime).await?;

    let fold = Fold::read(runner.runtime.store.as_ref(), runner.zone()).await?;
    let head_hash = fold.head_hash.clone();
    // The auditor's first check, on the log the run leaves: the hash chain end to end.
    let verified = sled
        .verify()
        .map_err(|error| ScenarioError::Io(format!("verifying the log: {error}")))?;
    if let Some(problem) = verified.problem {
        return Err(ScenarioError::Io(format!(
            "the scenario's log does not verify: {problem}"
        )));
    }
    if verified.head_hash != head_hash || verified.checked != fold.events {
        return Err(ScenarioError::Io(format!(
            "the log verifies to {} events and head hash {}, but reads back as {} and {head_hash}",
            verified.checked, verified.head_hash, fold.events
        )));
    }
    let timeline = runner.timeline(&fold);
    write(&output.dir.join("timeline.txt"), timeline.as_bytes())?;
    let summary = runner.summary(&fold, scenario.run.until).await?;
    let mut report = String::new();
    let _ = writeln!(report, "Scenario: {}", scenario.name);
    for line in scenario.demonstrates.trim().lines() {
        let _ = writeln!(report, "  {}", line.trim_end());
    }
    let _ = writeln!(
        report,
        "Campaign {campaign} in {}; seed {}; run from {} to {}; {} events in the log.",
        runner.plan.campaign.time_zone.name(),
        scenario.seed,
        runner.local(scenario.run.from),
        runner.local(scenario.run.until),
        fold.events
    );
    let _ = writeln!(report, "\nTimeline ({}):", runner.plan.campaign.time_zone);
    report.push_str(&timeline);
    if !runner.captures.is_empty() {
        report.push_str(&runner.captures);
    }
    report.push_str(&summary);
    write(&output.dir.join("report.txt"), report.as_bytes())?;
    Ok(Finished {
        report,
        events: fold.events,
        head_hash,
        campaign,
    })
}

struct Runner {
    output: Output,
    runtime: Runtime,
    clock: Arc<ManualClock>,
    campaign: String,
    /// The plan in force, as text and checked.
    plan_text: String,
    plan: Plan,
    /// Lines the log does not hold: downtime, refused inputs.
    notes: Vec<Line>,
    captures: String,
    /// Files written for inputs so far (their names are numbered).
    files: usize,
}

impl Runner {
    fn zone(&self) -> Tz {
        self.plan.campaign.time_zone
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        local(self.zone(), at)
    }

    /// A line the log does not hold, after the events recorded at its instant.
    fn note(&mut self, at: DateTime<Utc>, who: &str, what: String) {
        self.notes.push(Line {
            at,
            order: u64::MAX,
            who: who.to_string(),
            what,
        });
    }

    /// A line the log does not hold, before the events recorded at its instant.
    fn note_first(&mut self, at: DateTime<Utc>, who: &str, what: String) {
        self.notes.push(Line {
            at,
            order: 0,
            who: who.to_string(),
            what,
        });
    }

    /// Runs a command that must succeed.
    async fn expect(&mut self, what: &str, remote: Request) -> Result<Reply, ScenarioError> {
        let reply = present::render(&app::execute(&self.runtime, remote).await, false);
        if reply.code != 0 {
            return Err(ScenarioError::Invalid(format!(
                "{what} at {}: {}{}",
                self.local(self.clock.now()),
                reply.stderr.trim().trim_start_matches("battleplan: "),
                reply.stdout.trim_end()
            )));
        }
        Ok(reply)
    }

    /// Runs a person's command; a refusal is part of the story, noted in the timeline.
    async fn attempt(&mut self, at: DateTime<Utc>, who: &str, what: &str, remote: Request) {
        let reply = present::render(&app::execute(&self.runtime, remote).await, false);
        if reply.code != 0 {
            let message = reply
                .stderr
                .trim()
                .trim_start_matches("battleplan: ")
                .to_string();
            self.note(at, who, format!("{what} refused: {message}"));
        }
    }

    async fn import(
        &mut self,
        kind: ImportKind,
        path: &Path,
        actor: &str,
    ) -> Result<(), ScenarioError> {
        let path =
            std::path::absolute(path).map_err(|error| ScenarioError::Io(error.to_string()))?;
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = import::run(
            &app::Ctx::new(&self.runtime),
            ImportRequest {
                kind,
                path,
                file_name: file_name.clone(),
                format: battleplan_adapters::import::Format::Csv,
                skip_bad_rows: false,
                actor: actor.to_string(),
            },
        )
        .await
        .map(app::Response::Import);
        let reply = present::render(&outcome, false);
        if reply.code != 0 {
            return Err(ScenarioError::Invalid(format!(
                "importing {file_name}: {}",
                reply.stderr.trim_end()
            )));
        }
        Ok(())
    }

    async fn apply(
        &mut self,
        at: DateTime<Utc>,
        index: usize,
        action: &Action,
    ) -> Result<(), ScenarioError> {
        let campaign = self.campaign.clone();
        let act = |action: Act, by: &scenario::Act| Request::Act {
            campaign: campaign.clone(),
            action,
            actor: by.actor.clone(),
            reason: Some(by.reason.clone()),
            command_id: None,
        };
        match action {
            Action::Outcomes(input) => self.outcomes(at, index, input).await?,
            Action::Pause(by) => {
                self.attempt(at, &by.actor, "pause", act(Act::Pause, by))
                    .await
            }
            Action::Resume(by) => {
                self.attempt(at, &by.actor, "resume", act(Act::Resume, by))
                    .await
            }
            Action::Advance(by) => {
                self.attempt(at, &by.actor, "advance", act(Act::Advance, by))
                    .await
            }
            Action::Cancel(by) => {
                self.attempt(at, &by.actor, "cancel", act(Act::Cancel, by))
                    .await
            }
            Action::Revise(revise) => {
                let text = scenario::edit(&self.plan_text, &revise.edits)
                    .map_err(|message| ScenarioError::Invalid(format!("revise: {message}")))?;
                let plan = checked_plan(&text)
                    .map_err(|message| ScenarioError::Invalid(format!("revise: {message}")))?;
                self.files += 1;
                let name = format!("plan-revision-{}.toml", self.files);
                write(&self.output.dir.join(&name), text.as_bytes())?;
                let reply = app::execute(
                    &self.runtime,
                    Request::ApplyPlan {
                        file_name: name,
                        source: text.clone(),
                        actor: revise.actor.clone(),
                        reason: revise.reason.clone(),
                        command_id: None,
                    },
                )
                .await;
                match reply {
                    Ok(_) => {
                        self.plan_text = text;
                        self.plan = plan;
                    }
                    Err(error) => {
                        self.note(at, &revise.actor, format!("revision refused: {error}"));
                    }
                }
            }
            Action::TaskDone(done) => {
                self.attempt(
                    at,
                    &done.actor,
                    "task done",
                    Request::TaskDone(crate::app::tasks::TaskDoneRequest {
                        campaign: Some(campaign.clone()),
                        occurrence: done.id.clone(),
                        actor: done.actor.clone(),
                        note: done.note.clone(),
                        command_id: None,
                    }),
                )
                .await
            }
            Action::ChannelResume(resume) => {
                self.attempt(
                    at,
                    &resume.actor,
                    "channel resume",
                    Request::ChannelResume {
                        campaign: campaign.clone(),
                        channel: resume.channel.clone(),
                        actor: resume.actor.clone(),
                        reason: resume.reason.clone(),
                        command_id: None,
                    },
                )
                .await
            }
            Action::Capture(what) => self.capture(at, what).await?,
            Action::Down { .. } => {}
        }
        Ok(())
    }

    /// Customers answering a reach-out: written as an outcomes file and imported, as a user
    /// would import what came back.
    async fn outcomes(
        &mut self,
        at: DateTime<Utc>,
        index: usize,
        input: &OutcomeInput,
    ) -> Result<(), ScenarioError> {
        crate::kernel::dispatcher::catch_up(&self.runtime).await?;
        // Who: the customers listed, or a share of those the reach-out has sent to, evenly.
        let (customers, kind) = {
            let outreach = self.runtime.outreach.lock().await;
            let mut sent: BTreeMap<&str, (&str, String)> = BTreeMap::new();
            for send in outreach.sends_of(&self.campaign) {
                if send.planned.reach_out == input.reach_out
                    && matches!(send.status, SendStatus::Sent { .. })
                {
                    sent.insert(
                        send.planned.key.as_str(),
                        (send.planned.customer.as_str(), kind_word(send.planned.kind)),
                    );
                }
            }
            let kind = sent
                .values()
                .next()
                .map(|(_, kind)| kind.clone())
                .unwrap_or_else(|| "mail".to_string());
            let mut chosen: Vec<String> = Vec::new();
            match input.share {
                Some(share) => {
                    // Each customer drawn with probability `share` from a hash of the entry's
                    // place in the script and the customer: reproducible, and two entries
                    // draw independently.
                    let salt = index;
                    for (customer, _) in sent.values() {
                        let hash = blake3::hash(format!("{salt}/{customer}").as_bytes());
                        let mut word = [0u8; 8];
                        word.copy_from_slice(&hash.as_bytes()[..8]);
                        let draw = u64::from_le_bytes(word) as f64 / u64::MAX as f64;
                        if draw < share && !chosen.iter().any(|c| c == customer) {
                            chosen.push((*customer).to_string());
                        }
                    }
                }
                None => chosen.clone_from(&input.customers),
            }
            (chosen, kind)
        };
        self.files += 1;
        let name = format!(
            "outcomes-{:02}-{}-{}.csv",
            self.files, input.kind, input.reach_out
        );
        let mut text = GENERATED_OUTCOME_COLUMNS.join(",");
        text.push('\n');
        let instant = at.to_rfc3339();
        for customer in &customers {
            let amount = input.amount.as_deref().unwrap_or("");
            let channel = if input.kind == "ordered" { "" } else { &kind };
            let _ = writeln!(
                text,
                "{customer},{},{instant},{},{},{channel},{amount},",
                input.kind, self.campaign, input.reach_out
            );
        }
        let path = self.output.dir.join(&name);
        write(&path, text.as_bytes())?;
        if customers.is_empty() {
            self.note(
                at,
                "script",
                format!(
                    "no customer to record `{}` for: {} has sent nothing yet",
                    input.kind, input.reach_out
                ),
            );
            return Ok(());
        }
        self.import(ImportKind::Outcomes, &path, "script").await
    }

    async fn capture(&mut self, at: DateTime<Utc>, what: &[String]) -> Result<(), ScenarioError> {
        let dir = self.output.dir.join("captures");
        std::fs::create_dir_all(&dir).map_err(|error| ScenarioError::Io(error.to_string()))?;
        for capture in what {
            let campaign = self.campaign.clone();
            let remote = match capture.as_str() {
                "status" => Request::Status {
                    campaign: Some(campaign),
                },
                "tasks" => Request::Tasks(crate::app::tasks::TasksQuestion {
                    campaign: Some(campaign),
                    role: None,
                    // Overdue, and what is due in the next two days.
                    due_before: Some(at + Duration::days(2)),
                }),
                "funnel" => Request::Funnel { campaign },
                "outbox" => Request::Outbox(crate::app::outreach::OutboxQuestion {
                    campaign,
                    reach_out: None,
                    customers: false,
                }),
                other => match other.strip_prefix("explain:") {
                    Some(customer) => Request::Explain(crate::app::explain::ExplainQuestion {
                        campaign,
                        customer: customer.to_string(),
                        as_of: Some(at),
                    }),
                    None => {
                        return Err(ScenarioError::Invalid(format!(
                            "capture `{other}` is not supported by this runner"
                        )))
                    }
                },
            };
            let reply = self.expect(capture, remote).await?;
            let title = format!("{capture} at {}", self.local(at));
            let _ = writeln!(self.captures, "\n== {title} ==");
            self.captures.push_str(&reply.stdout);
            let file = format!(
                "{}-{}.txt",
                at.with_timezone(&self.zone()).format("%Y-%m-%dT%H%M"),
                capture.replace(':', "-")
            );
            write(&dir.join(file), reply.stdout.as_bytes())?;
        }
        Ok(())
    }

    /// The timeline in words, from the log (folded by [`Fold`]) and the runner's notes: campaign
    /// events as they are, the outbox and reminders summed up per reach-out and per local day.
    fn timeline(&self, fold: &Fold) -> String {
        let zone = self.zone();
        let mut lines: Vec<Line> = self.notes.clone();
        lines.extend(fold.lines.iter().cloned());
        let days = &fold.days;
        let costs: BTreeMap<&str, _> = self
            .plan
            .channels
            .iter()
            .map(|channel| (channel.id.as_str(), channel.cost_per_1000))
            .collect();
        for (day, totals) in days {
            let Some(what) = totals.words(&costs, &self.plan.campaign.currency) else {
                continue;
            };
            let end = day
                .succ_opt()
                .and_then(|next| next.and_hms_opt(0, 0, 0))
                .and_then(|midnight| midnight.and_local_timezone(zone).earliest())
                .map(|instant| instant.with_timezone(&Utc) - Duration::milliseconds(1));
            lines.push(Line {
                at: end.unwrap_or(DateTime::<Utc>::MAX_UTC),
                order: u64::MAX - 1,
                who: format!("{} total", day.format("%m-%d")),
                what,
            });
        }
        lines.sort_by_key(|line| (line.at, line.order));
        let mut text = String::new();
        for line in lines {
            let when = line.at.with_timezone(&zone).format("%Y-%m-%d %H:%M");
            let _ = writeln!(text, "{when}  {:<17} {}", line.who, line.what);
        }
        text
    }

    /// The end of the run in numbers: messages per day and channel with free and paid volume
    /// and cost, reminders per role, exclusions per reach-out, the funnel, targets vs actuals.
    async fn summary(&mut self, fold: &Fold, at: DateTime<Utc>) -> Result<String, ScenarioError> {
        let (sends, reminders, reasons) = (&fold.sends, &fold.reminders, &fold.reasons);
        let mut text = String::new();
        let _ = writeln!(text, "\nSummary at {}", self.local(at));
        let _ = writeln!(text, "\nPhase transitions: {}", fold.transitions.len());
        for (at, what) in &fold.transitions {
            let _ = writeln!(text, "  {}  {what}", self.local(*at));
        }
        let _ = writeln!(text, "\nReminders to staff, per role:");
        for (role, (count, escalations)) in reminders {
            let _ = writeln!(
                text,
                "  {role:<8} {:>6}  ({} escalation(s))",
                grouped(*count),
                grouped(*escalations)
            );
        }
        let currency = &self.plan.campaign.currency;
        let _ = writeln!(
            text,
            "\nMessages to customers, per local day:\n  {:<10}  {:<10} {:>8} {:>8} {:>8} {:>12}",
            "day", "channel", "sent", "free", "paid", "cost"
        );
        let mut total = (0u64, 0u64, 0i64);
        for ((day, channel), (sent, paid)) in sends {
            let price = self
                .plan
                .channels
                .iter()
                .find(|c| &c.id == channel)
                .and_then(|c| c.cost_per_1000);
            let cost = cost_of(*paid, price);
            total = (total.0 + sent, total.1 + paid, total.2 + cost.minor());
            let _ = writeln!(
                text,
                "  {:<10}  {channel:<10} {:>8} {:>8} {:>8} {:>12}",
                day.format("%Y-%m-%d"),
                grouped(*sent),
                grouped(sent - paid),
                grouped(*paid),
                format!("{cost} {currency}")
            );
        }
        let _ = writeln!(
            text,
            "  {:<10}  {:<10} {:>8} {:>8} {:>8} {:>12}",
            "total",
            "",
            grouped(total.0),
            grouped(total.0 - total.1),
            grouped(total.1),
            format!("{} {currency}", Money::from_minor(total.2))
        );
        let _ = writeln!(text, "\nNot sent, per reach-out and reason:");
        for (reach_out, counts) in reasons {
            let words: Vec<String> = counts
                .iter()
                .map(|(reason, n)| format!("{reason} {}", grouped(*n)))
                .collect();
            let _ = writeln!(text, "  {reach_out:<24} {}", words.join(", "));
        }
        let funnel = self
            .expect(
                "funnel",
                Request::Funnel {
                    campaign: self.campaign.clone(),
                },
            )
            .await?;
        let _ = writeln!(text);
        text.push_str(&funnel.stdout);
        let status = self
            .expect(
                "status",
                Request::Status {
                    campaign: Some(self.campaign.clone()),
                },
            )
            .await?;
        let _ = writeln!(text);
        text.push_str(&status.stdout);
        Ok(text)
    }
}

/// What the scenario's report reads from the log, folded one event at a time as the log is
/// streamed once at the end of the run (the log is never held whole in memory).
#[derive(Debug)]
struct Fold {
    zone: Tz,
    /// Timeline lines the log holds (campaign events, imports, reach-outs planned...).
    lines: Vec<Line>,
    /// Import streams and their files.
    files: BTreeMap<String, String>,
    /// Per reach-out: not-sent reasons since its last planning, and planned days.
    not_sent: BTreeMap<String, BTreeMap<String, u64>>,
    planned_days: BTreeMap<String, BTreeMap<NaiveDate, u64>>,
    days: BTreeMap<NaiveDate, Day>,
    /// Whether each send goes as paid volume, by key, as last planned or moved.
    paid: std::collections::HashMap<Box<str>, bool>,
    role_of: BTreeMap<String, String>,
    /// The summary's counts: (day, channel) -> (sent, paid); role -> (reminders, escalations);
    /// reach-out -> reason -> not sent; and each phase transition in words.
    sends: BTreeMap<(NaiveDate, String), (u64, u64)>,
    reminders: BTreeMap<String, (u64, u64)>,
    reasons: BTreeMap<String, BTreeMap<String, u64>>,
    transitions: Vec<(DateTime<Utc>, String)>,
    /// Events folded, and the last one's hash.
    events: u64,
    head_hash: String,
}

impl Fold {
    fn new(zone: Tz) -> Fold {
        Fold {
            zone,
            lines: Vec::new(),
            files: BTreeMap::new(),
            not_sent: BTreeMap::new(),
            planned_days: BTreeMap::new(),
            days: BTreeMap::new(),
            paid: std::collections::HashMap::new(),
            role_of: BTreeMap::new(),
            sends: BTreeMap::new(),
            reminders: BTreeMap::new(),
            reasons: BTreeMap::new(),
            transitions: Vec::new(),
            events: 0,
            head_hash: String::new(),
        }
    }

    /// Reads the whole log through the fold, a batch at a time.
    async fn read(
        store: &dyn crate::kernel::runtime::Store,
        zone: Tz,
    ) -> Result<Fold, HandleError> {
        let mut fold = Fold::new(zone);
        let mut after = Position::START;
        loop {
            let batch = store.read_all(after, 10_000).await?;
            let Some(last) = batch.last() else { break };
            after = last.position;
            fold.head_hash = hex(&last.hash);
            fold.events += batch.len() as u64;
            for event in &batch {
                fold.feed(event);
            }
        }
        Ok(fold)
    }

    fn feed(&mut self, event: &RecordedEvent) {
        let zone = self.zone;
        if let Ok(Some(TaskEvent::ReminderPlanned(reminder))) = TaskEvent::decode(event) {
            let counts = self.reminders.entry(reminder.role.clone()).or_default();
            counts.0 += 1;
            if reminder.kind == ReminderKind::Escalation {
                counts.1 += 1;
            }
        }
        if let Ok(Some(CampaignEvent::PhaseEntered(entered))) = CampaignEvent::decode(event) {
            self.transitions.push((
                event.recorded_at,
                CampaignEvent::PhaseEntered(entered).summary(zone),
            ));
        }
        let at = event.recorded_at;
        let day = at.with_timezone(&zone).date_naive();
        let who = event.metadata.actor.clone();
        let mut pushed = Vec::new();
        let mut line = |what: String| {
            pushed.push(Line {
                at,
                order: event.position.0,
                who: who.clone(),
                what,
            })
        };
        if let Ok(Some(decoded)) = CampaignEvent::decode(event) {
            let meta = EventMeta::of(event);
            let mut what = decoded.summary(zone);
            match &decoded {
                CampaignEvent::PhaseEntered(entered) => {
                    let _ = write!(what, " (plan v{})", entered.plan_version);
                }
                CampaignEvent::CampaignCompleted(completed) => {
                    let _ = write!(what, " (plan v{})", completed.plan_version);
                }
                _ => {}
            }
            if let Some(reason) = &meta.reason {
                let _ = write!(what, ": \"{reason}\"");
            }
            line(what);
        } else if let Ok(Some(decoded)) = CustomerEvent::decode(event) {
            match decoded {
                CustomerEvent::ImportStarted(started) => {
                    self.files
                        .insert(event.stream.to_string(), started.file.clone());
                }
                CustomerEvent::ImportFinished(finished) => {
                    let file = self
                        .files
                        .get(event.stream.as_str())
                        .cloned()
                        .unwrap_or_default();
                    let what = match finished.kind {
                        ImportKind::Customers => "customers",
                        ImportKind::Outcomes => "outcomes",
                    };
                    line(format!(
                        "imported {} {what} from {file}",
                        grouped(finished.rows)
                    ));
                }
                _ => {}
            }
        } else if let Ok(Some(decoded)) = OutreachEvent::decode(event) {
            match decoded {
                OutreachEvent::SendPlanned(send) => {
                    self.paid.insert(send.key.as_str().into(), send.paid);
                    if send.attempt > 1 {
                        self.days.entry(day).or_default().follow_ups_planned += 1;
                    } else {
                        *self
                            .planned_days
                            .entry(send.reach_out.clone())
                            .or_default()
                            .entry(send.day)
                            .or_default() += 1;
                    }
                }
                OutreachEvent::NotSent(skipped) => {
                    *self
                        .reasons
                        .entry(skipped.reach_out.clone())
                        .or_default()
                        .entry(skipped.reason.key().to_string())
                        .or_default() += 1;
                    if skipped.attempt > 1 || is_dispatch_reason(skipped.reason.key()) {
                        *self
                            .days
                            .entry(day)
                            .or_default()
                            .held_back
                            .entry(format!("{} {}", skipped.reach_out, skipped.reason.key()))
                            .or_default() += 1;
                    } else {
                        *self
                            .not_sent
                            .entry(skipped.reach_out.clone())
                            .or_default()
                            .entry(skipped.reason.key().to_string())
                            .or_default() += 1;
                    }
                }
                OutreachEvent::ReachOutPlanned(planned) => {
                    let reasons = self.not_sent.remove(&planned.reach_out).unwrap_or_default();
                    let spread = self
                        .planned_days
                        .remove(&planned.reach_out)
                        .unwrap_or_default();
                    let mut what = format!(
                        "reach-out {} planned: segment {}, {} to send",
                        planned.reach_out,
                        grouped(planned.segment_size),
                        grouped(planned.planned)
                    );
                    if let (Some(first), Some(last)) =
                        (spread.keys().next(), spread.keys().next_back())
                    {
                        let _ = write!(
                            what,
                            " over {} day(s) ({} to {})",
                            spread.len(),
                            first.format("%m-%d"),
                            last.format("%m-%d")
                        );
                    }
                    let _ = write!(what, ", {} not sent", grouped(planned.not_sent));
                    if !reasons.is_empty() {
                        let words: Vec<String> = reasons
                            .iter()
                            .map(|(reason, n)| format!("{reason} {}", grouped(*n)))
                            .collect();
                        let _ = write!(what, " ({})", words.join(", "));
                    }
                    line(what);
                }
                OutreachEvent::MessageSent(sent) => {
                    let today = self.days.entry(day).or_default();
                    if sent.channel == "staff" {
                        let role = self
                            .role_of
                            .get(&sent.key)
                            .cloned()
                            .unwrap_or_else(|| "staff".to_string());
                        *today.reminders.entry(role).or_default() += 1;
                    } else if !sent.duplicate {
                        let paid = self.paid.get(sent.key.as_str()).copied().unwrap_or(false);
                        let counts = today.sent.entry(sent.channel.clone()).or_default();
                        counts.0 += 1;
                        counts.1 += u64::from(paid);
                        let counts = self.sends.entry((day, sent.channel.clone())).or_default();
                        counts.0 += 1;
                        counts.1 += u64::from(paid);
                    }
                }
                OutreachEvent::FollowUpStopped(stopped) => {
                    *self
                        .days
                        .entry(day)
                        .or_default()
                        .follow_ups_stopped
                        .entry(stopped.reason.key().to_string())
                        .or_default() += 1;
                }
                OutreachEvent::ChannelPaused(_) => line(decoded.summary().unwrap_or_default()),
                OutreachEvent::ChannelResumed(_) => {
                    let mut what = decoded.summary().unwrap_or_default();
                    if let Some(reason) = &event.metadata.reason {
                        let _ = write!(what, ": \"{reason}\"");
                    }
                    line(what)
                }
                OutreachEvent::NoticePlanned(notice) => {
                    self.role_of.insert(notice.key.clone(), notice.role.clone());
                }
                OutreachEvent::DeliveryDeferred(deferred) => {
                    *self
                        .days
                        .entry(day)
                        .or_default()
                        .held_back
                        .entry(format!("{} deferred by the receiver", deferred.channel))
                        .or_default() += 1;
                }
                OutreachEvent::SendMoved(moved) => {
                    self.paid.insert(moved.key.as_str().into(), moved.paid);
                    *self
                        .days
                        .entry(day)
                        .or_default()
                        .moved
                        .entry(moved.reach_out.clone())
                        .or_default() += 1;
                }
                // Scenarios run one node: no message is handed over by another.
                OutreachEvent::HandedOver(_) => {}
            }
        } else if let Ok(Some(decoded)) = TaskEvent::decode(event) {
            match decoded {
                TaskEvent::ReminderPlanned(reminder) => {
                    self.role_of
                        .insert(reminder.key.clone(), reminder.role.clone());
                }
                TaskEvent::TaskDone(done) => {
                    let mut what = format!("task {} done", done.occurrence);
                    if let Some(note) = &done.note {
                        let _ = write!(what, ": \"{note}\"");
                    }
                    line(what)
                }
            }
        } else if let Ok(Some(ReportEvent::ReportPlanned(planned))) = ReportEvent::decode(event) {
            let roles: Vec<&str> = planned.to.iter().map(|to| to.role.as_str()).collect();
            for role in &roles {
                self.role_of
                    .insert(format!("{}/{role}", planned.key), role.to_string());
            }
            line(format!(
                "weekly report {} decided for {}",
                planned.week,
                roles.join(", ")
            ));
        }
        self.lines.append(&mut pushed);
    }
}

/// One local day's totals for the timeline.
#[derive(Debug, Default)]
struct Day {
    /// Channel -> (sent, paid).
    sent: BTreeMap<String, (u64, u64)>,
    reminders: BTreeMap<String, u64>,
    follow_ups_planned: u64,
    follow_ups_stopped: BTreeMap<String, u64>,
    /// "reach-out reason" -> count, decided at sending time.
    held_back: BTreeMap<String, u64>,
    /// Reach-out -> sends moved to a later instant (held past their day, late into quiet hours,
    /// or the customer reached again since it was planned).
    moved: BTreeMap<String, u64>,
}

impl Day {
    fn words(&self, costs: &BTreeMap<&str, Option<Money>>, currency: &str) -> Option<String> {
        let mut parts = Vec::new();
        for (channel, (sent, paid)) in &self.sent {
            let mut part = format!("{channel} {}", grouped(*sent));
            if *paid > 0 {
                let cost = cost_of(*paid, costs.get(channel.as_str()).copied().flatten());
                let _ = write!(part, " ({} paid, {cost} {currency})", grouped(*paid));
            }
            parts.push(part);
        }
        let mut words = Vec::new();
        if !parts.is_empty() {
            words.push(format!("sent {}", parts.join(", ")));
        }
        if !self.reminders.is_empty() {
            let roles: Vec<String> = self
                .reminders
                .iter()
                .map(|(role, n)| format!("{role} {n}"))
                .collect();
            words.push(format!("staff messages {}", roles.join(", ")));
        }
        if self.follow_ups_planned > 0 {
            words.push(format!(
                "follow-ups planned {}",
                grouped(self.follow_ups_planned)
            ));
        }
        if !self.follow_ups_stopped.is_empty() {
            let reasons: Vec<String> = self
                .follow_ups_stopped
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            words.push(format!("follow-ups stopped: {}", reasons.join(", ")));
        }
        if !self.moved.is_empty() {
            let moved: Vec<String> = self
                .moved
                .iter()
                .map(|(reach_out, n)| format!("{reach_out} {n}"))
                .collect();
            words.push(format!("moved on: {}", moved.join(", ")));
        }
        if !self.held_back.is_empty() {
            let reasons: Vec<String> = self
                .held_back
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            words.push(format!("not sent: {}", reasons.join(", ")));
        }
        (!words.is_empty()).then(|| words.join("; "))
    }
}

/// Reasons decided when a planned send is due, not when the reach-out is planned.
fn is_dispatch_reason(reason: &str) -> bool {
    matches!(
        reason,
        "campaign_paused"
            | "bounce_guard"
            | "campaign_ended"
            | "window_closed"
            | "no_quota_after_hold"
            | "replied"
            | "ordered"
            | "opened"
            | "template_failed"
            | "phase_skipped"
            | "refused"
            | "undelivered"
            | "channel_down"
    )
}

fn kind_word(kind: battleplan_core::plan::raw::ChannelKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| "mail".to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn checked_plan(text: &str) -> Result<Plan, String> {
    let checked = battleplan_core::plan::check(text.as_bytes());
    match checked.plan {
        Some(plan) => Ok(plan),
        None => {
            let first = checked
                .diagnostics
                .iter()
                .find(|d| d.is_error())
                .map(|d| {
                    battleplan_core::plan::diagnostic::render(
                        "plan.toml",
                        Some(&checked.line_index),
                        d,
                    )
                })
                .unwrap_or_default();
            Err(format!(
                "the plan has {} error(s); the first: {first}",
                checked.error_count()
            ))
        }
    }
}

/// What can be known wrong before anything runs, with the script entry's place: each revision
/// applies (in order) and gives a valid plan; an answer names a reach-out of the plan (as
/// revised by then), a valid amount, and customer ids fit for a file.
fn preflight(loaded: &Loaded, plan_text: &str) -> Result<(), ScenarioError> {
    let shown = loaded.path.display();
    let mut text = plan_text.to_string();
    let mut reach_outs: std::collections::BTreeSet<String> = checked_plan(&text)
        .map(|plan| plan.reach_outs.into_iter().map(|r| r.id).collect())
        .unwrap_or_default();
    for step in &loaded.steps {
        let place = format!(
            "{shown}: at[{}] ({})",
            step.index,
            step.instant.to_rfc3339()
        );
        match &step.action {
            Action::Revise(revise) => {
                text = scenario::edit(&text, &revise.edits).map_err(|message| {
                    ScenarioError::Invalid(format!("{place}: revise: {message}"))
                })?;
                let plan = checked_plan(&text).map_err(|message| {
                    ScenarioError::Invalid(format!("{place}: revise: {message}"))
                })?;
                reach_outs.extend(plan.reach_outs.into_iter().map(|r| r.id));
            }
            Action::Outcomes(input) => {
                if !reach_outs.contains(&input.reach_out) {
                    let known: Vec<&str> = reach_outs.iter().map(String::as_str).collect();
                    return Err(ScenarioError::Invalid(format!(
                        "{place}: outcomes: the plan has no reach-out `{}` (it has {})",
                        input.reach_out,
                        known.join(", ")
                    )));
                }
                if let Some(amount) = &input.amount {
                    Money::parse_text(amount).map_err(|message| {
                        ScenarioError::Invalid(format!(
                            "{place}: outcomes: amount `{amount}`: {message}"
                        ))
                    })?;
                }
                if let Some(bad) = input.customers.iter().find(|customer| {
                    customer.is_empty()
                        || customer
                            .chars()
                            .any(|c| matches!(c, ',' | '"' | '\n' | '\r') || c.is_control())
                }) {
                    return Err(ScenarioError::Invalid(format!(
                        "{place}: outcomes: `{}` is not a customer id",
                        bad.escape_debug()
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes what a failed run wrote: the directory if the run created it, else its contents.
fn discard(dir: &Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// The output directory: created, or empty.
fn prepare(dir: &Path) -> Result<(), ScenarioError> {
    if dir.exists() && !dir.is_dir() {
        return Err(ScenarioError::Invalid(format!(
            "{} is a file; give a new or empty directory with --out",
            dir.display()
        )));
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|error| {
            ScenarioError::Invalid(format!("cannot read {}: {error}", dir.display()))
        })?;
        if entries.next().is_some() {
            return Err(ScenarioError::Invalid(format!(
                "{} is not empty; give a new directory with --out",
                dir.display()
            )));
        }
    }
    // A scenario's store is a rehearsal's: rehearsing in it again is allowed.
    std::fs::create_dir_all(dir.join("data"))
        .and_then(|()| {
            std::fs::write(
                dir.join("data").join(crate::hosts::daemon::REHEARSAL_MARK),
                "started under a rehearsal clock (a scenario)\n",
            )
        })
        .map_err(|error| ScenarioError::Io(format!("creating {}: {error}", dir.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ScenarioError> {
    std::fs::write(path, bytes)
        .map_err(|error| ScenarioError::Io(format!("writing {}: {error}", path.display())))
}
