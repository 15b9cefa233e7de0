//! The use cases, typed: every question and command is a [`Request`], answered by [`execute`]
//! with a [`Response`] (a view holding data, never words) or an [`AppError`]. The command line,
//! the control socket and HTTP all come here and decide nothing themselves; `present` makes
//! text of a response.
//!
//! Never here: formatting text for people, exit codes, terminals, environment variables.

pub mod answers;
pub mod archive;
pub mod audience;
pub mod audit;
pub mod calendar;
pub mod campaigns;
pub mod dashboard;
pub mod error;
pub mod explain;
pub mod import;
pub mod local_time;
pub mod metrics;
pub mod observe;
pub mod outreach;
pub mod report;
pub mod tasks;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use error::{AppError, ErrorKind};

use crate::kernel::projection::Campaigns;
use crate::kernel::runtime::Runtime;

/// One request's shared reads, each done at most once and only when a use case asks: the
/// campaigns caught up, the customer book, outbox and boards caught up, the instant the request
/// is answered at. Every use case starts here rather than catching projections up itself.
pub struct Ctx<'a> {
    pub runtime: &'a Runtime,
    /// The instant the request is answered at (the runtime's clock, read once).
    pub now: DateTime<Utc>,
    /// The fingerprint of the request (see `kernel::runtime::Who::fingerprint`), when a front
    /// gave one with its command id (HTTP's `Idempotency-Key`).
    pub fingerprint: Option<Uuid>,
    campaigns: tokio::sync::OnceCell<std::sync::Arc<Campaigns>>,
    caught_up: tokio::sync::OnceCell<()>,
}

impl<'a> Ctx<'a> {
    pub fn new(runtime: &'a Runtime) -> Ctx<'a> {
        Ctx {
            runtime,
            now: runtime.clock.now(),
            fingerprint: None,
            campaigns: tokio::sync::OnceCell::new(),
            caught_up: tokio::sync::OnceCell::new(),
        }
    }

    /// The same context for a request with this fingerprint.
    pub fn with_fingerprint(mut self, fingerprint: Option<Uuid>) -> Ctx<'a> {
        self.fingerprint = fingerprint;
        self
    }

    /// Every campaign's state, caught up with the log (in memory: the daemon's scheduler is the
    /// one that stores the projection).
    pub async fn campaigns(&self) -> Result<&Campaigns, AppError> {
        let states = self
            .campaigns
            .get_or_try_init(|| async { Ok::<_, AppError>(self.runtime.campaign_states().await?) })
            .await?;
        Ok(states.as_ref())
    }

    /// The ids of the campaigns there are, for a refusal that names them.
    pub async fn known(&self) -> Result<Vec<String>, AppError> {
        Ok(self.campaigns().await?.states.keys().cloned().collect())
    }

    /// A campaign's state, or [`AppError::UnknownCampaign`] (a draft, which no plan ever
    /// created, counts as unknown).
    pub async fn campaign(
        &self,
        id: &str,
    ) -> Result<&battleplan_core::campaign::CampaignState, AppError> {
        let campaigns = self.campaigns().await?;
        match campaigns.states.get(id) {
            Some(state) if state.kind() != battleplan_core::campaign::StateKind::Draft => Ok(state),
            _ => Err(AppError::UnknownCampaign {
                campaign: id.to_string(),
                known: self.known().await?,
            }),
        }
    }

    /// The campaign asked for or, when none is named, the only one there is.
    pub async fn campaign_or_only(&self, asked: Option<&str>) -> Result<String, AppError> {
        if let Some(id) = asked {
            return Ok(self.campaign(id).await?.id.clone());
        }
        let known = self.known().await?;
        match known.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(AppError::UnknownCampaign {
                campaign: String::new(),
                known,
            }),
            _ => Err(AppError::invalid(format_args!(
                "say which campaign (--campaign C): {}",
                known.join(", ")
            ))),
        }
    }

    /// The plan in force for a campaign the request named (see `kernel::plans::plan_in_force`).
    pub async fn plan(
        &self,
        id: &str,
    ) -> Result<std::sync::Arc<battleplan_core::plan::Plan>, AppError> {
        self.campaign(id).await?;
        crate::kernel::plans::plan_in_force(self.runtime, id)
            .await?
            .ok_or_else(|| AppError::not_found(format_args!("campaign {id} has no plan")))
    }

    /// Who a command of this request is recorded as, with the request's fingerprint.
    pub fn who(
        &self,
        actor: String,
        reason: Option<String>,
        command_id: Option<Uuid>,
    ) -> crate::kernel::runtime::Who {
        crate::kernel::runtime::Who {
            actor,
            reason,
            command_id,
            causation: None,
            fingerprint: self.fingerprint,
        }
    }

    /// The customer book, the outbox and the task boards caught up with the log, once per
    /// request; lock `runtime.customers`, `runtime.outreach` and `runtime.boards` after it.
    pub async fn caught_up(&self) -> Result<(), AppError> {
        self.caught_up
            .get_or_try_init(|| async {
                crate::kernel::dispatcher::catch_up(self.runtime).await?;
                Ok::<_, AppError>(())
            })
            .await
            .map(|_| ())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Pause,
    Resume,
    Advance,
    Cancel,
}

impl Action {
    pub fn command(self) -> battleplan_core::campaign::Command {
        use battleplan_core::campaign::Command;
        match self {
            Action::Pause => Command::Pause,
            Action::Resume => Command::Resume,
            Action::Advance => Command::Advance,
            Action::Cancel => Command::Cancel,
        }
    }
}

/// A question or command, as every front hands it over: everything it needs, files already
/// read (or named by an absolute path the owner of the store reads itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Status {
        campaign: Option<String>,
    },
    History {
        campaign: Option<String>,
        /// Only the events recorded up to this instant, then each campaign's state as of it.
        #[serde(default)]
        as_of: Option<DateTime<Utc>>,
        /// Paging by log position: only events after this position...
        #[serde(default)]
        after: Option<u64>,
        /// ...and at most this many (all when absent).
        #[serde(default)]
        limit: Option<usize>,
    },
    Explain(explain::ExplainQuestion),
    Act {
        campaign: String,
        action: Action,
        actor: String,
        reason: Option<String>,
        command_id: Option<Uuid>,
    },
    ApplyPlan {
        file_name: String,
        source: String,
        actor: String,
        reason: Option<String>,
        command_id: Option<Uuid>,
    },
    AudiencePreview(audience::PreviewQuestion),
    /// `customers import` / `outcomes import`: the owner of the store reads the file itself
    /// (by its absolute path), so a large file never travels through the socket.
    Import(import::ImportRequest),
    /// `metrics import`: the shop's own numbers, read by the owner of the store.
    ImportMetrics(metrics::MetricsImportRequest),
    /// `metrics show`: the shop's numbers per day and per stage, with the formulas.
    Metrics {
        campaign: String,
    },
    Outbox(outreach::OutboxQuestion),
    Tasks(tasks::TasksQuestion),
    TaskDone(tasks::TaskDoneRequest),
    Funnel {
        campaign: String,
    },
    /// Each stage target of a campaign against what was measured.
    Targets {
        campaign: String,
    },
    /// `calendar`: the phases, stages and task occurrences as iCalendar text.
    Calendar(calendar::CalendarQuestion),
    /// `report weekly`: the boss's weekly business report of one ISO week.
    WeeklyReport(report::WeeklyQuestion),
    ChannelResume {
        campaign: String,
        channel: String,
        actor: String,
        reason: String,
        command_id: Option<Uuid>,
    },
    /// A customer's one-click unsubscribe link, followed or confirmed (HTTP only, no token: the
    /// link is signed).
    Unsubscribe(outreach::UnsubscribeRequest),
    /// A tracked link followed (HTTP only, no token: the link is signed).
    Click(outreach::ClickRequest),
    /// `channel test`: one message through a plan channel's real channel; records nothing.
    ChannelTest(outreach::ChannelTestRequest),
    /// Outcomes or bounce notifications a merchant's system sends (HTTP only).
    Answers(answers::AnswersRequest),
    /// `audit verify`: the chain, the payloads and the stored projection; reads only.
    AuditVerify,
    /// `export --out FILE`: the owner of the store writes the file itself (by its absolute
    /// path), whole or not at all; a log of millions of events never travels through the socket.
    Export {
        out: std::path::PathBuf,
        file_name: String,
        as_of: Option<DateTime<Utc>>,
    },
}

impl Request {
    /// Whether the request may record something.
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Request::Import(_)
                | Request::ImportMetrics(_)
                | Request::Act { .. }
                | Request::ApplyPlan { .. }
                | Request::ChannelResume { .. }
                | Request::TaskDone(_)
                | Request::Unsubscribe(_)
                | Request::Answers(_)
                | Request::Click(_)
        )
    }

    /// The id of a command that changes something, when it carries one (imports derive theirs
    /// from the file's digest).
    pub fn command_id(&self) -> Option<Uuid> {
        match self {
            Request::Act { command_id, .. }
            | Request::ApplyPlan { command_id, .. }
            | Request::ChannelResume { command_id, .. } => *command_id,
            Request::TaskDone(request) => request.command_id,
            Request::Ping
            | Request::Status { .. }
            | Request::History { .. }
            | Request::Explain(_)
            | Request::AudiencePreview(_)
            | Request::Import(_)
            | Request::ImportMetrics(_)
            | Request::Metrics { .. }
            | Request::Outbox(_)
            | Request::Tasks(_)
            | Request::Funnel { .. }
            | Request::Targets { .. }
            | Request::Calendar(_)
            | Request::WeeklyReport(_)
            | Request::AuditVerify
            | Request::Unsubscribe(_)
            | Request::Answers(_)
            | Request::ChannelTest(_)
            | Request::Click(_)
            | Request::Export { .. } => None,
        }
    }
}

/// The answer of the process that owns the store: which process it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub pid: u32,
}

/// A use case's answer: one view per use case, each `Serialize` (its JSON is `--json`'s and
/// HTTP's body) and rendered as text by `present`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", content = "view", rename_all = "snake_case")]
pub enum Response {
    Pong(Pong),
    Status(campaigns::StatusView),
    History(campaigns::HistoryView),
    Acted(campaigns::ActView),
    PlanApplied(campaigns::ApplyView),
    Explain(explain::ExplainView),
    AudiencePreview(audience::PreviewView),
    Import(import::ImportView),
    MetricsImported(metrics::MetricsImportView),
    Metrics(metrics::MetricsView),
    Outbox(outreach::OutboxView),
    ChannelResumed(outreach::ChannelResumeView),
    Unsubscribed(outreach::UnsubscribeView),
    Answers(answers::AnswersView),
    ChannelTested(outreach::ChannelTestView),
    Clicked(outreach::ClickView),
    Tasks(tasks::TasksView),
    TaskDone(tasks::TaskDoneView),
    Funnel(tasks::FunnelView),
    Targets(campaigns::TargetsView),
    Calendar(calendar::CalendarView),
    WeeklyReport(report::WeeklyView),
    AuditVerify(audit::VerifyView),
    Export(archive::ExportView),
    /// `battleplan import FILE`, which no request asks (it creates a store, so no process owns
    /// one yet): a command-line process answers it itself, with `archive::restore`.
    Restored(archive::RestoreView),
}

/// The command id an idempotency key becomes: the same for the same caller and key, so a
/// retry is recognised by the store and answered with the first outcome.
pub fn command_id_for_key(caller: &str, key: &str) -> Uuid {
    crate::kernel::runtime::derived_command_id(&format!("http idempotency-key\n{caller}\n{key}"))
}

/// Every request's answer.
pub type Outcome = Result<Response, AppError>;

/// Where a request comes from, beyond what it says: what a front knows of the request itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// A digest of the request as it arrived (HTTP: method, path and body), recorded with the
    /// command so that its id (an `Idempotency-Key`) reused by another request is refused.
    pub fingerprint: Option<Uuid>,
}

/// Answers a request on the runtime.
pub async fn execute(runtime: &Runtime, request: Request) -> Outcome {
    execute_with(runtime, request, Origin::default()).await
}

/// Answers a request on the runtime, as the request `origin` describes.
pub async fn execute_with(runtime: &Runtime, request: Request, origin: Origin) -> Outcome {
    let ctx = Ctx::new(runtime).with_fingerprint(origin.fingerprint);
    crate::kernel::runtime::with_fingerprint(origin.fingerprint, answer(ctx, request)).await
}

async fn answer(ctx: Ctx<'_>, request: Request) -> Outcome {
    match request {
        Request::Ping => Ok(Response::Pong(Pong {
            pid: std::process::id(),
        })),
        Request::Export {
            out,
            file_name,
            as_of,
        } => archive::export_for(&ctx, &out, &file_name, as_of)
            .await
            .map(Response::Export),
        Request::AuditVerify => audit::verify(&ctx).await.map(Response::AuditVerify),
        Request::AudiencePreview(question) => Ok(Response::AudiencePreview(
            audience::preview(&ctx, &question).await?,
        )),
        Request::Import(request) => import::run(&ctx, request).await.map(Response::Import),
        Request::ImportMetrics(request) => Ok(Response::MetricsImported(
            metrics::import(&ctx, &request).await?,
        )),
        Request::Metrics { campaign } => {
            Ok(Response::Metrics(metrics::show(&ctx, &campaign).await?))
        }
        Request::Outbox(question) => Ok(Response::Outbox(outreach::report(&ctx, &question).await?)),
        Request::Tasks(question) => Ok(Response::Tasks(tasks::board(&ctx, &question).await?)),
        Request::TaskDone(request) => Ok(Response::TaskDone(tasks::done(&ctx, &request).await?)),
        Request::Funnel { campaign } => Ok(Response::Funnel(tasks::funnel(&ctx, &campaign).await?)),
        Request::Targets { campaign } => Ok(Response::Targets(
            campaigns::targets(&ctx, &campaign).await?,
        )),
        Request::Calendar(question) => Ok(Response::Calendar(
            calendar::calendar(&ctx, &question).await?,
        )),
        Request::WeeklyReport(question) => Ok(Response::WeeklyReport(
            report::weekly(&ctx, &question).await?,
        )),
        Request::ChannelResume {
            campaign,
            channel,
            actor,
            reason,
            command_id,
        } => Ok(Response::ChannelResumed(
            outreach::resume_channel(&ctx, &campaign, &channel, &actor, &reason, command_id)
                .await?,
        )),
        Request::Unsubscribe(request) => Ok(Response::Unsubscribed(
            outreach::unsubscribe(&ctx, &request).await?,
        )),
        Request::Answers(request) => Ok(Response::Answers(answers::record(&ctx, &request).await?)),
        Request::Click(request) => Ok(Response::Clicked(outreach::click(&ctx, &request).await?)),
        Request::ChannelTest(request) => Ok(Response::ChannelTested(
            outreach::channel_test(&ctx, &request).await?,
        )),
        Request::Status { campaign } => Ok(Response::Status(
            campaigns::status(&ctx, campaign.as_deref()).await?,
        )),
        Request::History {
            campaign,
            as_of,
            after,
            limit,
        } => Ok(Response::History(
            campaigns::history(
                &ctx,
                campaign.as_deref(),
                campaigns::HistoryQuery {
                    as_of,
                    after,
                    limit,
                },
            )
            .await?,
        )),
        Request::Explain(question) => {
            Ok(Response::Explain(explain::explain(&ctx, &question).await?))
        }
        Request::Act {
            campaign,
            action,
            actor,
            reason,
            command_id,
        } => {
            let who = ctx.who(actor, reason, command_id);
            Ok(Response::Acted(
                campaigns::act(&ctx, &campaign, action, &who).await?,
            ))
        }
        Request::ApplyPlan {
            file_name,
            source,
            actor,
            reason,
            command_id,
        } => {
            let who = ctx.who(actor, reason, command_id);
            Ok(Response::PlanApplied(
                campaigns::apply_plan(&ctx, &file_name, &source, &who).await?,
            ))
        }
    }
}
