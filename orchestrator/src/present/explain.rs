//! Text for the views of `app::explain`.

use std::fmt::Write as _;

use battleplan_core::campaign::timeline::local;
use battleplan_core::text::printable;
use chrono_tz::Tz;

use crate::app::explain::ExplainView;
use crate::app::local_time::LocalTime;
use crate::present::Reply;

/// The customer's story for people.
pub fn explain(view: &ExplainView) -> Reply {
    Reply::ok(render(view))
}

/// The explanation in words.
pub fn text(explanation: &ExplainView) -> String {
    render(explanation)
}

fn render(explanation: &ExplainView) -> String {
    let zone: Tz = explanation.time_zone.parse().unwrap_or(Tz::UTC);
    let when = |at: LocalTime| local(zone, at.instant());
    // Everything below that came from an import or a person (names, addresses, tags, notes,
    // file names, actors) is escaped: a name with ESC or CR/LF must not drive the terminal.
    let p = |text: &str| printable(text).into_owned();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} in {}, as of {}",
        p(&explanation.customer),
        explanation.campaign,
        when(explanation.as_of)
    );
    let _ = writeln!(
        out,
        "  campaign: {} (plan version {})",
        explanation.campaign_status, explanation.plan_version
    );
    let profile = &explanation.profile;
    let mut who = Vec::new();
    if let Some(name) = &profile.name {
        who.push(p(name));
    }
    if let Some(company) = &profile.company {
        who.push(p(company));
    }
    let _ = writeln!(
        out,
        "  profile:  {}",
        if who.is_empty() {
            "(no name)".to_string()
        } else {
            who.join(", ")
        }
    );
    let email = match (&profile.email, profile.email_ok) {
        (Some(email), true) => p(email),
        (Some(email), false) => format!("{} (not usable)", p(email)),
        (None, _) => "none".to_string(),
    };
    let _ = writeln!(out, "            mail: {email}");
    let _ = writeln!(
        out,
        "            tier: {}, owner: {}, tags: {}, orders: {}",
        p(profile.tier.as_deref().unwrap_or("none")),
        p(profile.owner.as_deref().unwrap_or("none")),
        if profile.tags.is_empty() {
            "none".to_string()
        } else {
            p(&profile.tags.join(", "))
        },
        profile.orders
    );
    if !profile.unsubscribed_from.is_empty() {
        let _ = writeln!(
            out,
            "            unsubscribed from: {}",
            p(&profile.unsubscribed_from.join(", "))
        );
    }
    if profile.recycle_bin {
        let _ = writeln!(out, "            in the recycle bin");
    }
    for (kind, at) in &profile.last_reached {
        let _ = writeln!(out, "            last reached by {kind}: {}", when(*at));
    }
    let _ = writeln!(
        out,
        "  segments: {}",
        if explanation.segments.is_empty() {
            "none".to_string()
        } else {
            p(&explanation.segments.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "  funnel:   {} in this campaign; lifecycle: {}",
        explanation.funnel_stage, explanation.lifecycle
    );
    if explanation.entries.is_empty() {
        let _ = writeln!(
            out,
            "\nno decision about this customer in this campaign by then"
        );
        return out;
    }
    let _ = writeln!(out, "\ndecisions, sends and outcomes:");
    for entry in &explanation.entries {
        let what = match (&entry.reach_out, entry.attempt) {
            (Some(reach_out), Some(attempt)) => format!("{} #{attempt}", p(reach_out)),
            (Some(reach_out), None) => p(reach_out),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}  #{:<6} v{:<3} {:<18} {what}: {}",
            when(entry.recorded_at),
            entry.position,
            entry.plan_version,
            p(&entry.actor),
            p(&entry.summary)
        );
        if let Some(why) = &entry.why {
            let _ = writeln!(out, "{:33}why: {}", "", p(why));
        }
    }
    out
}
