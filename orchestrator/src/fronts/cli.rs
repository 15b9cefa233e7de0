//! The commands. Each returns the exit code for what the user asked (0 or 2); an `Err` is an
//! internal failure (exit 1).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::app::import::ImportRequest;
use crate::app::{Action, Request};
use crate::hosts::daemon::{self, RunOptions};
use crate::hosts::store::StoreChoice;
use crate::hosts::{local, scenario};
use crate::present::{self, Reply, USER_ERROR};
use anyhow::Context;
use battleplan_adapters::import::Format;
use battleplan_adapters::system::RandomIds;
use battleplan_core::context::IdSource;
use battleplan_core::customer::ImportKind;
use battleplan_core::plan::{self, diagnostic, parse, Checked, Diagnostic};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use uuid::Uuid;

/// Writes to stdout; a reader that went away (`battleplan history | head`) is not an error:
/// the rest is dropped quietly instead of panicking as `print!` does on a closed pipe.
fn write_out(text: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_fmt(text);
}

macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*)) };
}

macro_rules! out_line {
    () => { write_out(format_args!("\n")) };
    ($($arg:tt)*) => { write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

#[derive(Debug, Parser)]
#[command(
    name = "battleplan",
    version,
    about = "Runs big-sale promotion campaigns from a battle plan, and keeps every decision as an event.",
    long_about = None
)]
pub struct Arguments {
    /// The data directory (the event store and its projections).
    #[arg(
        long,
        global = true,
        env = "BATTLEPLAN_DATA",
        default_value = "./battleplan-data"
    )]
    pub data: PathBuf,

    /// Keep the event log in a PostgreSQL database instead of the data directory:
    /// postgres://USER@HOST:PORT/DATABASE?tenant=NAME (tenant `default` when left out). The
    /// password is never in the URL: it is read from BATTLEPLAN_STORE_PASSWORD, or from the
    /// file BATTLEPLAN_STORE_PASSWORD_FILE names. --data still holds this node's local files
    /// (the control socket, the file outbox, tokens). docs/store.md, "The log on PostgreSQL".
    #[arg(
        long,
        global = true,
        env = "BATTLEPLAN_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub store: Option<String>,

    /// Use a clock stopped at this instant (RFC 3339, e.g. 2026-08-19T00:00:00+08:00) instead
    /// of the system clock: for rehearsals and tests. With `run --simulate`, where the virtual
    /// clock starts.
    #[arg(long, global = true, value_name = "INSTANT", value_parser = parse_instant)]
    pub clock_at: Option<DateTime<Utc>>,

    #[command(subcommand)]
    pub command: Command,
}

pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    Err(format!(
        "`{text}` is not an instant: write RFC 3339 with its offset (2026-09-02T00:00:00+08:00) or a date (2026-09-02, midnight UTC)"
    ))
}

/// Who acts and why: recorded with every event the command causes.
#[derive(Debug, Args)]
pub struct ActArguments {
    /// The campaign's id (the plan's `[campaign] id`).
    pub campaign: String,
    /// Who is acting (a person's name); the auditor sees it.
    #[arg(long)]
    pub actor: String,
    /// Why, in a sentence; the auditor sees it.
    #[arg(long)]
    pub reason: String,
    /// An id for this command, to retry it safely: the same id is recorded once.
    #[arg(long)]
    pub command_id: Option<Uuid>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rehearse the September festival with 10,000 generated customers under a virtual clock,
    /// in a new directory, and print what happened: the place to start.
    Demo {
        /// Where to write the run (a new or empty directory); a temporary one when left out.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Scenarios: a plan, customers and a script of outside inputs, run under a virtual clock.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
    /// Write the example plan: the September procurement festival, every section commented.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "battleplan.toml")]
        out: PathBuf,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a plan: every problem with its location and code, or "ok" and a summary.
    Validate {
        /// The plan file, or `-` for standard input.
        plan: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply a plan: create the campaign, or record a new version of it.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// The daemon: moves campaigns through their phases on time, and serves other terminals.
    Run {
        /// Stop once the clock passes this instant (RFC 3339 or a date).
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        until: Option<DateTime<Utc>>,
        /// Run under a virtual clock that jumps from one due instant to the next, to the end
        /// of every campaign (or to --until) in seconds. Starts at --clock-at, or now.
        #[arg(long)]
        simulate: bool,
        /// Serve the HTTP API (`/api/v1`, docs/http-api.md) on this address too, e.g.
        /// 127.0.0.1:8080 (port 0: any free port, said on standard error and written to
        /// DATA/http.addr). Off unless given.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// The address people reach this daemon's HTTP API at, e.g. https://shop.example.com
        /// (without /api/v1): the base of the unsubscribe links in the mail it sends.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Run as one of several nodes on one PostgreSQL store (docs/scale-out.md), under this
        /// name (unique among the nodes): act only on the campaigns whose lease this node
        /// holds, take over those of a node that stopped renewing. Needs --store postgres://.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// With --node: how long a lease lasts without renewal (renewed every third of it), in
        /// seconds: a node that dies loses its campaigns after at most this long.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 15.0,
            requires = "node"
        )]
        lease: f64,
    },
    /// The HTTP API's tokens: each person's, with a role (manager, sales, boss, auditor, or
    /// calendar: reads calendars only, the one token a calendar app's URL may carry).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Where campaigns stand: phase, stage, since when, the next transition.
    Status {
        /// One campaign; all of them when left out.
        campaign: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a campaign's automated transitions until it is resumed.
    Pause(ActArguments),
    /// Resume a paused campaign (what happens to boundaries passed meanwhile is the plan's
    /// `on_resume`).
    Resume(ActArguments),
    /// Enter the next phase or stage now, ahead of the plan.
    Advance(ActArguments),
    /// End a campaign for good.
    Cancel(ActArguments),
    /// A campaign's events: what happened, when, by whom, why, under which plan version.
    History {
        /// One campaign; when left out, every campaign's events interleaved in the order they
        /// were recorded (by log position), each line naming its campaign.
        campaign: Option<String>,
        /// Only the events recorded up to this instant (RFC 3339 or a date), then each
        /// campaign's state as of it (phase or stage, paused or not, plan version), replayed
        /// from those events alone.
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        /// Print the result as JSON (with --as-of: an object with `events` and `states`).
        #[arg(long)]
        json: bool,
    },
    /// Why a customer was reached or not in a campaign: profile, segments, every decision of
    /// the outbox with the rule and the numbers behind it, sends, outcomes, follow-ups and the
    /// funnel stage, all from the log as of an instant.
    Explain {
        /// The campaign's id.
        campaign: String,
        /// The customer's id.
        customer: String,
        /// Read only the events recorded up to this instant (RFC 3339 or a date); default: now
        /// (or --clock-at).
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the outbox decided and sent: per reach-out, sent, pending and not sent by reason.
    Outbox {
        /// The campaign's id.
        campaign: String,
        /// One reach-out only.
        #[arg(long, value_name = "R")]
        reach_out: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// With --json: every customer's idempotency key and what became of it.
        #[arg(long, requires = "json")]
        customers: bool,
    },
    /// The task board: every task and occurrence with its due time and status.
    Tasks {
        /// The campaign (the only one when left out).
        #[arg(long, value_name = "C")]
        campaign: Option<String>,
        /// Only this role's tasks.
        #[arg(long, value_name = "R")]
        role: Option<String>,
        /// Only tasks due before this instant (RFC 3339 or a date).
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        due_before: Option<DateTime<Utc>>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A task: `task done ID` records it done (its reminders stop).
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// The funnel: potential -> reached -> handshake -> order -> repurchase, per phase.
    Funnel {
        /// The campaign's id.
        campaign: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A campaign's calendar as iCalendar text (docs/calendar.md): phases and burst stages as
    /// events, every task occurrence as a to-do with its due time, reminders and status.
    Calendar {
        /// The campaign's id.
        campaign: String,
        /// Only this role's tasks (phases and stages are always in).
        #[arg(long, value_name = "R")]
        role: Option<String>,
        /// Only the tasks of the roles this person is a member of.
        #[arg(long, value_name = "P")]
        person: Option<String>,
        /// Write to this file (replaced whole, or left as it was) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The boss's reports (docs/reports.md): `battleplan report weekly CAMPAIGN`.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// A channel of a campaign: `channel resume` after the bounce guard paused it.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Who a reach-out will reach: the segment, each exclusion counted, the day-by-day plan.
    Audience {
        #[command(subcommand)]
        command: AudienceCommand,
    },
    /// The customer book: `battleplan customers import FILE`.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// What came back from messages: `battleplan outcomes import FILE`.
    Outcomes {
        #[command(subcommand)]
        command: OutcomesCommand,
    },
    /// The shop's own numbers (docs/metrics.md): `battleplan metrics import FILE`, `battleplan
    /// metrics show CAMPAIGN`.
    Metrics {
        #[command(subcommand)]
        command: MetricsCommand,
    },
    /// The auditor's tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The store: `battleplan store check` (its files and its chain), `battleplan store copy
    /// --to TARGET` (the whole log into a new store: sled to PostgreSQL and back).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The log as JSON lines, one event a line in position order (docs/export.md): for the
    /// auditor, and the backup that `battleplan import` restores. Reads the store itself: a
    /// running daemon must be stopped first.
    Export {
        /// Only the log as it stood at this instant (RFC 3339 or a date): the longest prefix
        /// whose events were all recorded at or before it, itself a whole chain.
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        /// Write to this file (whole or not at all) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Restore an export into a new store (--data, which must be absent or empty): every line
    /// checked first (shape, hashes, the chain, positions, stream versions); on any problem
    /// `FILE:LINE: what is wrong` and nothing written.
    Import {
        /// The export file (JSON lines).
        file: PathBuf,
        /// Import a file that ends without the trailer every export ends with (one written by a
        /// battleplan that wrote none). Such a file cut short after a whole line cannot be told
        /// from a whole one: only the events it holds are checked.
        #[arg(long)]
        accept_untrailered: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// One ISO week of a campaign (Monday 00:00 to Monday 00:00 in its zone): GMV, orders,
    /// inquiries and fans against the stage targets and the week before, the funnel, reach-outs
    /// and their cost, hot products and keywords, each offer's uptake, tasks done per person,
    /// what is late, and next week's changes and tasks.
    Weekly {
        /// The campaign's id.
        campaign: String,
        /// The week, as ISO 8601 writes it (2026-W36); the one containing now when left out.
        #[arg(long, value_name = "YEAR-Wnn")]
        week: Option<String>,
        /// text (columns), markdown (headings and lists, as the staff robots show it) or html
        /// (a whole document, its style inline).
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "markdown", "html"])]
        format: String,
        /// Print the report's data as JSON instead.
        #[arg(long)]
        json: bool,
        /// Write to this file (replaced whole, or left as it was) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a person; it is printed once, alone on standard output, and only a
    /// keyed digest of it is kept (DATA/tokens.json).
    Create {
        /// The person's name: the actor of everything recorded with the token.
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long)]
        role: crate::fronts::http::auth::Role,
    },
    /// The tokens: name, role, created, revoked (never the tokens themselves).
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a token from working, at once (a running daemon sees it).
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Run a scenario file (docs/scenarios.md) with the real orchestrator under a virtual clock:
    /// prints the timeline and writes the log, the outbox and the captures to --out.
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Where to write the run (a new or empty directory); a temporary one when left out.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan and record it: the campaign's first version, or a revision.
    Apply {
        /// The plan file, or `-` for standard input.
        plan: PathBuf,
        /// Who applies it; defaults to the USER environment variable.
        #[arg(long)]
        actor: Option<String>,
        /// Why, for the auditor.
        #[arg(long)]
        reason: Option<String>,
        /// An id for this command, to retry it safely: the same id is recorded once.
        #[arg(long)]
        command_id: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AudienceCommand {
    /// The segment's size, each exclusion with its count, the reachable count, and the sends
    /// day by day with free and paid volume and cost: exactly what will be sent if nothing
    /// changes.
    Preview {
        /// The campaign's id.
        campaign: String,
        /// A reach-out of the plan.
        #[arg(long, value_name = "R", conflicts_with_all = ["segment", "channel"], required_unless_present = "segment")]
        reach_out: Option<String>,
        /// A segment of the plan (with --channel), planned from --at to the campaign's end.
        #[arg(long, value_name = "S", requires = "channel")]
        segment: Option<String>,
        /// A channel of the plan (with --segment).
        #[arg(long, value_name = "C", requires = "segment")]
        channel: Option<String>,
        /// Evaluate at this instant (RFC 3339 or a date) instead of now.
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        at: Option<DateTime<Utc>>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// With --json: list every member, with the send planned for them or their exclusion.
        #[arg(long, requires = "json")]
        customers: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Record a task (or one occurrence of a recurring task, `ID@YYYY-MM-DD`) done.
    Done {
        /// The task's id, or `TASK@DATE` for a recurring task's occurrence.
        id: String,
        /// The campaign (the only one when left out).
        #[arg(long, value_name = "C")]
        campaign: Option<String>,
        /// Who did it; the auditor sees it.
        #[arg(long)]
        actor: String,
        /// A note for the record.
        #[arg(long)]
        note: Option<String>,
        /// An id for this command, to retry it safely.
        #[arg(long)]
        command_id: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Send one test message through a plan channel's real channel (its mail server or
    /// webhook) and say what the server answered. Records nothing.
    Test {
        /// The campaign's id.
        campaign: String,
        /// The channel's id in the plan.
        channel: String,
        /// Where to: a mail address (mail), or the id the receiver gets (a webhook).
        #[arg(long)]
        to: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a channel the bounce guard paused send again (held sends still in their window go).
    Resume {
        /// The campaign's id.
        campaign: String,
        /// The channel's id in the plan.
        channel: String,
        /// Who is acting; the auditor sees it.
        #[arg(long)]
        actor: String,
        /// Why, in a sentence (what was cleaned up); the auditor sees it.
        #[arg(long)]
        reason: String,
        /// An id for this command, to retry it safely.
        #[arg(long)]
        command_id: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Import customers (CSV with a header line, or JSON lines): the whole file, or nothing
    /// and every malformed row listed with its line and column. The same file twice is
    /// recorded once; an import cut short is finished by running the same command again.
    Import(ImportArguments),
    /// Write a file of generated customers (the demo's generator: sources, tiers, activity,
    /// a few with no address, unsubscribed or in the recycle bin) to rehearse a plan with.
    Generate {
        /// How many customers.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// The same seed gives the same customers.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Their activity lies in the 200 days before this instant (RFC 3339 or a date);
        /// defaults to --clock-at, or now.
        #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        /// The file to write: `.csv`, or `.jsonl` for JSON lines.
        #[arg(long, default_value = "customers.csv")]
        out: PathBuf,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutcomesCommand {
    /// Import outcomes (delivered, bounced, opened, replied, ordered, unsubscribed), CSV or
    /// JSON lines: all or nothing, as for customers.
    Import(ImportArguments),
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Import the shop's numbers as the platform's data tool exports them (CSV or JSON lines):
    /// per day or hour, visitors, page views, inquiries, new fans, orders placed and paid,
    /// paying and returning buyers, GMV, hot products and keywords. The whole file or nothing;
    /// only the periods whose figures change are recorded (a correction names what it
    /// corrects), so the same file twice changes nothing.
    Import {
        /// The file: `.csv` (a header line first) or `.jsonl` / `.ndjson`.
        file: PathBuf,
        /// The file's format, when its name does not say.
        #[arg(long, value_name = "csv|jsonl")]
        format: Option<Format>,
        /// The time zone of the file's dates (an IANA name); by default the zone every
        /// campaign shares.
        #[arg(long)]
        zone: Option<String>,
        /// Who imports; defaults to the USER environment variable.
        #[arg(long)]
        actor: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The shop's numbers over a campaign: per day, per burst stage and overall, with
    /// DOMAIN.md's formulas (sales = visitors x conversion x average order value, payment and
    /// repurchase rates) and their inputs, and the hot products and keywords.
    Show {
        campaign: String,
        /// Print the view as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ImportArguments {
    /// The file: `.csv` (a header line, then one row a line) or `.jsonl` / `.ndjson` (one JSON
    /// object a line).
    pub file: PathBuf,
    /// The file's format, when its name does not say.
    #[arg(long, value_name = "csv|jsonl")]
    pub format: Option<Format>,
    /// Import the good rows and list the malformed ones (recorded with the import), instead of
    /// rejecting the whole file.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Who imports; defaults to the USER environment variable.
    #[arg(long)]
    pub actor: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check the store's files (docs/store.md): each write-ahead file read on its own (what it
    /// holds, and where it is damaged), then the store opened and its chain walked. Exit 0
    /// when intact, 2 when damaged (nothing is changed), 1 when the disk fails. Stop the daemon
    /// first.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the whole log (--store, or the sled store in --data) into a new store, verbatim
    /// (positions, ids, instants, hashes), then walk the target's chain: the same event count
    /// and head hash, or exit 2 with the target as it was. The way from sled to PostgreSQL
    /// and back (docs/store.md). Stop the daemon first.
    Copy {
        /// The target: a directory (absent or empty) for a new sled store, or
        /// postgres://USER@HOST:PORT/DATABASE?tenant=NAME for a tenant that holds no event (its
        /// password in BATTLEPLAN_TARGET_PASSWORD or the file BATTLEPLAN_TARGET_PASSWORD_FILE
        /// names, else the store's own: BATTLEPLAN_STORE_PASSWORD or its file).
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that the log is intact (positions without gaps, the hash chain, stream versions),
    /// that every payload reads as its type, and that the stored campaigns projection is
    /// exactly what replaying the log gives.
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The data directory holds customer data: one left open to other users (made by an older build,
/// or by hand) is closed to them, and the user told. The store does the same when it opens a
/// directory, but says so only in the daemon's log.
fn keep_private(data: &Path) {
    match battleplan_adapters::private::directory(data) {
        Ok(None) => {}
        Ok(Some(mode)) => eprintln!(
            "battleplan: warning: {}",
            battleplan_adapters::private::tightened_words(data, mode)
        ),
        Err(error) => eprintln!(
            "battleplan: warning: the data directory {} may be readable by other users: {error}",
            data.display()
        ),
    }
}

pub fn run(arguments: Arguments) -> anyhow::Result<ExitCode> {
    let data = arguments.data.as_path();
    // The auditor's reads change nothing in the data directory, not even its mode: the
    // directory may be a copy on read-only media.
    let uses_data = !matches!(
        arguments.command,
        Command::Demo { .. }
            | Command::Scenario { .. }
            | Command::Init { .. }
            | Command::Validate { .. }
            | Command::Audit { .. }
            | Command::Export { .. }
            | Command::Store { .. }
    );
    if uses_data && data.is_dir() {
        keep_private(data);
    }
    // The store is chosen (and a PostgreSQL password read) only for the commands that use it.
    let needs_store = !matches!(
        arguments.command,
        Command::Demo { .. }
            | Command::Scenario { .. }
            | Command::Init { .. }
            | Command::Validate { .. }
            | Command::Token { .. }
            | Command::Customers {
                command: CustomersCommand::Generate { .. }
            }
    );
    let choice = if needs_store {
        match StoreChoice::choose(data, arguments.store.as_deref()) {
            Ok(choice) => choice,
            Err(message) => return Ok(user_error(message)),
        }
    } else {
        StoreChoice::Sled(data.to_path_buf())
    };
    let choice = &choice;
    let clock_at = arguments.clock_at;
    let act = |action: Action, arguments: ActArguments| {
        remote_or_local(
            data,
            choice,
            clock_at,
            Request::Act {
                campaign: arguments.campaign,
                action,
                actor: arguments.actor,
                reason: Some(arguments.reason),
                command_id: Some(chosen(arguments.command_id)),
            },
            false,
        )
    };
    match arguments.command {
        Command::Demo { out } => demo(out),
        Command::Scenario {
            command: ScenarioCommand::Run { file, out },
        } => scenario_run(&file, out),
        Command::Init { out, force } => init(&out, force),
        Command::Validate { plan, json } => validate(&plan, json),
        Command::Plan {
            command:
                PlanCommand::Apply {
                    plan,
                    actor,
                    reason,
                    command_id,
                },
        } => {
            let bytes = match read_plan(&plan) {
                Ok(bytes) => bytes,
                Err(message) => return Ok(user_error(message)),
            };
            if bytes.len() > parse::MAX_PLAN_BYTES {
                return Ok(user_error(format_args!(
                    "{} is larger than a plan may be ({} bytes at most)",
                    plan.display(),
                    parse::MAX_PLAN_BYTES
                )));
            }
            let source = match String::from_utf8(bytes) {
                Ok(source) => source,
                Err(_) => {
                    return Ok(user_error(format_args!(
                        "{} is not UTF-8 text; see `battleplan validate {}`",
                        plan.display(),
                        plan.display()
                    )))
                }
            };
            let actor = match actor_or_user(actor) {
                Ok(actor) => actor,
                Err(message) => return Ok(user_error(message)),
            };
            remote_or_local(
                data,
                choice,
                clock_at,
                Request::ApplyPlan {
                    file_name: plan.display().to_string(),
                    source,
                    actor,
                    reason,
                    command_id: Some(chosen(command_id)),
                },
                false,
            )
        }
        Command::Token { command } => token(data, command),
        Command::Run {
            until,
            simulate,
            http,
            public_url,
            node,
            lease,
        } => {
            // `run` does not create a store; one that exists gets its mark before it records.
            if let Err(message) = local::before_run(choice, simulate || clock_at.is_some()) {
                return Ok(user_error(message));
            }
            daemon::run(
                data,
                choice,
                RunOptions {
                    until,
                    simulate,
                    clock_at,
                    http,
                    public_url,
                    node: match node {
                        None => None,
                        Some(name) => match daemon::node_options(&name, lease) {
                            Ok(node) => Some(node),
                            Err(message) => return Ok(user_error(message)),
                        },
                    },
                },
            )
        }
        Command::Status { campaign, json } => {
            remote_or_local(data, choice, clock_at, Request::Status { campaign }, json)
        }
        Command::History {
            campaign,
            as_of,
            json,
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::History {
                campaign,
                as_of,
                after: None,
                limit: None,
            },
            json,
        ),
        Command::Explain {
            campaign,
            customer,
            as_of,
            json,
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::Explain(crate::app::explain::ExplainQuestion {
                campaign,
                customer,
                as_of,
            }),
            json,
        ),
        Command::Pause(arguments) => act(Action::Pause, arguments),
        Command::Resume(arguments) => act(Action::Resume, arguments),
        Command::Advance(arguments) => act(Action::Advance, arguments),
        Command::Cancel(arguments) => act(Action::Cancel, arguments),
        Command::Outbox {
            campaign,
            reach_out,
            json,
            customers,
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::Outbox(crate::app::outreach::OutboxQuestion {
                campaign,
                reach_out,
                customers,
            }),
            json,
        ),
        Command::Tasks {
            campaign,
            role,
            due_before,
            json,
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::Tasks(crate::app::tasks::TasksQuestion {
                campaign,
                role,
                due_before,
            }),
            json,
        ),
        Command::Task {
            command:
                TaskCommand::Done {
                    id,
                    campaign,
                    actor,
                    note,
                    command_id,
                },
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::TaskDone(crate::app::tasks::TaskDoneRequest {
                campaign,
                occurrence: id,
                actor,
                note,
                command_id: Some(chosen(command_id)),
            }),
            false,
        ),
        Command::Funnel { campaign, json } => {
            remote_or_local(data, choice, clock_at, Request::Funnel { campaign }, json)
        }
        Command::Calendar {
            campaign,
            role,
            person,
            out,
        } => calendar(
            data,
            choice,
            clock_at,
            crate::app::calendar::CalendarQuestion {
                campaign,
                role,
                person,
            },
            out.as_deref(),
        ),
        Command::Report {
            command:
                ReportCommand::Weekly {
                    campaign,
                    week,
                    format,
                    json,
                    out,
                },
        } => weekly_report(
            data,
            choice,
            clock_at,
            crate::app::report::WeeklyQuestion {
                campaign,
                week,
                format: crate::app::report::ReportFormat::from_key(&format).unwrap_or_default(),
            },
            json,
            out.as_deref(),
        ),
        Command::Channel {
            command:
                ChannelCommand::Test {
                    campaign,
                    channel,
                    to,
                    json,
                },
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::ChannelTest(crate::app::outreach::ChannelTestRequest {
                campaign,
                channel,
                to,
            }),
            json,
        ),
        Command::Channel {
            command:
                ChannelCommand::Resume {
                    campaign,
                    channel,
                    actor,
                    reason,
                    command_id,
                },
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::ChannelResume {
                campaign,
                channel,
                actor,
                reason,
                command_id: Some(chosen(command_id)),
            },
            false,
        ),
        Command::Audit {
            command: AuditCommand::Verify { json },
        } => audit_verify(data, choice, json),
        Command::Store {
            command: StoreCommand::Check { json },
        } => store_check(data, choice, json),
        Command::Store {
            command: StoreCommand::Copy { to, json },
        } => store_copy(data, choice, &to, json),
        Command::Export { as_of, out } => export(data, choice, as_of, out.as_deref()),
        Command::Import {
            file,
            accept_untrailered,
        } => import_export(choice, &file, accept_untrailered),
        Command::Customers {
            command: CustomersCommand::Import(arguments),
        } => import_file(data, choice, clock_at, ImportKind::Customers, arguments),
        Command::Customers {
            command:
                CustomersCommand::Generate {
                    count,
                    seed,
                    as_of,
                    out,
                    force,
                },
        } => generate_customers(
            count,
            seed,
            as_of.or(clock_at).unwrap_or_else(Utc::now),
            &out,
            force,
        ),
        Command::Outcomes {
            command: OutcomesCommand::Import(arguments),
        } => import_file(data, choice, clock_at, ImportKind::Outcomes, arguments),
        Command::Metrics {
            command:
                MetricsCommand::Import {
                    file,
                    format,
                    zone,
                    actor,
                    json,
                },
        } => {
            let (path, file_name, format, actor) = match file_to_import(&file, format, actor) {
                Ok(found) => found,
                Err(code) => return Ok(code),
            };
            remote_or_local(
                data,
                choice,
                clock_at,
                Request::ImportMetrics(crate::app::metrics::MetricsImportRequest {
                    path,
                    file_name,
                    format,
                    zone,
                    actor,
                }),
                json,
            )
        }
        Command::Metrics {
            command: MetricsCommand::Show { campaign, json },
        } => remote_or_local(data, choice, clock_at, Request::Metrics { campaign }, json),
        Command::Audience {
            command:
                AudienceCommand::Preview {
                    campaign,
                    reach_out,
                    segment,
                    channel,
                    at,
                    json,
                    customers,
                },
        } => remote_or_local(
            data,
            choice,
            clock_at,
            Request::AudiencePreview(crate::app::audience::PreviewQuestion {
                campaign,
                reach_out,
                segment,
                channel,
                at,
                customers,
            }),
            json,
        ),
    }
}

/// Prints an answer (a use case's outcome in words or JSON, or the host's refusal) and gives
/// its exit code; the store the answer came from closes after.
fn say(answer: local::Answer, as_json: bool) -> ExitCode {
    match &answer.outcome {
        Ok(outcome) => print_reply(present::render(outcome, as_json)),
        Err(refusal) => refusal.clone().exit(),
    }
}

fn print_reply(reply: Reply) -> ExitCode {
    out!("{}", reply.stdout);
    eprint!("{}", reply.stderr);
    let _ = io::stdout().flush();
    ExitCode::from(reply.code)
}

/// A command's id, chosen once, here, before the first try: the daemon and a local run after
/// it (the daemon stopped before answering) record it under the same id, so the store answers
/// the second with the first's outcome instead of recording the command twice.
fn chosen(given: Option<Uuid>) -> Uuid {
    given.unwrap_or_else(|| RandomIds.next_id(Utc::now()))
}

/// Asks the running daemon, or, when none runs, has the store opened for this request.
fn remote_or_local(
    data: &Path,
    choice: &StoreChoice,
    clock_at: Option<DateTime<Utc>>,
    remote: Request,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    Ok(say(
        local::remote_or_local(data, choice, clock_at, remote)?,
        as_json,
    ))
}

/// `customers import` / `outcomes import`: the file named and checked for what the command
/// line can tell (its format, that it exists, who imports), then imported by the daemon or
/// here (`hosts::local::import`).
fn import_file(
    data: &Path,
    choice: &StoreChoice,
    clock_at: Option<DateTime<Utc>>,
    kind: ImportKind,
    arguments: ImportArguments,
) -> anyhow::Result<ExitCode> {
    let as_json = arguments.json;
    let (path, file_name, format, actor) =
        match file_to_import(&arguments.file, arguments.format, arguments.actor) {
            Ok(found) => found,
            Err(code) => return Ok(code),
        };
    let request = ImportRequest {
        kind,
        path,
        file_name,
        format,
        skip_bad_rows: arguments.skip_bad_rows,
        actor,
    };
    Ok(say(
        local::import(data, choice, clock_at, request)?,
        as_json,
    ))
}

/// A file to import as the command line names it: its absolute path (a daemon elsewhere finds
/// it), its name as written, its format (from its name, or `--format`), and who imports; or
/// the exit code of a message saying what is wrong.
fn file_to_import(
    file: &Path,
    format: Option<Format>,
    actor: Option<String>,
) -> Result<(PathBuf, String, Format, String), ExitCode> {
    let file_name = file.display().to_string();
    let Some(format) = format.or_else(|| Format::of_path(file)) else {
        return Err(user_error(format_args!(
            "cannot tell the format of {file_name} from its name: name it .csv, .jsonl or .ndjson, or give --format csv|jsonl"
        )));
    };
    let path = match std::path::absolute(file) {
        Ok(path) if path.exists() => path,
        Ok(_) => {
            return Err(user_error(format_args!(
                "cannot read {file_name}: there is no such file"
            )))
        }
        Err(error) => return Err(user_error(format_args!("cannot read {file_name}: {error}"))),
    };
    let actor = actor_or_user(actor).map_err(user_error)?;
    Ok((path, file_name, format, actor))
}

fn user_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("battleplan: {message}");
    ExitCode::from(USER_ERROR)
}

/// `customers generate`: the demo's customers, written whole or not at all.
fn generate_customers(
    count: u64,
    seed: u64,
    as_of: DateTime<Utc>,
    out: &Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
    let format = match out.extension().and_then(|extension| extension.to_str()) {
        Some("csv") => FileFormat::Csv,
        Some("jsonl" | "ndjson") => FileFormat::Jsonl,
        _ => {
            return Ok(user_error(format_args!(
                "cannot tell the format of {} from its name: name it .csv or .jsonl",
                out.display()
            )))
        }
    };
    if !force && out.exists() {
        return Ok(user_error(format_args!(
            "{} already exists; use --force to overwrite it",
            out.display()
        )));
    }
    let directory = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Ok(user_error(format_args!(
            "cannot write {}: the directory {} does not exist",
            out.display(),
            directory.display()
        )));
    }
    // Written beside the target and moved into place, so the file is either whole or absent.
    let temporary = tempfile::Builder::new()
        .prefix(".battleplan-customers-")
        .tempfile_in(directory)
        .with_context(|| format!("creating a temporary file in {}", directory.display()))?;
    {
        let mut writer = io::BufWriter::new(temporary.as_file());
        write_customers(
            &mut writer,
            Options {
                count,
                seed,
                as_of,
                format,
            },
        )
        .and_then(|()| writer.flush())
        .with_context(|| format!("writing {}", out.display()))?;
    }
    temporary
        .as_file()
        .sync_all()
        .with_context(|| format!("writing {}", out.display()))?;
    temporary
        .persist(out)
        .map_err(|error| error.error)
        .with_context(|| format!("writing {}", out.display()))?;
    // The docs' examples name two customers, added when the count stops short of them.
    let written = count
        + battleplan_scenarios::customers::LISTED_IDS
            .iter()
            .filter(|id| **id > count)
            .count() as u64;
    out_line!(
        "wrote {}: {written} generated customers (seed {seed}, activity up to {})",
        out.display(),
        as_of.to_rfc3339()
    );
    out_line!("next: battleplan customers import {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn init(out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if out.is_dir() {
        return Ok(user_error(format_args!(
            "{} is a directory; give the plan file's path, e.g. --out {}",
            out.display(),
            out.join("battleplan.toml").display()
        )));
    }
    if !force && out.exists() {
        return Ok(user_error(format_args!(
            "{} already exists; use --force to overwrite it",
            out.display()
        )));
    }
    let directory = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Ok(user_error(format_args!(
            "cannot write {}: the directory {} does not exist",
            out.display(),
            directory.display()
        )));
    }
    // Written beside the target and moved into place, so the file is either whole or absent.
    let mut temporary = tempfile::Builder::new()
        .prefix(".battleplan-init-")
        .tempfile_in(directory)
        .with_context(|| format!("creating a temporary file in {}", directory.display()))?;
    // A temporary file is private (0600); a plan is an ordinary document.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .context("setting the plan's permissions")?;
    }
    temporary
        .write_all(plan::EXAMPLE_PLAN.as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .context("writing the example plan")?;
    let persisted = if force {
        temporary.persist(out).map(|_| ())
    } else {
        temporary.persist_noclobber(out).map(|_| ())
    };
    match persisted {
        Ok(()) => {}
        Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(user_error(format_args!(
                "{} already exists; use --force to overwrite it",
                out.display()
            )));
        }
        Err(error) => {
            return Err(error.error).with_context(|| format!("writing {}", out.display()));
        }
    }
    out_line!(
        "wrote {}: the September procurement festival, every section commented",
        out.display()
    );
    out_line!("next: battleplan validate {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads at most one byte more than a plan may hold, so a huge file is refused unread.
fn read_plan(path: &Path) -> Result<Vec<u8>, String> {
    let describe = |error: io::Error| format!("cannot read the plan {}: {error}", path.display());
    let mut bytes = Vec::new();
    let limit = parse::MAX_PLAN_BYTES as u64 + 1;
    if path.as_os_str() == "-" {
        io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(describe)?;
        return Ok(bytes);
    }
    let file = File::open(path).map_err(describe)?;
    let metadata = file.metadata().map_err(describe)?;
    if metadata.is_dir() {
        return Err(format!(
            "{} is a directory, not a plan file",
            path.display()
        ));
    }
    file.take(limit).read_to_end(&mut bytes).map_err(describe)?;
    Ok(bytes)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    file: String,
    ok: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'static str,
    severity: String,
    path: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
}

fn validate(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = match read_plan(path) {
        Ok(bytes) => bytes,
        Err(message) => return Ok(user_error(message)),
    };
    let file_name = path.display().to_string();
    let checked = if bytes.len() > parse::MAX_PLAN_BYTES {
        let length = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        Checked {
            plan: None,
            diagnostics: vec![parse::too_large(length)],
            line_index: diagnostic::LineIndex::new(""),
        }
    } else {
        plan::check(&bytes)
    };
    let summary = checked.plan.as_ref().map(plan::validate::summary);
    if json {
        let report = JsonReport {
            file: file_name,
            ok: !checked.has_errors(),
            errors: checked.error_count(),
            warnings: checked.warning_count(),
            diagnostics: checked
                .diagnostics
                .iter()
                .map(|d| json_diagnostic(&checked, d))
                .collect(),
            summary,
        };
        out_line!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = io::stdout().lock();
        for diagnostic in &checked.diagnostics {
            writeln!(
                out,
                "{}",
                diagnostic::render(&file_name, Some(&checked.line_index), diagnostic)
            )?;
        }
        if let Some(summary) = summary {
            let warnings = match checked.warning_count() {
                0 => String::new(),
                1 => " (1 warning above)".to_string(),
                count => format!(" ({count} warnings above)"),
            };
            writeln!(out, "ok{warnings}: {summary}")?;
        } else {
            writeln!(
                out,
                "{file_name}: {}; the plan is rejected",
                count_words(checked.error_count(), checked.warning_count())
            )?;
        }
    }
    Ok(if checked.has_errors() {
        ExitCode::from(USER_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn json_diagnostic<'a>(checked: &Checked, diagnostic: &'a Diagnostic) -> JsonDiagnostic<'a> {
    let position = diagnostic
        .span
        .as_ref()
        .map(|span| checked.line_index.line_column(span.start));
    JsonDiagnostic {
        code: diagnostic.code.as_str(),
        severity: diagnostic.severity.to_string(),
        path: &diagnostic.path,
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        message: &diagnostic.message,
        help: diagnostic.help.as_deref(),
    }
}

/// `battleplan calendar`: the iCalendar text on standard output, or in `--out FILE`, written
/// beside it and moved into place, so the file is the new calendar whole or the old one.
fn calendar(
    data: &Path,
    choice: &StoreChoice,
    clock_at: Option<DateTime<Utc>>,
    question: crate::app::calendar::CalendarQuestion,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let directory = match out {
        None => None,
        Some(out) if out.is_dir() => {
            return Ok(user_error(format_args!(
                "{} is a directory; give the calendar file's path, e.g. --out {}",
                out.display(),
                out.join(format!("{}.ics", question.campaign)).display()
            )))
        }
        Some(out) => {
            let directory = match out.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if !directory.is_dir() {
                return Ok(user_error(format_args!(
                    "cannot write {}: the directory {} does not exist",
                    out.display(),
                    directory.display()
                )));
            }
            Some(directory)
        }
    };
    let answer = local::remote_or_local(data, choice, clock_at, Request::Calendar(question))?;
    let (Some(out), Some(directory), Ok(Ok(crate::app::Response::Calendar(view)))) =
        (out, directory, &answer.outcome)
    else {
        return Ok(say(answer, false));
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".battleplan-calendar-")
        .tempfile_in(directory)
        .with_context(|| format!("creating a temporary file in {}", directory.display()))?;
    // A temporary file is private (0600); a calendar is a document to share, as a plan is.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .context("setting the calendar's permissions")?;
    }
    temporary
        .write_all(view.ics.as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    temporary
        .persist(out)
        .map_err(|error| error.error)
        .with_context(|| format!("writing {}", out.display()))?;
    out_line!(
        "wrote {}: {} events, {} to-dos, {} reminders of campaign {} (plan version {}, SEQUENCE {})",
        out.display(),
        view.events,
        view.todos,
        view.alarms,
        view.campaign,
        view.plan_version,
        view.sequence
    );
    Ok(ExitCode::SUCCESS)
}

/// `battleplan report weekly`: the report on standard output, or in `--out FILE`, written beside
/// it and moved into place, so the file is the new report whole or the old one.
fn weekly_report(
    data: &Path,
    choice: &StoreChoice,
    clock_at: Option<DateTime<Utc>>,
    question: crate::app::report::WeeklyQuestion,
    json: bool,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let directory = match out {
        None => None,
        Some(out) if out.is_dir() => {
            return Ok(user_error(format_args!(
                "{} is a directory; give the report file's path, e.g. --out {}",
                out.display(),
                out.join(format!(
                    "{}-weekly.{}",
                    question.campaign,
                    question.format.key()
                ))
                .display()
            )))
        }
        Some(out) => {
            let directory = match out.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if !directory.is_dir() {
                return Ok(user_error(format_args!(
                    "cannot write {}: the directory {} does not exist",
                    out.display(),
                    directory.display()
                )));
            }
            Some(directory)
        }
    };
    let answer = local::remote_or_local(data, choice, clock_at, Request::WeeklyReport(question))?;
    let (Some(out), Some(directory), Ok(Ok(crate::app::Response::WeeklyReport(view)))) =
        (out, directory, &answer.outcome)
    else {
        return Ok(say(answer, json));
    };
    let format = if json {
        crate::app::report::ReportFormat::Json
    } else {
        view.format
    };
    let bytes = present::report::rendered(&view.report, format);
    let mut temporary = tempfile::Builder::new()
        .prefix(".battleplan-report-")
        .tempfile_in(directory)
        .with_context(|| format!("creating a temporary file in {}", directory.display()))?;
    // A temporary file is private (0600); a report is a document to share, as a plan is (it
    // holds no customer's data).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .context("setting the report's permissions")?;
    }
    temporary
        .write_all(bytes.as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    temporary
        .persist(out)
        .map_err(|error| error.error)
        .with_context(|| format!("writing {}", out.display()))?;
    out_line!(
        "wrote {}: the weekly report {} of campaign {} ({}, log position {})",
        out.display(),
        view.report.week,
        view.report.campaign,
        format.key(),
        view.report.as_of_position
    );
    Ok(ExitCode::SUCCESS)
}

/// `battleplan audit verify`: through the daemon when one runs, or on a read-only copy of the
/// store (`hosts::local::audit_verify`).
fn audit_verify(data: &Path, choice: &StoreChoice, json: bool) -> anyhow::Result<ExitCode> {
    Ok(say(local::audit_verify(data, choice)?, json))
}

#[derive(Serialize)]
struct JsonStoreCheck {
    intact: bool,
    files: Vec<local::StoreFile>,
    events: Option<u64>,
    head_hash: Option<String>,
    problem: Option<String>,
    problem_position: Option<u64>,
}

/// `battleplan store check`: the write-ahead files read on their own, then a read-only copy of
/// the store opened (which refuses damage, naming it) and its chain walked
/// (`hosts::local::store_check`).
fn store_check(data: &Path, choice: &StoreChoice, json: bool) -> anyhow::Result<ExitCode> {
    let local::StoreCheck { files, opened } = match local::store_check(data, choice) {
        Ok(checked) => checked,
        Err(refusal) => return Ok(refusal.exit()),
    };
    let (intact, events, head_hash, problem, problem_position) = match &opened {
        Ok(report) => (
            report.problem.is_none(),
            Some(report.checked),
            Some(report.head_hash.clone()),
            report.problem.as_ref().map(|problem| problem.to_string()),
            report.problem.as_ref().map(|problem| problem.position.0),
        ),
        Err(refusal) if refusal.code != USER_ERROR => return Ok(refusal.clone().exit()),
        Err(refusal) => (false, None, None, Some(refusal.message.clone()), None),
    };
    if json {
        out_line!(
            "{}",
            serde_json::to_string_pretty(&JsonStoreCheck {
                intact,
                files,
                events,
                head_hash,
                problem,
                problem_position,
            })?
        );
    } else {
        match choice {
            StoreChoice::Sled(directory) => out_line!("store in {}", directory.display()),
            StoreChoice::Postgres(location) => out_line!("store {location}"),
        }
        for file in &files {
            let what = match (file.bytes, &file.damage) {
                (None, _) => "missing".to_string(),
                (Some(bytes), damage) => {
                    let held = match (file.generation, file.first_position, file.last_position) {
                        (Some(generation), Some(first), Some(last)) => format!(
                            "generation {generation}: {} whole record{}, events {first} to {last}",
                            file.records,
                            if file.records == 1 { "" } else { "s" }
                        ),
                        (Some(generation), _, _) => format!("generation {generation}"),
                        _ => "no record".to_string(),
                    };
                    let after = match (damage, file.ending) {
                        (Some(damage), _) => damage.clone(),
                        (None, "left over") => {
                            "then what a write cut short by a crash or an earlier generation of the file left (not part of the log)".into()
                        }
                        _ => "then zeros".into(),
                    };
                    format!("{bytes} bytes; {held}; {after}")
                }
            };
            out_line!("  {}: {what}", file.name);
        }
        match (&opened, &problem) {
            (Ok(report), None) => out_line!(
                "intact: {} events, positions 1 to {} without gaps, the hash chain holds; head hash {}",
                report.checked,
                report.checked,
                report.head_hash
            ),
            (Ok(report), Some(problem)) => {
                out_line!("damaged: {problem}");
                out_line!(
                    "the {} events before it check out (head hash {})",
                    report.checked,
                    report.head_hash
                );
            }
            (Err(_), problem) => {
                out_line!("damaged: {}", problem.as_deref().unwrap_or_default())
            }
        }
        if !intact {
            out_line!(
                "{}",
                if choice.is_postgres() {
                    "docs/store.md says how to recover"
                } else {
                    "docs/store.md says what each file holds and how to recover"
                }
            );
        }
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(USER_ERROR)
    })
}

/// `battleplan export`: to `--out FILE`, or to standard output (`hosts::local::export`).
fn export(
    data: &Path,
    choice: &StoreChoice,
    as_of: Option<DateTime<Utc>>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let answer = {
        let stdout = io::stdout();
        let mut writer = stdout.lock();
        local::export(data, choice, as_of, out, &mut writer)?
    };
    Ok(say(answer, false))
}

/// `battleplan import FILE`: into a new store (in `--data`, or an empty PostgreSQL tenant), all
/// or nothing.
fn import_export(
    choice: &StoreChoice,
    file: &Path,
    accept_untrailered: bool,
) -> anyhow::Result<ExitCode> {
    use crate::app::archive::Untrailered;
    let untrailered = if accept_untrailered {
        Untrailered::Accept
    } else {
        Untrailered::Refuse
    };
    Ok(say(local::restore(choice, file, untrailered)?, false))
}

/// `battleplan store copy --to TARGET`: the whole log into a new store, then the target's
/// chain walked and compared with the source's (`hosts::local::store_copy`).
fn store_copy(data: &Path, choice: &StoreChoice, to: &str, json: bool) -> anyhow::Result<ExitCode> {
    let target = match StoreChoice::target(to) {
        Ok(target) => target,
        Err(message) => return Ok(user_error(message)),
    };
    let copied = match local::store_copy(data, choice, &target) {
        Ok(copied) => copied,
        Err(refusal) => return Ok(refusal.exit()),
    };
    if json {
        out!("{}", present::json(&copied));
    } else {
        out_line!(
            "copied {} events from {} to {}",
            copied.events,
            copied.source,
            copied.target
        );
        out_line!("  source head hash {}", copied.source_head_hash);
        out_line!(
            "  target head hash {} ({} events, its chain walked end to end: the same log)",
            copied.target_head_hash,
            copied.target_events
        );
        if copied.rehearsal {
            out_line!("the source was a rehearsal's store, and so is the target");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The output directory of a scenario's run: the one given (refused unless new or empty), or
/// a new temporary one that is kept (the user reads it next).
fn scenario_output(
    out: Option<PathBuf>,
    prefix: &str,
) -> anyhow::Result<Result<scenario::Output, String>> {
    let dir = match out {
        Some(dir) if dir.exists() && !dir.is_dir() => {
            return Ok(Err(format!(
                "{} is a file; give a new or empty directory with --out",
                dir.display()
            )))
        }
        Some(dir) => {
            let used = dir.exists()
                && std::fs::read_dir(&dir)
                    .map(|mut entries| entries.next().is_some())
                    .unwrap_or(true);
            if used {
                return Ok(Err(format!(
                    "{} is not empty; give a new directory with --out",
                    dir.display()
                )));
            }
            dir
        }
        None => tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("creating a temporary directory")?
            .keep(),
    };
    Ok(Ok(scenario::Output { dir }))
}

/// Runs a loaded scenario with a progress bar on a terminal.
fn run_scenario(
    loaded: &battleplan_scenarios::scenario::Loaded,
    output: &scenario::Output,
) -> anyhow::Result<Result<scenario::Finished, scenario::ScenarioError>> {
    let window = &loaded.scenario.run;
    let span = (window.until - window.from).num_minutes().max(1) as u64;
    let bar = indicatif::ProgressBar::new(span);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let zone_words = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    let progress = |at: DateTime<Utc>| {
        bar.set_position((at - window.from).num_minutes().clamp(0, span as i64) as u64);
        bar.set_message(format!("simulated to {}", zone_words(at)));
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let finished = tokio.block_on(scenario::run(loaded, output, &progress));
    bar.finish_and_clear();
    Ok(finished)
}

fn scenario_failed(error: scenario::ScenarioError) -> anyhow::Result<ExitCode> {
    match error {
        scenario::ScenarioError::Invalid(message) => Ok(user_error(message)),
        other => Err(anyhow::anyhow!("the scenario stopped: {other}")),
    }
}

/// `battleplan scenario run FILE [--out DIR]`.
fn scenario_run(file: &Path, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let loaded = match battleplan_scenarios::scenario::load(file) {
        Ok(loaded) => loaded,
        Err(message) => return Ok(user_error(message)),
    };
    let output = match scenario_output(out, "battleplan-scenario-")? {
        Ok(output) => output,
        Err(message) => return Ok(user_error(message)),
    };
    match run_scenario(&loaded, &output)? {
        Ok(finished) => {
            out!("{}", finished.report);
            out_line!(
                "\n{} events, head hash {}; the run is in {} (data: {})",
                finished.events,
                finished.head_hash,
                output.dir.display(),
                output.data().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => scenario_failed(error),
    }
}

/// `battleplan demo`: the shipped September festival scenario, and where to look next.
fn demo(out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use battleplan_scenarios::scenario::{load_text, DEMO, SHIPPED};
    let Some((name, text)) = SHIPPED.iter().find(|(name, _)| *name == DEMO) else {
        return Err(anyhow::anyhow!(
            "the demo scenario is missing from this build"
        ));
    };
    let here = std::env::current_dir().context("reading the current directory")?;
    let loaded = match load_text(text, Path::new(name), &here) {
        Ok(loaded) => loaded,
        Err(message) => return Err(anyhow::anyhow!("the demo scenario: {message}")),
    };
    let output = match scenario_output(out, "battleplan-demo-")? {
        Ok(output) => output,
        Err(message) => return Ok(user_error(message)),
    };
    eprintln!(
        "Rehearsing the September festival with 10,000 generated customers under a virtual clock in {} ...",
        output.dir.display()
    );
    match run_scenario(&loaded, &output)? {
        Ok(finished) => {
            out!("{}", finished.report);
            let data = output.data();
            let data = data.display();
            out_line!(
                "\nThe log ({} events, its hash chain checked end to end, head hash {}) is in {data}. Ask it what happened:\n  battleplan --data {data} history {}\n  battleplan --data {data} explain {} c-000042\n  battleplan --data {data} funnel {}\n  battleplan --data {data} audit verify",
                finished.events, finished.head_hash, finished.campaign, finished.campaign, finished.campaign
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => scenario_failed(error),
    }
}

fn count_words(errors: usize, warnings: usize) -> String {
    let plural = |count: usize, word: &str| {
        if count == 1 {
            format!("1 {word}")
        } else {
            format!("{count} {word}s")
        }
    };
    if warnings == 0 {
        plural(errors, "error")
    } else {
        format!(
            "{}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

/// Who acts, for commands where naming yourself is optional: `--actor`, else the `USER`
/// environment variable. Neither set (a service, a container, cron) is refused rather than
/// recorded as someone nobody can name later.
fn actor_or_user(actor: Option<String>) -> Result<String, String> {
    let chosen = actor.or_else(|| std::env::var("USER").ok());
    match chosen {
        Some(actor) if !actor.trim().is_empty() => Ok(actor),
        _ => Err(
            "say who acts: --actor NAME (when it is left out, the USER environment variable names the actor, and it is not set here)"
                .to_string(),
        ),
    }
}

/// `battleplan token ...`: files in the data directory only, so they work while a daemon runs.
fn token(data: &Path, command: TokenCommand) -> anyhow::Result<ExitCode> {
    use crate::fronts::http::auth;
    let now = Utc::now();
    match command {
        TokenCommand::Create { name, role } => match auth::create(data, &name, role, now) {
            Ok(token) => {
                out_line!("{token}");
                eprintln!(
                    "battleplan: token {name} ({}) created; it is shown this once and cannot be shown again (only a digest is kept)",
                    role.as_str()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(message) => Ok(user_error(message)),
        },
        TokenCommand::Revoke { name } => match auth::revoke(data, &name, now) {
            Ok(()) => {
                out_line!("token {name} revoked");
                Ok(ExitCode::SUCCESS)
            }
            Err(message) => Ok(user_error(message)),
        },
        TokenCommand::List { json } => {
            let tokens = match auth::read_tokens(data) {
                Ok(tokens) => tokens,
                Err(message) => return Ok(user_error(message)),
            };
            if json {
                let listed: Vec<serde_json::Value> = tokens
                    .tokens
                    .iter()
                    .map(|entry| {
                        serde_json::json!({
                            "name": entry.name,
                            "role": entry.role,
                            "created": entry.created,
                            "revoked": entry.revoked,
                        })
                    })
                    .collect();
                out!("{}", present::json(&listed));
                return Ok(ExitCode::SUCCESS);
            }
            if tokens.tokens.is_empty() {
                out_line!(
                    "no tokens (`battleplan token create --name NAME --role ROLE` makes one)"
                );
            }
            for entry in &tokens.tokens {
                let revoked = entry
                    .revoked
                    .map(|at| format!("  revoked {}", at.to_rfc3339()))
                    .unwrap_or_default();
                out_line!(
                    "{}  {}  created {}{revoked}",
                    entry.name,
                    entry.role.as_str(),
                    entry.created.to_rfc3339()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
