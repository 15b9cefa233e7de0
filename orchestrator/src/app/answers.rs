//! Answers coming back by themselves: outcomes a merchant's system reports
//! (`POST /api/v1/outcomes`) and the mail service's bounce notifications
//! (`POST /api/v1/bounces`), each with the sender's own id for it, which makes a repeat a no-op.
//!
//! A batch is checked whole before anything is recorded: one bad answer refuses the batch with
//! every problem located (`outcomes[3].customer: ...`), and nothing is written. Each answer is
//! then recorded on its own, an `OutcomeRecorded` under a command id derived from its id: in
//! its campaign's outreach stream, or the `answers` stream when it names no campaign. An
//! unsubscribe stops every later send to the customer on that channel kind and a mail bounce
//! every later mail, in every campaign, from the instant it is recorded (the customer book's
//! consent and address).

use std::collections::{BTreeMap, HashMap};

use battleplan_core::customer::events::{CustomerEvent, OutcomeKind, OutcomeRecorded};
use battleplan_core::event::ids::{EventId, StreamId};
use battleplan_core::outreach::events::stream_of;
use battleplan_core::plan::model::ChannelKind;
use battleplan_core::plan::values::Money;
use battleplan_core::text::printable;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AppError, Ctx};

/// The most answers in one request.
pub const MAX_ANSWERS: usize = 1_000;
/// The longest id, customer, key or address an answer may carry.
const MAX_TEXT: usize = 200;

/// Where a batch of answers came from: it scopes the ids (the same id from the outcome webhook
/// and from the bounce receiver are two answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    Outcomes,
    Bounces,
}

impl AnswerSource {
    fn list(self) -> &'static str {
        match self {
            AnswerSource::Outcomes => "outcomes",
            AnswerSource::Bounces => "bounces",
        }
    }
}

/// One outcome, as the outcome webhook takes it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeAnswer {
    /// The sender's id for this outcome: a second answer with the same id is a no-op.
    #[schema(example = "evt-20260902-000123")]
    pub id: String,
    /// The customer; may be left out when `message` names one of battleplan's messages.
    #[serde(default)]
    #[schema(example = "c-000417")]
    pub customer: Option<String>,
    /// The message it answers: its idempotency key (a webhook's `webhook-id`, a mail's
    /// `X-Battleplan-Key`). Its campaign, reach-out, customer and channel kind are taken from
    /// the message when the answer leaves them out.
    #[serde(default)]
    #[schema(example = "sept-festival-2026/warm-up-recall/c-000417/1")]
    pub message: Option<String>,
    #[schema(value_type = String, example = "replied")]
    pub outcome: OutcomeKind,
    /// When it happened; the moment it is received when left out. Never later than that.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub reach_out: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "mail")]
    pub channel: Option<ChannelKind>,
    /// The order's amount, only with `ordered`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "260.00")]
    pub amount: Option<Money>,
    /// The offer the order used, only with `ordered`: a plan offer's id (`spend-more`) or a
    /// coupon's code (`SEPT50`, in any case), of the answer's campaign (or, naming none, of any
    /// campaign), in any version of its plan.
    #[serde(default)]
    #[schema(example = "SEPT50")]
    pub offer: Option<String>,
}

/// One bounce notification, in the generic form the bounce receiver takes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BounceAnswer {
    /// The mail service's id for the notification: a second one with the same id is a no-op.
    #[schema(example = "b-0001")]
    pub id: String,
    /// `hard` (the address is bad: no more mail to it), `soft` (a passing failure: nothing is
    /// recorded) or `complaint` (the recipient marked it as spam: unsubscribed from mail).
    #[schema(value_type = String, example = "hard")]
    pub kind: BounceKind,
    /// The address that bounced.
    #[schema(example = "li.na@example.com")]
    pub recipient: String,
    /// The bounced message's `X-Battleplan-Key`, when the notification carries it.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// The service's words: accepted and never recorded (an address or a server's reply may
    /// be personal).
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKind {
    Hard,
    Soft,
    Complaint,
}

/// A batch of answers to record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswersRequest {
    pub source: AnswerSource,
    pub outcomes: Vec<OutcomeAnswer>,
    pub bounces: Vec<BounceAnswer>,
    /// Who sends them (the token's name).
    pub actor: String,
}

/// What became of each answer, in the request's order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnswersView {
    /// Answers recorded now.
    pub recorded: u64,
    /// Answers whose id was recorded before: nothing recorded again.
    pub repeated: u64,
    /// Answers that record nothing (a soft bounce).
    pub ignored: u64,
    pub answers: Vec<AnswerResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnswerResult {
    pub id: String,
    /// `recorded`, `repeated` or `ignored`.
    pub status: String,
    pub customer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

/// An answer checked and resolved, ready to record (no events: ignored).
struct Resolved {
    id: String,
    events: Vec<OutcomeRecorded>,
    customer: String,
}

/// Checks a batch whole, then records each answer (see the module's documentation).
pub async fn record(ctx: &Ctx<'_>, request: &AnswersRequest) -> Result<AnswersView, AppError> {
    let count = request.outcomes.len() + request.bounces.len();
    if count == 0 {
        return Err(AppError::invalid(format_args!(
            "no {} in the request",
            request.source.list()
        )));
    }
    if count > MAX_ANSWERS {
        return Err(AppError::invalid(format_args!(
            "{count} answers in one request; at most {MAX_ANSWERS}: send them in batches"
        )));
    }
    ctx.caught_up().await?;
    let resolved = resolve(ctx, request).await?;
    let runtime = ctx.runtime;
    let mut view = AnswersView {
        recorded: 0,
        repeated: 0,
        ignored: 0,
        answers: Vec::with_capacity(resolved.len()),
    };
    for answer in resolved {
        let Some(event) = answer.events.first().cloned() else {
            view.ignored += 1;
            view.answers.push(AnswerResult {
                id: answer.id,
                status: "ignored".to_string(),
                customer: answer.customer,
                outcome: None,
                campaign: None,
            });
            continue;
        };
        let stream = match &event.campaign {
            Some(campaign) => stream_of(campaign).map_err(AppError::invalid)?,
            None => StreamId::new("answers").map_err(AppError::internal)?,
        };
        let command_id = crate::kernel::runtime::derived_command_id(&format!(
            "answer|{}|{}",
            request.source.list(),
            answer.id
        ));
        let result = AnswerResult {
            id: answer.id.clone(),
            status: String::new(),
            customer: answer.customer.clone(),
            outcome: Some(event.outcome.as_str().to_string()),
            campaign: event.campaign.clone(),
        };
        let encoded = answer
            .events
            .into_iter()
            .map(|event| {
                CustomerEvent::OutcomeRecorded(event)
                    .encode(EventId(runtime.ids.next_id(ctx.now)))
                    .map_err(AppError::internal)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = runtime
            .record(
                stream,
                encoded,
                &request.actor,
                Some(format!(
                    "{} {}",
                    match request.source {
                        AnswerSource::Outcomes => "reported by the outcome webhook as",
                        AnswerSource::Bounces => "reported by the bounce receiver as",
                    },
                    printable(&answer.id)
                )),
                command_id,
                ctx.now,
            )
            .await?;
        let status = if outcome.deduplicated {
            view.repeated += 1;
            "repeated"
        } else {
            view.recorded += 1;
            "recorded"
        };
        view.answers.push(AnswerResult {
            status: status.to_string(),
            ..result
        });
    }
    Ok(view)
}

/// Every answer checked against what the store holds, and resolved to its event; or every
/// problem, located.
async fn resolve(ctx: &Ctx<'_>, request: &AnswersRequest) -> Result<Vec<Resolved>, AppError> {
    let runtime = ctx.runtime;
    let now = ctx.now;
    let list = request.source.list();
    let mut problems: Vec<String> = Vec::new();
    let mut resolved = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let ids = request
        .outcomes
        .iter()
        .map(|answer| answer.id.as_str())
        .chain(request.bounces.iter().map(|answer| answer.id.as_str()));
    for (index, id) in ids.enumerate() {
        if let Err(why) = text(id) {
            problems.push(format!("{list}[{index}].id: {why}"));
        } else if let Some(first) = seen.insert(id, index) {
            problems.push(format!(
                "{list}[{index}].id: `{}` is also {list}[{first}]'s; each answer has its own id",
                printable(id)
            ));
        }
    }
    // The messages named, from every campaign's sends.
    let sends: HashMap<String, (String, String, String, ChannelKind)> = {
        let outreach = runtime.outreach.lock().await;
        request
            .outcomes
            .iter()
            .filter_map(|answer| answer.message.as_deref())
            .chain(
                request
                    .bounces
                    .iter()
                    .filter_map(|answer| answer.message.as_deref()),
            )
            .filter_map(|key| {
                // The key itself, or as a webhook's `webhook-id` carries it (percent-encoded
                // where it is not plain ASCII).
                let send = outreach.send(key).or_else(|| {
                    battleplan_core::outreach::links::percent_decoded(key)
                        .and_then(|decoded| outreach.send(&decoded))
                })?;
                Some((
                    key.to_string(),
                    (
                        send.planned.campaign.clone(),
                        send.planned.reach_out.clone(),
                        send.planned.customer.clone(),
                        send.planned.kind,
                    ),
                ))
            })
            .collect()
    };
    // Bounced addresses, to their customers: one pass over the book for the whole batch.
    let mut by_address: BTreeMap<String, Vec<String>> = request
        .bounces
        .iter()
        .map(|answer| (answer.recipient.trim().to_ascii_lowercase(), Vec::new()))
        .collect();
    let book = runtime.customers.lock().await;
    if !by_address.is_empty() {
        for customer in book.customers() {
            if let Some(email) = &customer.email() {
                if let Some(found) = by_address.get_mut(&email.to_ascii_lowercase()) {
                    found.push(customer.id().to_string());
                }
            }
        }
    }
    let campaigns = ctx.campaigns().await?;
    // Offers are looked up only when an answer names one: it reads every plan version.
    let offers = if request.outcomes.iter().any(|answer| answer.offer.is_some()) {
        crate::app::import::known_offers(runtime).await?
    } else {
        BTreeMap::new()
    };
    let mut plans = HashMap::new();
    for (index, answer) in request.outcomes.iter().enumerate() {
        let at = |field: &str| format!("{list}[{index}].{field}");
        let before = problems.len();
        let from_message = match answer.message.as_deref() {
            Some(key) => {
                if let Err(why) = text(key) {
                    problems.push(format!("{}: {why}", at("message")));
                }
                let found = sends.get(key);
                if found.is_none() {
                    problems.push(format!(
                        "{}: no message `{}` was planned by any campaign",
                        at("message"),
                        printable(key)
                    ));
                }
                found
            }
            None => None,
        };
        let customer = answer
            .customer
            .clone()
            .or_else(|| from_message.map(|(_, _, customer, _)| customer.clone()));
        let Some(customer) = customer else {
            problems.push(format!(
                "{}: say whose outcome it is (`customer`, or the `message` it answers)",
                at("customer")
            ));
            continue;
        };
        if let Some((_, _, of_message, _)) = from_message {
            if *of_message != customer {
                problems.push(format!(
                    "{}: `{}` is not the customer of message `{}`",
                    at("customer"),
                    printable(&customer),
                    printable(answer.message.as_deref().unwrap_or_default())
                ));
            }
        }
        if book.get(&customer).is_none() {
            problems.push(format!(
                "{}: no customer `{}` in the customer book",
                at("customer"),
                printable(&customer)
            ));
        }
        let campaign = answer
            .campaign
            .clone()
            .or_else(|| from_message.map(|(campaign, _, _, _)| campaign.clone()));
        let reach_out = answer
            .reach_out
            .clone()
            .or_else(|| from_message.map(|(_, reach_out, _, _)| reach_out.clone()));
        let channel = answer
            .channel
            .or_else(|| from_message.map(|(_, _, _, kind)| *kind));
        match (&campaign, &reach_out) {
            (Some(campaign), reach_out) => {
                if !campaigns.states.contains_key(campaign.as_str()) {
                    problems.push(format!(
                        "{}: no campaign `{}`",
                        at("campaign"),
                        printable(campaign)
                    ));
                } else if let Some(reach_out) = reach_out {
                    if !plans.contains_key(campaign) {
                        let plan = crate::kernel::plans::plan_in_force(runtime, campaign)
                            .await
                            .map_err(AppError::internal)?;
                        plans.insert(campaign.clone(), plan);
                    }
                    let known = plans
                        .get(campaign)
                        .and_then(Option::as_ref)
                        .is_some_and(|plan| {
                            plan.reach_outs.iter().any(|known| known.id == *reach_out)
                        });
                    if !known {
                        problems.push(format!(
                            "{}: no reach-out `{}` in campaign `{}`",
                            at("reach_out"),
                            printable(reach_out),
                            printable(campaign)
                        ));
                    }
                }
            }
            (None, Some(_)) => problems.push(format!(
                "{}: a reach-out without its campaign",
                at("campaign")
            )),
            (None, None) => {}
        }
        let needs_channel = matches!(
            answer.outcome,
            OutcomeKind::Delivered
                | OutcomeKind::Bounced
                | OutcomeKind::Opened
                | OutcomeKind::Clicked
        );
        if needs_channel && channel.is_none() {
            problems.push(format!(
                "{}: a {} outcome says its channel (mail, in_site, im, webhook, console)",
                at("channel"),
                answer.outcome.as_str()
            ));
        }
        if answer.amount.is_some() && answer.outcome != OutcomeKind::Ordered {
            problems.push(format!("{}: an amount is only for `ordered`", at("amount")));
        }
        if let Some(offer) = &answer.offer {
            if let Err(why) = text(offer) {
                problems.push(format!("{}: {why}", at("offer")));
            } else if answer.outcome != OutcomeKind::Ordered {
                problems.push(format!("{}: an offer is only for `ordered`", at("offer")));
            } else {
                let known = match campaign.as_deref() {
                    Some(campaign) => offers.get(campaign).is_none_or(|names| names.knows(offer)),
                    None => offers.values().any(|names| names.knows(offer)),
                };
                if !known {
                    problems.push(format!(
                        "{}: no offer `{}` in any version of the plan of {}; name a plan offer by its id or a coupon by its code",
                        at("offer"),
                        printable(offer),
                        match campaign.as_deref() {
                            Some(campaign) => format!("campaign `{}`", printable(campaign)),
                            None => "any campaign".to_string(),
                        }
                    ));
                }
            }
        }
        let when = answer.at.unwrap_or(now);
        if when > now {
            problems.push(format!(
                "{}: {} is later than now ({}); an outcome is reported once it has happened",
                at("at"),
                when.to_rfc3339(),
                now.to_rfc3339()
            ));
        }
        if problems.len() > before {
            continue;
        }
        resolved.push(Resolved {
            id: answer.id.clone(),
            customer: customer.clone(),
            events: vec![OutcomeRecorded {
                customer,
                line: 0,
                outcome: answer.outcome,
                at: when,
                campaign,
                reach_out,
                channel,
                amount: answer.amount,
                message: answer.message.clone(),
                offer: answer.offer.as_ref().map(|offer| offer.trim().to_string()),
            }],
        });
    }
    for (index, answer) in request.bounces.iter().enumerate() {
        let at = |field: &str| format!("{list}[{index}].{field}");
        let before = problems.len();
        let address = answer.recipient.trim().to_ascii_lowercase();
        let from_message = answer.message.as_deref().and_then(|key| sends.get(key));
        if let Some(key) = answer.message.as_deref() {
            if from_message.is_none() {
                problems.push(format!(
                    "{}: no message `{}` was planned by any campaign",
                    at("message"),
                    printable(key)
                ));
            }
        }
        // The message's customer, or every customer with the address (the address is what is
        // bad).
        let customers = match from_message {
            Some((_, _, customer, _)) => vec![customer.clone()],
            None => by_address.get(&address).cloned().unwrap_or_default(),
        };
        let Some(first) = customers.first().cloned() else {
            problems.push(format!(
                "{}: no customer has the address `{}`",
                at("recipient"),
                printable(&answer.recipient)
            ));
            continue;
        };
        let when = answer.at.unwrap_or(now);
        if when > now {
            problems.push(format!(
                "{}: {} is later than now ({})",
                at("at"),
                when.to_rfc3339(),
                now.to_rfc3339()
            ));
        }
        if problems.len() > before {
            continue;
        }
        let outcome = match answer.kind {
            BounceKind::Hard => Some(OutcomeKind::Bounced),
            BounceKind::Complaint => Some(OutcomeKind::Unsubscribed),
            BounceKind::Soft => None,
        };
        resolved.push(Resolved {
            id: answer.id.clone(),
            customer: first,
            events: outcome
                .map(|outcome| {
                    customers
                        .iter()
                        .map(|customer| OutcomeRecorded {
                            customer: customer.clone(),
                            line: 0,
                            outcome,
                            at: when,
                            campaign: from_message.map(|(campaign, _, _, _)| campaign.clone()),
                            reach_out: from_message.map(|(_, reach_out, _, _)| reach_out.clone()),
                            channel: Some(ChannelKind::Mail),
                            amount: None,
                            message: answer.message.clone(),
                            offer: None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    drop(book);
    if !problems.is_empty() {
        let shown = problems.len().min(100);
        let more = problems.len() - shown;
        let mut message = format!(
            "{} problem(s); nothing was recorded:\n{}",
            problems.len(),
            problems[..shown].join("\n")
        );
        if more > 0 {
            message.push_str(&format!("\n... and {more} more"));
        }
        return Err(AppError::invalid(message));
    }
    Ok(resolved)
}

/// An id, key or customer: 1 to 200 characters, no control characters.
fn text(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty".to_string());
    }
    if value.chars().count() > MAX_TEXT {
        return Err(format!("over {MAX_TEXT} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("`{}` has a control character", printable(value)));
    }
    Ok(())
}
