//! `battleplan explain CAMPAIGN CUSTOMER [--as-of T]`: reads the log up to T, and only up to T
//! (events recorded later are skipped, never folded in), into a customer book, the campaign's
//! state and plan, and every outbox event and outcome about the customer; `core::explain`
//! assembles the answer, an [`ExplainView`] carries it (its instants with the campaign's offset)
//! and `present::explain` words it. Run by the daemon for another terminal like every `Request`.

use std::collections::BTreeMap;

use battleplan_core::campaign::{self, CampaignEvent, CampaignState, EventMeta};
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::customer::events::CustomerEvent;
use battleplan_core::event::{Position, StoreError};
use battleplan_core::explain::{self, Decision, Inputs, Outcome, Reach};
use battleplan_core::funnel::Funnel;
use battleplan_core::outreach::OutreachEvent;
use battleplan_core::plan;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::app::local_time::LocalTime;
use crate::app::{AppError, Ctx};
use crate::kernel::runtime::HandleError;

const BATCH: usize = 10_000;

/// What `explain` asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainQuestion {
    pub campaign: String,
    pub customer: String,
    /// Default: the runtime's clock.
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
}

/// Answers `explain` from the log up to the question's instant.
pub async fn explain(ctx: &Ctx<'_>, question: &ExplainQuestion) -> Result<ExplainView, AppError> {
    // A campaign no plan ever created is unknown whatever the instant asked.
    ctx.campaign(&question.campaign).await?;
    let runtime = ctx.runtime;
    let as_of = question.as_of.unwrap_or(ctx.now);
    let campaign_stream = campaign::stream_of(&question.campaign).map_err(AppError::invalid)?;
    let outreach_stream = battleplan_core::outreach::events::stream_of(&question.campaign)
        .map_err(AppError::invalid)?;
    let customer = question.customer.as_str();

    let mut book = CustomerBook::default();
    let mut state = CampaignState::draft(&question.campaign);
    let mut source: Option<String> = None;
    let mut decisions = Vec::new();
    let mut reaches = Vec::new();
    let mut outcomes = Vec::new();
    // This customer's part of the funnel projection, as of the question's instant.
    let mut funnel = Funnel::new();
    let mut import_files: BTreeMap<String, String> = BTreeMap::new();
    let store = runtime.store.as_ref();
    let mut after = Position::START;
    loop {
        let batch = store.read_all(after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        let full = batch.len() == BATCH;
        for event in batch.iter().filter(|event| event.recorded_at <= as_of) {
            book.apply_recorded(event).map_err(HandleError::from)?;
            if event.stream == campaign_stream {
                if let Some(decoded) = CampaignEvent::decode(event).map_err(HandleError::from)? {
                    match &decoded {
                        CampaignEvent::PlanApplied(applied) => {
                            source = Some(applied.source.clone());
                        }
                        CampaignEvent::PlanRevised(revised) => {
                            source = Some(revised.source.clone());
                        }
                        _ => {}
                    }
                    state = campaign::evolve(state, &decoded, &EventMeta::of(event));
                }
            } else if OutreachEvent::holds(&event.event_type) {
                let Some(decoded) = OutreachEvent::decode(event).map_err(HandleError::from)? else {
                    continue;
                };
                let ours = event.stream == outreach_stream;
                let concerns_customer = match &decoded {
                    OutreachEvent::SendPlanned(planned) => planned.customer == customer,
                    OutreachEvent::NotSent(not_sent) => not_sent.customer == customer,
                    OutreachEvent::MessageSent(sent) => sent.to == customer,
                    _ => false,
                };
                if concerns_customer {
                    crate::kernel::work::feed_outreach(&mut funnel, &decoded, event.recorded_at);
                }
                let about = match &decoded {
                    OutreachEvent::SendPlanned(planned) => ours && planned.customer == customer,
                    OutreachEvent::SendMoved(moved) => ours && moved.customer == customer,
                    OutreachEvent::DeliveryDeferred(deferred) => {
                        ours && deferred.customer == customer
                    }
                    OutreachEvent::NotSent(not_sent) => ours && not_sent.customer == customer,
                    OutreachEvent::FollowUpStopped(stopped) => ours && stopped.customer == customer,
                    OutreachEvent::MessageSent(sent) if sent.to == customer => {
                        if let Some(reach_out) = &sent.reach_out {
                            reaches.push(Reach {
                                at: event.recorded_at,
                                campaign: sent.campaign.clone(),
                                reach_out: reach_out.clone(),
                                kind: sent.kind,
                            });
                        }
                        ours && sent.reach_out.is_some()
                    }
                    _ => false,
                };
                if about {
                    decisions.push(Decision {
                        position: event.position.0,
                        recorded_at: event.recorded_at,
                        actor: event.metadata.actor.clone(),
                        plan_version: state.plan_version,
                        event: decoded,
                    });
                }
            } else if CustomerEvent::holds(&event.event_type) {
                let decoded = CustomerEvent::decode(event).map_err(HandleError::from)?;
                if let Some(about) = decoded.as_ref().filter(|decoded| match decoded {
                    CustomerEvent::OutcomeRecorded(row) => row.customer == customer,
                    CustomerEvent::CustomerRecorded(row) => row.customer == customer,
                    _ => false,
                }) {
                    crate::kernel::work::feed_customer(&mut funnel, about);
                }
                match decoded {
                    Some(CustomerEvent::ImportStarted(started)) => {
                        import_files.insert(event.stream.as_str().to_string(), started.file);
                    }
                    Some(CustomerEvent::OutcomeRecorded(row)) if row.customer == customer => {
                        let concerns = row
                            .campaign
                            .as_deref()
                            .is_none_or(|campaign| campaign == question.campaign);
                        if concerns {
                            outcomes.push(Outcome {
                                position: event.position.0,
                                recorded_at: event.recorded_at,
                                plan_version: state.plan_version,
                                actor: event.metadata.actor.clone(),
                                file: import_files.get(event.stream.as_str()).cloned(),
                                outcome: row,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        if !full {
            break;
        }
    }
    let Some(source) = source else {
        let zone = crate::app::campaigns::people_zone(runtime).await?;
        return Err(AppError::not_found(format_args!(
            "there is no campaign `{}` as of {} (its plan was not applied by then)",
            battleplan_core::text::printable(&question.campaign),
            battleplan_core::campaign::timeline::local(zone, as_of)
        )));
    };
    let Some(plan) = plan::check(source.as_bytes()).plan else {
        return Err(AppError::from(StoreError::Corrupt {
            position: Position::START,
            detail: format!(
                "the plan recorded for campaign {} no longer validates",
                question.campaign
            ),
        }));
    };
    let inputs = Inputs {
        plan: &plan,
        state: &state,
        book: &book,
        customer,
        as_of,
        decisions,
        reaches,
        outcomes,
        funnel_stage: funnel.stage_of(&question.campaign, customer, as_of),
    };
    let explanation = explain::explain(&inputs).map_err(AppError::not_found)?;
    Ok(ExplainView::of(explanation, plan.campaign.time_zone))
}

/// A customer's story in a campaign as of an instant (`core::explain::Explanation`), its
/// instants written with the campaign's offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExplainView {
    pub as_of: LocalTime,
    pub campaign: String,
    /// Where the campaign stood, in words (`burst (early stage)`).
    pub campaign_status: String,
    pub customer: String,
    /// Every decision, send and outcome about the customer in this campaign, in log order.
    pub entries: Vec<ExplainEntry>,
    /// How far the customer got in this campaign's funnel by `as_of`; `none` if the campaign
    /// never considered them.
    pub funnel_stage: String,
    /// The customer's lifecycle stage at `as_of`, over every campaign; `none` outside it.
    pub lifecycle: String,
    pub plan_version: u32,
    pub profile: ExplainProfile,
    /// The plan's segments the customer is in at `as_of`.
    pub segments: Vec<String>,
    /// The campaign's time zone.
    pub time_zone: String,
}

/// What the customer book says of the customer at `as_of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExplainProfile {
    pub company: Option<String>,
    pub email: Option<String>,
    pub email_ok: bool,
    /// The last reach per channel kind: `[kind, instant]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub last_reached: Vec<(String, LocalTime)>,
    pub name: Option<String>,
    pub orders: u32,
    pub owner: Option<String>,
    pub recycle_bin: bool,
    pub tags: Vec<String>,
    pub tier: Option<String>,
    /// The customer's own time zone, when the book has one.
    pub time_zone: Option<String>,
    /// The channel kinds the customer unsubscribed from.
    pub unsubscribed_from: Vec<String>,
}

/// One line of the customer's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExplainEntry {
    pub actor: String,
    pub attempt: Option<u32>,
    pub plan_version: u32,
    /// The event's position in the log.
    pub position: u64,
    pub reach_out: Option<String>,
    pub recorded_at: LocalTime,
    pub summary: String,
    /// `planned`, `moved`, `not_sent`, `sent`, `follow_ups_stopped`, or an outcome (`opened`,
    /// ...).
    pub what: String,
    /// The rule and the numbers behind the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl ExplainView {
    /// The core's explanation, its instants as read in the campaign's `zone`.
    pub fn of(explanation: explain::Explanation, zone: Tz) -> ExplainView {
        let at = |instant: DateTime<Utc>| LocalTime::new(zone, instant);
        let profile = explanation.profile;
        ExplainView {
            as_of: at(explanation.as_of),
            campaign: explanation.campaign,
            campaign_status: explanation.campaign_status,
            customer: explanation.customer,
            entries: explanation
                .entries
                .into_iter()
                .map(|entry| ExplainEntry {
                    actor: entry.actor,
                    attempt: entry.attempt,
                    plan_version: entry.plan_version,
                    position: entry.position,
                    reach_out: entry.reach_out,
                    recorded_at: at(entry.recorded_at),
                    summary: entry.summary,
                    what: entry.what,
                    why: entry.why,
                })
                .collect(),
            funnel_stage: explanation.funnel_stage,
            lifecycle: explanation.lifecycle,
            plan_version: explanation.plan_version,
            profile: ExplainProfile {
                company: profile.company,
                email: profile.email,
                email_ok: profile.email_ok,
                last_reached: profile
                    .last_reached
                    .into_iter()
                    .map(|(kind, instant)| (kind.to_string(), at(instant)))
                    .collect(),
                name: profile.name,
                orders: profile.orders,
                owner: profile.owner,
                recycle_bin: profile.recycle_bin,
                tags: profile.tags,
                tier: profile.tier,
                time_zone: profile.time_zone,
                unsubscribed_from: profile
                    .unsubscribed_from
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            },
            segments: explanation.segments,
            time_zone: explanation.time_zone,
        }
    }
}
