//! Text for the views of `app::outreach`.

use std::fmt::Write as _;

use battleplan_core::text::printable;

use crate::app::outreach::{
    ChannelGuardView, ChannelResumeView, ChannelState, OutboxView, UnsubscribeView,
};
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
    channel_lines(&mut out, campaign, &view.channels, false);
    Reply::ok(out)
}

/// How each channel stands, a line each: those that need a look (retrying, paused), or every
/// one (`all`, for `status`).
pub fn channel_lines(out: &mut String, campaign: &str, channels: &[ChannelGuardView], all: bool) {
    for channel in channels {
        match channel.state {
            ChannelState::Sending => {
                if all {
                    let _ = writeln!(
                        out,
                        "  channel {} sending via {} ({} sent, {} bounced)",
                        channel.id,
                        printable(&channel.via),
                        channel.sent,
                        channel.bounced
                    );
                }
            }
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

pub fn unsubscribed(view: &UnsubscribeView) -> Reply {
    let state = match (view.unsubscribed, view.recorded) {
        (true, true) => "unsubscribed now",
        (true, false) => "already unsubscribed",
        (false, _) => "not unsubscribed",
    };
    Reply::ok(format!(
        "customer {} of campaign {}: {state} from {}\n",
        printable(&view.customer),
        view.campaign,
        view.channel
    ))
}

/// What a channel's server said of a test message.
pub fn channel_tested(view: &crate::app::outreach::ChannelTestView) -> Reply {
    let said = match view.answer.as_str() {
        "sent" => "sent: the server took it".to_string(),
        "deferred" => "deferred: the server did not take it this time".to_string(),
        "refused" => "refused: the server will not take it".to_string(),
        _ => "unknown: no answer came after it was handed over".to_string(),
    };
    let mut text = format!(
        "channel {} ({}) of {} via {}: {said}\n  to {}\n  key {}\n",
        view.channel,
        view.kind,
        view.campaign,
        printable(&view.route),
        printable(&view.to),
        printable(&view.key)
    );
    if let Some(detail) = &view.detail {
        text.push_str(&format!("  the server said: {}\n", printable(detail)));
    }
    Reply::ok(text)
}

/// What became of a batch of outcomes or bounces.
pub fn answers(view: &crate::app::answers::AnswersView) -> Reply {
    let mut text = format!(
        "{} recorded, {} repeated (recorded before), {} ignored\n",
        view.recorded, view.repeated, view.ignored
    );
    for answer in &view.answers {
        text.push_str(&format!(
            "  {}: {} {}{}\n",
            printable(&answer.id),
            answer.status,
            printable(&answer.customer),
            answer
                .outcome
                .as_deref()
                .map(|outcome| format!(" {outcome}"))
                .unwrap_or_default()
        ));
    }
    Reply::ok(text)
}

/// The page a customer sees when they follow their unsubscribe link (`confirm`: the form that
/// confirms it, for a `GET`; otherwise what was done, for a `POST`), in Chinese and English.
/// Everything from the request is escaped.
pub fn unsubscribe_page(view: &UnsubscribeView, confirm: bool) -> String {
    let campaign = html_escape(&view.campaign_name);
    // The channel in each language, never the two mixed in one sentence.
    let (zh, en) = match view.channel.as_str() {
        "mail" => ("邮件", "mail"),
        "in_site" => ("站内信", "in-site messages"),
        "im" => ("即时消息", "instant messages"),
        _ => ("消息", "messages"),
    };
    let body = if confirm && !view.unsubscribed {
        format!(
            "<h1>退订 / Unsubscribe</h1>\
             <p>不再接收本店「{campaign}」等活动的{zh}？</p>\
             <p lang=\"en\">Stop receiving {en} from us?</p>\
             <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">退订 / Unsubscribe</button></form>"
        )
    } else {
        format!(
            "<h1>已退订 / Unsubscribed</h1>\
             <p>您将不再收到本店的{zh}。</p>\
             <p lang=\"en\">You will receive no more {en} from us.</p>"
        )
    };
    format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>退订 / Unsubscribe</title>\
         <style>body{{font-family:system-ui,\"PingFang SC\",\"Noto Sans CJK SC\",sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.6}}\
         button{{font-size:1rem;padding:.5rem 1.5rem}}</style></head>\
         <body>{body}</body></html>\n"
    )
}

/// Text for an HTML page: the five characters that could start markup or end an attribute.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
