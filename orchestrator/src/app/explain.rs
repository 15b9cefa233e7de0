//! `battleplan explain CAMPAIGN CUSTOMER [--as-of T]`: reads the log up to T, and only up to T
//! (events recorded later are skipped, never folded in), into a customer book, the campaign's
//! state and plan, and every outbox event and outcome about the customer; `core::explain`
//! assembles and words the answer. Run by the daemon for another terminal like every `Request`.

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
use serde::{Deserialize, Serialize};

use crate::kernel::runtime::{HandleError, Runtime};
use crate::present::Reply;

const BATCH: usize = 10_000;

/// What `explain` asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainQuestion {
    pub campaign: String,
    pub customer: String,
    /// Default: the runtime's clock.
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    pub json: bool,
}

/// Answers `explain` from the log up to the question's instant.
pub async fn explain(runtime: &Runtime, question: &ExplainQuestion) -> Result<Reply, HandleError> {
    let as_of = question.as_of.unwrap_or_else(|| runtime.clock.now());
    let campaign_stream = campaign::stream_of(&question.campaign).map_err(campaign::Rejection)?;
    let outreach_stream = battleplan_core::outreach::events::stream_of(&question.campaign)
        .map_err(campaign::Rejection)?;
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
            book.apply_recorded(event)?;
            if event.stream == campaign_stream {
                if let Some(decoded) = CampaignEvent::decode(event)? {
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
                let Some(decoded) = OutreachEvent::decode(event)? else {
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
                    crate::kernel::work::feed_outreach(&mut funnel, &decoded, event);
                }
                let about = match &decoded {
                    OutreachEvent::SendPlanned(planned) => ours && planned.customer == customer,
                    OutreachEvent::SendMoved(moved) => ours && moved.customer == customer,
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
                let decoded = CustomerEvent::decode(event)?;
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
        return Ok(Reply::user_error(format_args!(
            "there is no campaign `{}` as of {} (its plan was not applied by then)",
            battleplan_core::text::printable(&question.campaign),
            battleplan_core::campaign::timeline::local(zone, as_of)
        )));
    };
    let Some(plan) = plan::check(source.as_bytes()).plan else {
        return Err(HandleError::Store(StoreError::Corrupt {
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
    let explanation = match explain::explain(&inputs) {
        Ok(explanation) => explanation,
        Err(message) => return Ok(Reply::user_error(message)),
    };
    let text = if question.json {
        let mut value = serde_json::to_value(&explanation).unwrap_or_default();
        battleplan_core::campaign::timeline::localize_json(&mut value, plan.campaign.time_zone);
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    } else {
        explain::render(&explanation)
    };
    Ok(Reply::ok(text))
}

/// Still printed words; typed views come next.
pub type ExplainView = crate::present::Reply;
