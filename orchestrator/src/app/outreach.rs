//! The outbox for people: `outbox CAMPAIGN` (each reach-out planned, sent, pending and not sent
//! by reason; with `--customers`, every customer's key and what became of it) and
//! `channel resume CAMPAIGN CHANNEL` after the bounce guard paused it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use battleplan_core::campaign::timeline::local_rfc3339;
use battleplan_core::event::EventId;
use battleplan_core::outreach::events::{stream_of, ChannelResumed};
use battleplan_core::outreach::state::SendStatus;
use battleplan_core::outreach::OutreachEvent;
use serde_json::json;
use uuid::Uuid;

use crate::kernel::runtime::{HandleError, Runtime};
use crate::present::Reply;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OutboxQuestion {
    pub campaign: String,
    pub reach_out: Option<String>,
    pub json: bool,
    pub customers: bool,
}

#[derive(Default)]
struct Counts {
    planned: bool,
    sent: u64,
    pending: u64,
    not_sent: BTreeMap<&'static str, u64>,
}

/// Splits `campaign/reach-out/customer/attempt`.
fn parts(key: &str) -> Option<(&str, &str, &str)> {
    let mut pieces = key.rsplitn(4, '/');
    let attempt = pieces.next()?;
    let customer = pieces.next()?;
    let reach_out = pieces.next()?;
    Some((reach_out, customer, attempt))
}

pub async fn report(runtime: &Runtime, question: &OutboxQuestion) -> Result<Reply, HandleError> {
    let Some(plan) = crate::kernel::plans::plan_in_force(runtime, &question.campaign).await? else {
        return Ok(Reply::user_error(format_args!(
            "there is no campaign `{}` (apply its plan first: `battleplan plan apply PLAN`)",
            question.campaign
        )));
    };
    if let Some(reach_out) = &question.reach_out {
        if !plan.reach_outs.iter().any(|r| &r.id == reach_out) {
            let known: Vec<&str> = plan.reach_outs.iter().map(|r| r.id.as_str()).collect();
            return Ok(Reply::user_error(format_args!(
                "campaign {} has no reach-out `{reach_out}`; it has: {}",
                question.campaign,
                known.join(", ")
            )));
        }
    }
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let outreach = runtime.outreach.lock().await;
    let campaign = question.campaign.as_str();
    let zone = plan.campaign.time_zone;
    let wanted = |reach_out: &str| question.reach_out.as_deref().is_none_or(|r| r == reach_out);
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for reach_out in &plan.reach_outs {
        if wanted(&reach_out.id) {
            counts.entry(reach_out.id.clone()).or_default().planned = outreach
                .reach_out_planned(campaign, &reach_out.id)
                .is_some();
        }
    }
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for send in outreach.sends_of(campaign) {
        let planned = &send.planned;
        if !wanted(&planned.reach_out) {
            continue;
        }
        let entry = counts.entry(planned.reach_out.clone()).or_default();
        let (status, reason, at) = match send.status {
            SendStatus::Pending => {
                entry.pending += 1;
                ("pending", None, Some(planned.at))
            }
            SendStatus::Sent { at } => {
                entry.sent += 1;
                ("sent", None, Some(at))
            }
            SendStatus::NotSent(reason) => {
                *entry.not_sent.entry(reason.key()).or_default() += 1;
                ("not_sent", Some(reason.key()), None)
            }
        };
        if question.customers {
            rows.push(json!({
                "key": planned.key,
                "reach_out": planned.reach_out,
                "customer": planned.customer,
                "attempt": planned.attempt,
                "channel": planned.channel,
                "status": status,
                "reason": reason,
                "at": at.map(|at| local_rfc3339(zone, at)),
            }));
        }
    }
    for (key, reason) in outreach.not_planned_of(campaign) {
        let Some((reach_out, customer, attempt)) = parts(key) else {
            continue;
        };
        if !wanted(reach_out) {
            continue;
        }
        *counts
            .entry(reach_out.to_string())
            .or_default()
            .not_sent
            .entry(reason.key())
            .or_default() += 1;
        if question.customers {
            rows.push(json!({
                "key": key,
                "reach_out": reach_out,
                "customer": customer,
                "attempt": attempt.parse::<u32>().unwrap_or(0),
                "status": "not_sent",
                "reason": reason.key(),
                "at": null,
            }));
        }
    }
    rows.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    if question.json {
        let reach_outs: Vec<serde_json::Value> = counts
            .iter()
            .map(|(id, c)| {
                json!({
                    "id": id,
                    "planned": c.planned,
                    "sent": c.sent,
                    "pending": c.pending,
                    "not_sent": c.not_sent,
                })
            })
            .collect();
        let channels: Vec<serde_json::Value> = plan
            .channels
            .iter()
            .map(|channel| {
                let guard = outreach
                    .guard(campaign, &channel.id)
                    .cloned()
                    .unwrap_or_default();
                json!({
                    "id": channel.id,
                    "paused": guard.paused,
                    "sent": guard.sent,
                    "bounced": guard.bounced,
                })
            })
            .collect();
        let mut value = json!({
            "campaign": campaign,
            "reach_outs": reach_outs,
            "channels": channels,
        });
        if question.customers {
            value["customers"] = json!(rows);
        }
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        return Ok(Reply::ok(text));
    }
    let mut out = String::new();
    let _ = writeln!(out, "Outbox of campaign {campaign}");
    for (id, c) in &counts {
        let state = if c.planned {
            "planned"
        } else {
            "not planned yet"
        };
        let _ = writeln!(
            out,
            "  {id:<28} {state:<16} sent {:>7}  pending {:>7}  not sent {:>7}",
            c.sent,
            c.pending,
            c.not_sent.values().sum::<u64>()
        );
        for (reason, count) in &c.not_sent {
            let _ = writeln!(out, "      {reason:<24} {count:>7}");
        }
    }
    for channel in &plan.channels {
        if let Some(guard) = outreach.guard(campaign, &channel.id) {
            if guard.paused {
                let _ = writeln!(
                    out,
                    "  channel {} is PAUSED by the bounce guard ({} bounced of {} sent); resume with `battleplan channel resume {campaign} {} --actor A --reason R`",
                    channel.id, guard.bounced, guard.sent, channel.id
                );
            }
        }
    }
    Ok(Reply::ok(out))
}

/// `channel resume`: a person lets a channel the bounce guard paused send again.
pub async fn resume_channel(
    runtime: &Runtime,
    campaign: &str,
    channel: &str,
    actor: &str,
    reason: &str,
    command_id: Option<Uuid>,
) -> Result<Reply, HandleError> {
    let Some(plan) = crate::kernel::plans::plan_in_force(runtime, campaign).await? else {
        return Ok(Reply::user_error(format_args!(
            "there is no campaign `{campaign}`"
        )));
    };
    if plan.channel(channel).is_none() {
        let known: Vec<&str> = plan.channels.iter().map(|c| c.id.as_str()).collect();
        return Ok(Reply::user_error(format_args!(
            "campaign {campaign} has no channel `{channel}`; it has: {}",
            known.join(", ")
        )));
    }
    crate::kernel::dispatcher::catch_up(runtime).await?;
    let stream = stream_of(campaign).map_err(battleplan_core::campaign::Rejection)?;
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
            return Ok(Reply::ok(format!(
                "channel {channel} of campaign {campaign} resumed by {actor}: '{reason}' (already recorded by this command id)\n"
            )));
        }
        return Ok(Reply::user_error(format_args!(
            "channel {channel} of campaign {campaign} is not paused"
        )));
    }
    let now = runtime.clock.now();
    let event = OutreachEvent::ChannelResumed(ChannelResumed {
        campaign: campaign.to_string(),
        channel: channel.to_string(),
    });
    runtime
        .record(
            stream,
            vec![event.encode(EventId(runtime.ids.next_id(now)))?],
            actor,
            Some(reason.to_string()),
            command_id.unwrap_or_else(|| runtime.ids.next_id(now)),
            now,
        )
        .await?;
    crate::kernel::dispatcher::catch_up(runtime).await?;
    Ok(Reply::ok(format!(
        "channel {channel} of campaign {campaign} resumed by {actor}: '{reason}'\n"
    )))
}

/// Still printed words; typed views come next.
pub type OutboxView = crate::present::Reply;

/// Still printed words; typed views come next.
pub type ChannelResumeView = crate::present::Reply;
