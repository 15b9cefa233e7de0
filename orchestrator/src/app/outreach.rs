//! The outbox for people: `outbox CAMPAIGN` (each reach-out planned, sent, pending and not sent
//! by reason; with `--customers`, every customer's key and what became of it) and
//! `channel resume CAMPAIGN CHANNEL` after the bounce guard paused it.

use std::collections::BTreeMap;

use battleplan_core::campaign::timeline::local_rfc3339;
use battleplan_core::event::EventId;
use battleplan_core::outreach::events::{stream_of, ChannelResumed, NotSentReason};
use battleplan_core::outreach::state::SendStatus;
use battleplan_core::outreach::OutreachEvent;
use battleplan_core::text::printable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::{AppError, Ctx};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxQuestion {
    pub campaign: String,
    pub reach_out: Option<String>,
    /// Every customer's key and what became of it, besides the counts.
    pub customers: bool,
}

/// A campaign's outbox: per reach-out, per channel and (when asked) per customer. Fields in
/// alphabetical order, as the report's JSON has always had them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutboxView {
    pub campaign: String,
    /// Each channel of the plan, in the plan's order, with its bounce guard.
    pub channels: Vec<ChannelGuardView>,
    /// Only when asked for: every key, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customers: Option<Vec<CustomerSendView>>,
    /// Each reach-out asked about, by id.
    pub reach_outs: Vec<ReachOutCountsView>,
}

/// What became of one reach-out's sends.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReachOutCountsView {
    pub id: String,
    /// Not sent, by reason (`quota`, `unsubscribed`, ...).
    pub not_sent: BTreeMap<String, u64>,
    pub pending: u64,
    /// Whether the reach-out has been planned (its audience decided).
    pub planned: bool,
    pub sent: u64,
}

/// A channel of the campaign: how it stands (sending, retrying, paused by the bounce guard or
/// after a failure), the bounce guard's counts, and what the receiving side last said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelGuardView {
    pub bounced: u64,
    /// Why a failure paused it (`state` `paused_after_failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub id: String,
    /// The receiving side's last deferral, while sends wait for a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deferral: Option<String>,
    pub paused: bool,
    /// Sends waiting for a retry after the receiving side deferred them.
    pub retrying: u64,
    /// Since when some send has been waiting for a retry, in the campaign's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrying_since: Option<String>,
    pub sent: u64,
    pub state: ChannelState,
    /// Where its messages go: `SMTP host:port`, `webhook URL` or `file outbox`.
    pub via: String,
}

/// How a channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    Sending,
    /// Some sends wait for a retry after the receiving side deferred them.
    Retrying,
    PausedByGuard,
    PausedAfterFailure,
}

/// Where a send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendState {
    Pending,
    Sent,
    NotSent,
}

/// One customer's message (one key): where it stands, why not, and when.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomerSendView {
    /// When it went, or is to go, with the campaign's offset; `null` when it is not sent.
    pub at: Option<String>,
    pub attempt: u32,
    /// Absent for a customer no send was planned for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub customer: String,
    pub key: String,
    pub reach_out: String,
    #[schema(value_type = Option<String>)]
    pub reason: Option<NotSentReason>,
    pub status: SendState,
}

/// A channel let send again (`already_recorded`: by an earlier try of this very command).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelResumeView {
    pub actor: String,
    pub already_recorded: bool,
    pub campaign: String,
    pub channel: String,
    pub reason: String,
}

/// Splits `campaign/reach-out/customer/attempt`.
fn parts(key: &str) -> Option<(&str, &str, &str)> {
    let mut pieces = key.rsplitn(4, '/');
    let attempt = pieces.next()?;
    let customer = pieces.next()?;
    let reach_out = pieces.next()?;
    Some((reach_out, customer, attempt))
}

/// The keys of a campaign decided not sent at planning (a `NotSent` that no `SendPlanned` of its
/// key came before), with their reasons, read from the campaign's outbox stream up to the log
/// position `as_of`: the projection keeps only their counts once a reach-out is planned.
async fn not_planned_keys(
    ctx: &Ctx<'_>,
    campaign: &str,
    as_of: battleplan_core::event::Position,
) -> Result<Vec<(String, NotSentReason)>, AppError> {
    use battleplan_core::outreach::OutreachEvent;
    let Ok(stream) = battleplan_core::outreach::events::stream_of(campaign) else {
        return Ok(Vec::new());
    };
    let mut planned: std::collections::HashSet<String> = std::collections::HashSet::new();
    // A key decided twice (a log from an older version) is listed once, with its last reason,
    // as the projection counts it.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut keys: Vec<(String, NotSentReason)> = Vec::new();
    let mut from = battleplan_core::event::StreamVersion::NONE.next();
    'read: loop {
        let batch = ctx
            .runtime
            .store
            .read_stream(&stream, from, 10_000)
            .await
            .map_err(crate::kernel::runtime::HandleError::from)?;
        let Some(last) = batch.last() else { break };
        from = last.version.next();
        let full = batch.len() == 10_000;
        for event in &batch {
            if event.position > as_of {
                break 'read;
            }
            match OutreachEvent::decode(event).map_err(crate::kernel::runtime::HandleError::from)? {
                Some(OutreachEvent::SendPlanned(send)) => {
                    planned.insert(send.key);
                }
                Some(OutreachEvent::NotSent(not_sent)) if !planned.contains(&not_sent.key) => {
                    match seen
                        .get(&not_sent.key)
                        .and_then(|index| keys.get_mut(*index))
                    {
                        Some(kept) => kept.1 = not_sent.reason,
                        None => {
                            seen.insert(not_sent.key.clone(), keys.len());
                            keys.push((not_sent.key, not_sent.reason));
                        }
                    }
                }
                _ => {}
            }
        }
        if !full {
            break;
        }
    }
    Ok(keys)
}

fn counted<'a>(
    counts: &'a mut BTreeMap<String, ReachOutCountsView>,
    reach_out: &str,
) -> &'a mut ReachOutCountsView {
    counts
        .entry(reach_out.to_string())
        .or_insert_with(|| ReachOutCountsView {
            id: reach_out.to_string(),
            not_sent: BTreeMap::new(),
            pending: 0,
            planned: false,
            sent: 0,
        })
}

pub async fn report(ctx: &Ctx<'_>, question: &OutboxQuestion) -> Result<OutboxView, AppError> {
    let plan = ctx.plan(&question.campaign).await?;
    if let Some(reach_out) = &question.reach_out {
        if !plan.reach_outs.iter().any(|r| &r.id == reach_out) {
            let known: Vec<&str> = plan.reach_outs.iter().map(|r| r.id.as_str()).collect();
            return Err(AppError::not_found(format_args!(
                "campaign {} has no reach-out `{reach_out}`; it has: {}",
                question.campaign,
                known.join(", ")
            )));
        }
    }
    ctx.caught_up().await?;
    let outreach = ctx.runtime.outreach.lock().await;
    let campaign = question.campaign.as_str();
    let zone = plan.campaign.time_zone;
    let wanted = |reach_out: &str| question.reach_out.as_deref().is_none_or(|r| r == reach_out);
    let mut counts: BTreeMap<String, ReachOutCountsView> = BTreeMap::new();
    for reach_out in &plan.reach_outs {
        if wanted(&reach_out.id) {
            counted(&mut counts, &reach_out.id).planned = outreach
                .reach_out_planned(campaign, &reach_out.id)
                .is_some();
        }
    }
    let mut rows: Vec<CustomerSendView> = Vec::new();
    for send in outreach.sends_of(campaign) {
        let planned = &send.planned;
        if !wanted(&planned.reach_out) {
            continue;
        }
        let entry = counted(&mut counts, &planned.reach_out);
        let (status, reason, at) = match send.status {
            SendStatus::Pending => {
                entry.pending += 1;
                (SendState::Pending, None, Some(planned.at))
            }
            SendStatus::Sent { at } => {
                entry.sent += 1;
                (SendState::Sent, None, Some(at))
            }
            SendStatus::NotSent(reason) => {
                *entry.not_sent.entry(reason.key().to_string()).or_default() += 1;
                (SendState::NotSent, Some(reason), None)
            }
        };
        if question.customers {
            rows.push(CustomerSendView {
                at: at.map(|at| local_rfc3339(zone, at)),
                attempt: planned.attempt,
                channel: Some(planned.channel.clone()),
                customer: planned.customer.clone(),
                key: planned.key.clone(),
                reach_out: planned.reach_out.clone(),
                reason,
                status,
            });
        }
    }
    for (reach_out, reasons) in outreach.not_planned_counts(campaign) {
        if !wanted(reach_out) {
            continue;
        }
        let entry = counted(&mut counts, reach_out);
        for (reason, count) in reasons {
            *entry.not_sent.entry(reason.key().to_string()).or_default() += count;
        }
    }
    let channels = channel_views(&plan, &outreach, campaign);
    let as_of = outreach.position;
    drop(outreach);
    if question.customers {
        for (key, reason) in not_planned_keys(ctx, campaign, as_of).await? {
            let Some((reach_out, customer, attempt)) = parts(&key) else {
                continue;
            };
            if !wanted(reach_out) {
                continue;
            }
            rows.push(CustomerSendView {
                at: None,
                attempt: attempt.parse::<u32>().unwrap_or(0),
                channel: None,
                customer: customer.to_string(),
                key: key.clone(),
                reach_out: reach_out.to_string(),
                reason: Some(reason),
                status: SendState::NotSent,
            });
        }
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(OutboxView {
        campaign: campaign.to_string(),
        channels,
        customers: question.customers.then_some(rows),
        reach_outs: counts.into_values().collect(),
    })
}

/// How each channel of a campaign's plan stands: where it sends, and whether it sends, retries
/// or is paused.
pub fn channel_views(
    plan: &battleplan_core::plan::Plan,
    outreach: &battleplan_core::outreach::state::Outreach,
    campaign: &str,
) -> Vec<ChannelGuardView> {
    let zone = plan.campaign.time_zone;
    plan.channels
        .iter()
        .map(|channel| {
            let guard = outreach
                .guard(campaign, &channel.id)
                .cloned()
                .unwrap_or_default();
            let state = match (guard.paused, &guard.failure) {
                (true, Some(_)) => ChannelState::PausedAfterFailure,
                (true, None) => ChannelState::PausedByGuard,
                (false, _) if guard.retrying > 0 => ChannelState::Retrying,
                (false, _) => ChannelState::Sending,
            };
            let retrying = guard.retrying > 0;
            let via = match (&channel.smtp, &channel.webhook) {
                (Some(smtp), _) => format!("SMTP {}:{}", smtp.host, smtp.port),
                (None, Some(webhook)) => format!("webhook {}", webhook.url),
                (None, None) => "file outbox".to_string(),
            };
            ChannelGuardView {
                bounced: guard.bounced,
                failure: guard.failure.clone().filter(|_| guard.paused),
                id: channel.id.clone(),
                last_deferral: guard
                    .last_deferral
                    .as_ref()
                    .filter(|_| retrying)
                    .map(|(_, detail)| detail.clone()),
                paused: guard.paused,
                retrying: guard.retrying,
                retrying_since: guard
                    .retrying_since
                    .filter(|_| retrying)
                    .map(|since| local_rfc3339(zone, since)),
                sent: guard.sent,
                state,
                via,
            }
        })
        .collect()
}

/// `channel resume`: a person lets a channel the bounce guard paused send again.
pub async fn resume_channel(
    ctx: &Ctx<'_>,
    campaign: &str,
    channel: &str,
    actor: &str,
    reason: &str,
    command_id: Option<Uuid>,
) -> Result<ChannelResumeView, AppError> {
    let runtime = ctx.runtime;
    let plan = ctx.plan(campaign).await?;
    if plan.channel(channel).is_none() {
        let known: Vec<&str> = plan.channels.iter().map(|c| c.id.as_str()).collect();
        return Err(AppError::not_found(format_args!(
            "campaign {campaign} has no channel `{channel}`; it has: {}",
            known.join(", ")
        )));
    }
    ctx.caught_up().await?;
    let view = |already_recorded| ChannelResumeView {
        actor: actor.to_string(),
        already_recorded,
        campaign: campaign.to_string(),
        channel: channel.to_string(),
        reason: reason.to_string(),
    };
    let stream = stream_of(campaign).map_err(AppError::invalid)?;
    if !runtime
        .outreach
        .lock()
        .await
        .channel_paused(campaign, channel)
    {
        // Not paused because this very command (its first try, unanswered) resumed it?
        if !runtime
            .recorded_before(&stream, command_id)
            .await?
            .is_empty()
        {
            return Ok(view(true));
        }
        return Err(AppError::Rejected {
            message: format!("channel {channel} of campaign {campaign} is not paused"),
        });
    }
    let now = ctx.now;
    let event = OutreachEvent::ChannelResumed(ChannelResumed {
        campaign: campaign.to_string(),
        channel: channel.to_string(),
    });
    runtime
        .record(
            stream,
            vec![event
                .encode(EventId(runtime.ids.next_id(now)))
                .map_err(AppError::internal)?],
            actor,
            Some(reason.to_string()),
            command_id.unwrap_or_else(|| runtime.ids.next_id(now)),
            now,
        )
        .await?;
    Ok(view(false))
}

/// A customer's one-click unsubscribe link followed (`GET`: checked, `record: false`) or
/// confirmed (`POST`: recorded). The link's MAC stands for the token: it names the campaign,
/// the customer and the channel kind it was made for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnsubscribeRequest {
    pub campaign: String,
    pub customer: String,
    pub kind: battleplan_core::plan::model::ChannelKind,
    pub mac: String,
    pub record: bool,
}

/// What a followed unsubscribe link did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnsubscribeView {
    pub campaign: String,
    /// The campaign's name, for the page the customer sees.
    pub campaign_name: String,
    /// The channel kind (`mail`, `in_site`, ...).
    pub channel: String,
    pub customer: String,
    /// Whether the customer is unsubscribed from the channel kind now (after a `POST`, always).
    pub unsubscribed: bool,
    /// Whether this request recorded it (a repeat records nothing).
    pub recorded: bool,
}

/// The actor of an unsubscribe recorded from a link: the customer themself.
pub fn link_actor(customer: &str) -> String {
    format!("customer {customer} (one-click link)")
}

/// Checks an unsubscribe link and, when asked, records the unsubscribe: an `OutcomeRecorded`
/// `unsubscribed` for the customer and channel kind, in the campaign's outreach stream, under a
/// command id derived from the link (a repeat is the same command, recorded once). From then
/// on no campaign sends to the customer on that kind (the customer book's consent).
pub async fn unsubscribe(
    ctx: &Ctx<'_>,
    request: &UnsubscribeRequest,
) -> Result<UnsubscribeView, AppError> {
    use battleplan_core::customer::events::{CustomerEvent, OutcomeKind, OutcomeRecorded};
    let runtime = ctx.runtime;
    let forged = || AppError::Forbidden {
        message: "this unsubscribe link is not valid: it was changed, or it is not one of ours"
            .to_string(),
    };
    let Some(key) = runtime.link_key else {
        return Err(forged());
    };
    if !battleplan_core::outreach::links::unsubscribe_mac_holds(
        &key,
        &request.campaign,
        &request.customer,
        request.kind,
        &request.mac,
    ) {
        return Err(forged());
    }
    let state = ctx.campaign(&request.campaign).await?;
    let campaign_name = state.name.clone();
    ctx.caught_up().await?;
    let already = {
        let book = runtime.customers.lock().await;
        let Some(customer) = book.get(&request.customer) else {
            return Err(AppError::not_found(format_args!(
                "no customer {} (erased, or never imported)",
                printable(&request.customer)
            )));
        };
        customer.unsubscribed_from(request.kind)
    };
    let view = |unsubscribed, recorded| UnsubscribeView {
        campaign: request.campaign.clone(),
        campaign_name: campaign_name.clone(),
        channel: request.kind.as_str().to_string(),
        customer: request.customer.clone(),
        unsubscribed,
        recorded,
    };
    if !request.record || already {
        return Ok(view(already, false));
    }
    let now = ctx.now;
    let event = CustomerEvent::OutcomeRecorded(OutcomeRecorded {
        customer: request.customer.clone(),
        line: 0,
        outcome: OutcomeKind::Unsubscribed,
        at: now,
        campaign: Some(request.campaign.clone()),
        reach_out: None,
        channel: Some(request.kind),
        amount: None,
        message: None,
        offer: None,
    });
    let stream = stream_of(&request.campaign).map_err(AppError::invalid)?;
    let command_id = crate::kernel::runtime::derived_command_id(&format!(
        "unsubscribe|{}|{}|{}",
        request.campaign,
        request.customer,
        request.kind.as_str()
    ));
    let outcome = runtime
        .record(
            stream,
            vec![event
                .encode(EventId(runtime.ids.next_id(now)))
                .map_err(AppError::internal)?],
            &link_actor(&request.customer),
            Some("followed the unsubscribe link of a message".to_string()),
            command_id,
            now,
        )
        .await?;
    Ok(view(true, !outcome.deduplicated))
}

/// `channel test CAMPAIGN CHANNEL --to ADDRESS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelTestRequest {
    pub campaign: String,
    pub channel: String,
    /// A mail address, or the receiver's customer id for a webhook.
    pub to: String,
}

/// What the channel's server said of the test message.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelTestView {
    pub campaign: String,
    pub channel: String,
    pub kind: String,
    /// Where it went: `SMTP host:port`, `webhook URL`.
    pub route: String,
    pub to: String,
    /// The test message's key (its `webhook-id`, its mail's `X-Battleplan-Key`).
    pub key: String,
    /// `sent`, `deferred`, `refused` or `unknown`.
    pub answer: String,
    /// What the server said, when it did not take the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Sends one test message through the real channel of a plan channel and says what its
/// server answered. Nothing is recorded: a test message is not a send of the campaign.
pub async fn channel_test(
    ctx: &Ctx<'_>,
    request: &ChannelTestRequest,
) -> Result<ChannelTestView, AppError> {
    use battleplan_core::outreach::port::{Delivery, Message};
    let state = ctx.campaign(&request.campaign).await?;
    let plan = crate::kernel::plans::plan_in_force(ctx.runtime, &request.campaign)
        .await
        .map_err(AppError::internal)?
        .ok_or_else(|| {
            AppError::not_found(format_args!("campaign {} has no plan", request.campaign))
        })?;
    let Some(channel) = plan.channel(&request.channel) else {
        return Err(AppError::not_found(format_args!(
            "no channel {} in the plan of {}; its channels are {}",
            printable(&request.channel),
            request.campaign,
            plan.channels
                .iter()
                .map(|channel| channel.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if request.to.is_empty() || request.to.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "--to: an address without control characters",
        ));
    }
    let Some(channels) = ctx
        .runtime
        .channels
        .get()
        .and_then(std::sync::Weak::upgrade)
    else {
        return Err(AppError::invalid(
            "this process has no channels to test with",
        ));
    };
    let now = ctx.now;
    let key = format!(
        "channel-test/{}/{}/{}",
        request.campaign,
        request.channel,
        now.timestamp_millis()
    );
    let message = Message {
        key: key.clone(),
        campaign: request.campaign.clone(),
        channel: channel.id.clone(),
        kind: channel.kind,
        to: "channel-test".to_string(),
        address: vec![request.to.clone()],
        from: channel.accounts.first().cloned(),
        subject: Some(format!(
            "battleplan: a test of {} for {}",
            channel.name, state.name
        )),
        // Text escaped for HTML, as the renderer gives a template written as text.
        body: format!(
            "This is a test message of the channel {} of {}, sent with `battleplan channel test` at {}. Nothing to do.",
            escaped(&channel.name),
            escaped(&state.name),
            now.to_rfc3339()
        ),
        template: None,
        template_version: None,
        reach_out: Some("channel-test".to_string()),
        attempt: None,
        at: now,
        document: None,
    };
    let (route, delivery) = channels.test(message).await.map_err(AppError::invalid)?;
    let (answer, detail) = match delivery {
        Delivery::Sent | Delivery::AlreadySent => ("sent", None),
        Delivery::Deferred { detail, .. } => ("deferred", Some(detail)),
        Delivery::Refused { refusal, detail } => {
            ("refused", Some(format!("{}: {detail}", refusal.key())))
        }
        Delivery::Unknown { detail } => ("unknown", Some(detail)),
    };
    Ok(ChannelTestView {
        campaign: request.campaign.clone(),
        channel: channel.id.clone(),
        kind: channel.kind.as_str().to_string(),
        route,
        to: request.to.clone(),
        key,
        answer: answer.to_string(),
        detail,
    })
}

/// Text escaped for HTML.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A followed tracked link (`GET /api/v1/click/{mac}/{message}/{target}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClickRequest {
    pub mac: String,
    /// The message's idempotency key.
    pub message: String,
    /// The address the link leads to.
    pub target: String,
}

/// Where a followed link leads, and whether the click was recorded now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClickView {
    pub target: String,
    /// Whether this click recorded `clicked` (the first click of this link of this message).
    pub recorded: bool,
}

/// Checks a tracked link and records `clicked` for its message's customer, once per link and
/// message (a command id derived from both); answers where it leads. A link changed in any
/// part is refused: it never leads anywhere it was not made for.
pub async fn click(ctx: &Ctx<'_>, request: &ClickRequest) -> Result<ClickView, AppError> {
    use battleplan_core::customer::events::{CustomerEvent, OutcomeKind, OutcomeRecorded};
    let runtime = ctx.runtime;
    let forged = || AppError::Forbidden {
        message: "this link is not valid: it was changed, or it is not one of ours".to_string(),
    };
    let Some(key) = runtime.link_key else {
        return Err(forged());
    };
    let web = request.target.starts_with("https://") || request.target.starts_with("http://");
    if !web
        || request.target.chars().any(char::is_control)
        || !battleplan_core::outreach::links::click_mac_holds(
            &key,
            &request.message,
            &request.target,
            &request.mac,
        )
    {
        return Err(forged());
    }
    ctx.caught_up().await?;
    // The message's send, or else what its key says (campaign/reach-out/customer/attempt).
    let found = {
        let outreach = runtime.outreach.lock().await;
        outreach.send(&request.message).map(|send| {
            (
                send.planned.campaign.clone(),
                send.planned.reach_out.clone(),
                send.planned.customer.clone(),
                Some(send.planned.kind),
            )
        })
    }
    .or_else(|| {
        let mut parts = request.message.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(campaign), Some(reach_out), Some(customer), Some(_)) => Some((
                campaign.to_string(),
                reach_out.to_string(),
                customer.to_string(),
                None,
            )),
            _ => None,
        }
    });
    let view = |recorded| ClickView {
        target: request.target.clone(),
        recorded,
    };
    let Some((campaign, reach_out, customer, kind)) = found else {
        return Ok(view(false));
    };
    let known = runtime.customers.lock().await.get(&customer).is_some();
    let Ok(stream) = stream_of(&campaign) else {
        return Ok(view(false));
    };
    if !known || ctx.campaign(&campaign).await.is_err() {
        // A test message, or a customer since erased: the link still leads where it says.
        return Ok(view(false));
    }
    let now = ctx.now;
    let event = CustomerEvent::OutcomeRecorded(OutcomeRecorded {
        customer: customer.clone(),
        line: 0,
        outcome: OutcomeKind::Clicked,
        at: now,
        campaign: Some(campaign),
        reach_out: Some(reach_out),
        channel: kind,
        amount: None,
        message: Some(request.message.clone()),
        offer: None,
    });
    let command_id = crate::kernel::runtime::derived_command_id(&format!(
        "click|{}|{}",
        request.message, request.target
    ));
    let outcome = runtime
        .record(
            stream,
            vec![event
                .encode(EventId(runtime.ids.next_id(now)))
                .map_err(AppError::internal)?],
            &format!("customer {} (tracked link)", printable(&customer)),
            Some("followed a link of a message".to_string()),
            command_id,
            now,
        )
        .await?;
    Ok(view(!outcome.deduplicated))
}
