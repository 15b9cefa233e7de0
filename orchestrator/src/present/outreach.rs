//! Text for the views of `app::outreach`.

use std::fmt::Write as _;

use battleplan_core::text::printable;

use crate::app::outreach::{ChannelResumeView, ChannelState, OutboxView};
use crate::present::Reply;

/// Per reach-out, planned or not, sent, pending and not sent (then each reason); then each
/// channel that is not simply sending: retrying deferred sends, or paused by the bounce guard or
/// after a failure, and how to resume it.
pub fn outbox(view: &OutboxView) -> Reply {
    let campaign = &view.campaign;
    let mut out = String::new();
    let _ = writeln!(out, "Outbox of campaign {campaign}");
    for counts in &view.reach_outs {
        let state = if counts.planned {
            "planned"
        } else {
            "not planned yet"
        };
        let _ = writeln!(
            out,
            "  {:<28} {state:<16} sent {:>7}  pending {:>7}  not sent {:>7}",
            counts.id,
            counts.sent,
            counts.pending,
            counts.not_sent.values().sum::<u64>()
        );
        for (reason, count) in &counts.not_sent {
            let _ = writeln!(out, "      {reason:<24} {count:>7}");
        }
    }
    for channel in &view.channels {
        match channel.state {
            ChannelState::Sending => {}
            ChannelState::Retrying => {
                let _ = writeln!(
                    out,
                    "  channel {} is RETRYING {} send(s) the receiving side deferred, since {}; it last said: {}",
                    channel.id,
                    channel.retrying,
                    channel.retrying_since.as_deref().unwrap_or("?"),
                    channel.last_deferral.as_deref().map(printable).unwrap_or_default()
                );
            }
            ChannelState::PausedByGuard => {
                let _ = writeln!(
                    out,
                    "  channel {} is PAUSED by the bounce guard ({} bounced of {} sent); resume with `battleplan channel resume {campaign} {} --actor A --reason R`",
                    channel.id, channel.bounced, channel.sent, channel.id
                );
            }
            ChannelState::PausedAfterFailure => {
                let _ = writeln!(
                    out,
                    "  channel {} is PAUSED after a failure ({}); fix it, then resume with `battleplan channel resume {campaign} {} --actor A --reason R`",
                    channel.id,
                    channel.failure.as_deref().map(printable).unwrap_or_default(),
                    channel.id
                );
            }
        }
    }
    Reply::ok(out)
}

pub fn channel_resumed(view: &ChannelResumeView) -> Reply {
    let repeated = if view.already_recorded {
        " (already recorded by this command id)"
    } else {
        ""
    };
    Reply::ok(format!(
        "channel {} of campaign {} resumed by {}: '{}'{repeated}\n",
        view.channel, view.campaign, view.actor, view.reason
    ))
}
