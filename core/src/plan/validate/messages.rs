//! Messages: templates (syntax and variables), follow-up rules, reach-outs, and the check that
//! every message a reach-out or follow-up will send finds exactly one template.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::{format_instant, CoverKey, Validator};
use crate::plan::diagnostic::{suggest, Code, Diagnostic};
use crate::plan::model::*;
use crate::plan::raw::*;
use crate::plan::template::{self, Query, Selection, KNOWN_VARIABLES};

/// More follow-ups than this to one customer is spam by any platform's rules.
const MAX_FOLLOW_UPS: u32 = 10;

impl Validator<'_> {
    pub(super) fn templates(&mut self, channels: &[Channel]) -> Vec<Template> {
        let raw = self.raw;
        let channel_ids: Vec<&str> = raw.channels.iter().map(|e| e.id.as_str()).collect();
        let stage_ids: Vec<&str> = raw.stages.iter().map(|e| e.id.as_str()).collect();
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let coupon_ids: Vec<&str> = raw.coupons.iter().map(|e| e.id.as_str()).collect();
        let mut templates = Vec::new();
        for entry in &raw.templates {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            ok &= self.known(
                &format!("{path}.channel"),
                "channel",
                &value.channel,
                &channel_ids,
            );
            let phase = match &value.phase {
                Some(key) => match PhaseKind::from_key(key) {
                    Some(kind) => Some(kind),
                    None => {
                        ok = false;
                        self.unknown_reference(
                            &format!("{path}.phase"),
                            "phase",
                            key,
                            PhaseKind::ALL.map(PhaseKind::key),
                        );
                        None
                    }
                },
                None => None,
            };
            if let Some(stage) = &value.stage {
                ok &= self.burst_stage(path, stage, phase, &stage_ids, |_| {
                    format!(
                        "but the template is for {}",
                        value.phase.as_deref().unwrap_or("")
                    )
                });
            }
            for (position, segment) in value.segments.iter().enumerate() {
                ok &= self.known(
                    &format!("{path}.segments[{position}]"),
                    "segment",
                    segment,
                    &segment_ids,
                );
            }
            if let Some(coupon) = &value.coupon {
                ok &= self.known(&format!("{path}.coupon"), "coupon", coupon, &coupon_ids);
            }
            if value.version == 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::TemplateVersion,
                    format!("{path}.version"),
                    "template versions start at 1",
                ));
            }
            if value.body.trim().is_empty() {
                ok = false;
                self.push(Diagnostic::new(
                    Code::EmptyTemplate,
                    format!("{path}.body"),
                    "the body is empty",
                ));
            }
            let kind = channels
                .iter()
                .find(|c| c.id == value.channel)
                .map(|c| c.kind);
            if kind == Some(ChannelKind::Mail)
                && value.subject.as_deref().is_none_or(|s| s.trim().is_empty())
            {
                ok = false;
                self.push_at_key(
                    Diagnostic::new(
                        Code::MissingSubject,
                        path,
                        "a mail template needs a subject",
                    )
                    .with_help("add subject = \"...\""),
                );
            }
            let mut used = BTreeSet::new();
            for (key, source) in [
                ("subject", value.subject.as_deref()),
                ("body", Some(value.body.as_str())),
            ] {
                let Some(source) = source else { continue };
                match template::variables(source) {
                    Ok(variables) => used.extend(variables.into_iter().map(|v| (key, v))),
                    Err(error) => {
                        ok = false;
                        let line = error
                            .line
                            .map(|line| format!(" (line {line} of the {key})"))
                            .unwrap_or_default();
                        self.push(Diagnostic::new(
                            Code::TemplateSyntax,
                            format!("{path}.{key}"),
                            format!("the {key} does not parse: {}{line}", error.message),
                        ));
                    }
                }
            }
            let mut uses_unsubscribe = false;
            for (key, variable) in &used {
                if variable == "unsubscribe_url" {
                    uses_unsubscribe = true;
                }
                if !KNOWN_VARIABLES.contains(&variable.as_str()) {
                    ok = false;
                    let mut diagnostic = Diagnostic::new(
                        Code::UnknownVariable,
                        format!("{path}.{key}"),
                        format!("`{variable}` is not a template variable"),
                    );
                    diagnostic = match suggest(variable, KNOWN_VARIABLES.iter().copied()) {
                        Some(candidate) => {
                            diagnostic.with_help(format!("did you mean `{candidate}`?"))
                        }
                        None => diagnostic.with_help(
                            "the variables are listed in docs/plan-format.md, under [templates]",
                        ),
                    };
                    self.push(diagnostic);
                } else if variable.starts_with("coupon.") && value.coupon.is_none() {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::CouponVariable,
                            format!("{path}.{key}"),
                            format!("`{variable}` is used but the template names no coupon"),
                        )
                        .with_help("add coupon = \"ID\" naming one of [offers.coupons]"),
                    );
                }
            }
            if ok {
                for (key, source) in [
                    ("subject", value.subject.as_deref()),
                    ("body", Some(value.body.as_str())),
                ] {
                    let Some(source) = source else { continue };
                    let html = kind == Some(ChannelKind::Mail);
                    if let Err(error) = template::dry_render(source, value.coupon.is_some(), html) {
                        ok = false;
                        let line = error
                            .line
                            .map(|line| format!(" (line {line} of the {key})"))
                            .unwrap_or_default();
                        self.push(Diagnostic::new(
                            Code::TemplateSyntax,
                            format!("{path}.{key}"),
                            format!("the {key} cannot be rendered: {}{line}", error.message),
                        ).with_help("templates may use the documented variables, filters, tests and functions (docs/plan-format.md), and no include or extends"));
                    }
                }
            }
            if ok {
                // A customer may lack a name, a company, ...: a template that prints one bare
                // renders for no such customer.
                for (key, variable) in &used {
                    if !template::OPTIONAL_CUSTOMER_VARIABLES.contains(&variable.as_str()) {
                        continue;
                    }
                    let source = match *key {
                        "subject" => value.subject.as_deref(),
                        _ => Some(value.body.as_str()),
                    };
                    let Some(source) = source else { continue };
                    let html = kind == Some(ChannelKind::Mail);
                    if let Err(error) = template::dry_render_without(
                        source,
                        value.coupon.is_some(),
                        html,
                        Some(variable),
                    ) {
                        let line = error
                            .line
                            .map(|line| format!(" (line {line} of the {key})"))
                            .unwrap_or_default();
                        self.push(
                            Diagnostic::new(
                                Code::OptionalVariable,
                                format!("{path}.{key}"),
                                format!(
                                    "the {key} cannot be rendered for a customer without `{variable}`{line}: such a customer gets no message (template_failed)"
                                ),
                            )
                            .with_help(format!(
                                "give a fallback, {{{{ {variable} | default(\"...\") }}}}, or test it: {{% if {variable} is defined %}}"
                            )),
                        );
                    }
                }
            }
            if kind == Some(ChannelKind::Mail) && !uses_unsubscribe && ok {
                self.push(
                    Diagnostic::new(
                        Code::NoUnsubscribeLink,
                        format!("{path}.body"),
                        "a marketing mail without {{ unsubscribe_url }}: buyers who cannot unsubscribe report spam",
                    )
                    .with_help("add a line such as: Unsubscribe: {{ unsubscribe_url }}"),
                );
            }
            if ok {
                templates.push(Template {
                    id: entry.id.clone(),
                    channel: value.channel.clone(),
                    purpose: value.purpose,
                    phase: phase.or(value.stage.as_ref().map(|_| PhaseKind::Burst)),
                    stage: value.stage.clone(),
                    segments: value.segments.clone(),
                    tiers: value.tiers.clone(),
                    coupon: value.coupon.clone(),
                    version: value.version,
                    subject: value.subject.clone(),
                    body: value.body.clone(),
                    description: value.description.clone(),
                });
            }
        }
        templates
    }

    pub(super) fn follow_ups(&mut self, templates: &[Template]) -> Vec<FollowUpRule> {
        let raw = self.raw;
        let channel_ids: Vec<&str> = raw.channels.iter().map(|e| e.id.as_str()).collect();
        let template_ids: Vec<&str> = raw.templates.iter().map(|e| e.id.as_str()).collect();
        let mut rules = Vec::new();
        for entry in &raw.follow_ups {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            if value.after.seconds() == 0 {
                ok = false;
                self.push(Diagnostic::new(
                    Code::FollowUpLimits,
                    format!("{path}.after"),
                    "a follow-up needs a delay above zero: how long to wait for an answer",
                ));
            }
            if value.max_attempts == 0 || value.max_attempts > MAX_FOLLOW_UPS {
                ok = false;
                let message = if value.max_attempts == 0 {
                    "a follow-up rule with 0 attempts never follows up".to_string()
                } else {
                    format!(
                        "{} follow-ups to one customer is spamming; a rule allows at most {MAX_FOLLOW_UPS}",
                        value.max_attempts
                    )
                };
                self.push(
                    Diagnostic::new(
                        Code::FollowUpLimits,
                        format!("{path}.max_attempts"),
                        message,
                    )
                    .with_help(format!("allow 1 to {MAX_FOLLOW_UPS} attempts")),
                );
            }
            if let Some(channel) = &value.channel {
                ok &= self.known(&format!("{path}.channel"), "channel", channel, &channel_ids);
            }
            let template = match value.template.as_deref() {
                None | Some("auto") => TemplateChoice::Auto,
                Some(id) => {
                    if !template_ids.contains(&id) {
                        ok = false;
                        self.unknown_reference(
                            &format!("{path}.template"),
                            "template",
                            id,
                            template_ids.iter().copied(),
                        );
                    } else if let Some(found) = templates.iter().find(|t| t.id == id) {
                        if found.purpose != TemplatePurpose::FollowUp {
                            ok = false;
                            self.push(
                                Diagnostic::new(
                                    Code::TemplatePurposeMismatch,
                                    format!("{path}.template"),
                                    format!("template `{id}` is written for first messages (purpose = \"{}\")", found.purpose.as_str()),
                                )
                                .with_help("give the template purpose = \"follow_up\", or choose a follow-up template"),
                            );
                        }
                        if let Some(channel) = &value.channel {
                            if &found.channel != channel {
                                ok = false;
                                self.push(Diagnostic::new(
                                    Code::TemplateChannel,
                                    format!("{path}.template"),
                                    format!("template `{id}` is for channel `{}`, the follow-up goes out on `{channel}`", found.channel),
                                ));
                            }
                        }
                    }
                    TemplateChoice::Fixed(id.to_string())
                }
            };
            let mut stop_on = value.stop_on.clone();
            if !stop_on.contains(&StopOn::Unsubscribe) {
                stop_on.push(StopOn::Unsubscribe);
            }
            if ok {
                rules.push(FollowUpRule {
                    id: entry.id.clone(),
                    description: value.description.clone(),
                    if_no: value.if_no,
                    after: value.after,
                    max_attempts: value.max_attempts,
                    template,
                    channel: value.channel.clone(),
                    stop_on,
                });
            }
        }
        rules
    }

    #[allow(clippy::too_many_arguments)] // Reach-outs tie together every other section.
    pub(super) fn reach_outs(
        &mut self,
        phases: &[Phase],
        stages: &[Stage],
        channels: &[Channel],
        templates: &[Template],
        follow_ups: &[FollowUpRule],
        campaign: Option<Window>,
    ) -> Vec<ReachOut> {
        let raw = self.raw;
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let channel_ids: Vec<&str> = raw.channels.iter().map(|e| e.id.as_str()).collect();
        let template_ids: Vec<&str> = raw.templates.iter().map(|e| e.id.as_str()).collect();
        let follow_up_ids: Vec<&str> = raw.follow_ups.iter().map(|e| e.id.as_str()).collect();
        // Which template each message gets depends on the timeline and the templates: when
        // either has errors already, coverage is not checked (it would only repeat them).
        let coverage =
            !self.has_errors_under(&["campaign", "phases", "stages", "templates", "follow_ups"]);
        let mut reach_outs = Vec::new();
        for entry in &raw.reach_outs {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            ok &= self.known(
                &format!("{path}.segment"),
                "segment",
                &value.segment,
                &segment_ids,
            );
            let channel = channels.iter().find(|c| c.id == value.channel);
            ok &= self.known(
                &format!("{path}.channel"),
                "channel",
                &value.channel,
                &channel_ids,
            );
            if let Some(follow_up) = &value.follow_up {
                ok &= self.known(
                    &format!("{path}.follow_up"),
                    "follow-up rule",
                    follow_up,
                    &follow_up_ids,
                );
            }
            let mut accounts = value.accounts.clone();
            if let Some(channel) = channel {
                for (position, account) in value.accounts.iter().enumerate() {
                    if !channel.accounts.contains(account) {
                        ok = false;
                        let mut diagnostic = Diagnostic::new(
                            Code::AccountNotOnChannel,
                            format!("{path}.accounts[{position}]"),
                            format!(
                                "channel `{}` has no sending account `{account}`",
                                channel.id
                            ),
                        );
                        diagnostic =
                            match suggest(account, channel.accounts.iter().map(String::as_str)) {
                                Some(candidate) => {
                                    diagnostic.with_help(format!("did you mean `{candidate}`?"))
                                }
                                None => diagnostic.with_help(format!(
                                    "add it to [channels.{}] accounts",
                                    channel.id
                                )),
                            };
                        self.push(diagnostic);
                    }
                }
                if accounts.is_empty() {
                    accounts = channel.accounts.clone();
                }
            }
            let window =
                self.named_or_between(&value.window, &format!("{path}.window"), phases, stages);
            if let (Some(window), Some(campaign), Some(zone)) = (window, campaign, self.time_zone) {
                if window.start < campaign.start || window.end > campaign.end {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::WindowOutsideCampaign,
                        format!("{path}.window"),
                        format!(
                            "the window {} to {} is outside the campaign ({} to {})",
                            format_instant(zone, window.start),
                            format_instant(zone, window.end),
                            format_instant(zone, campaign.start),
                            format_instant(zone, campaign.end)
                        ),
                    ));
                }
            }
            let template = match value.template.as_deref() {
                None | Some("auto") => TemplateChoice::Auto,
                Some(id) => {
                    if !template_ids.contains(&id) {
                        ok = false;
                        let candidates = template_ids.iter().copied().chain(["auto"]);
                        self.unknown_reference(
                            &format!("{path}.template"),
                            "template",
                            id,
                            candidates,
                        );
                    }
                    TemplateChoice::Fixed(id.to_string())
                }
            };
            let (Some(window), true) = (window, ok) else {
                continue;
            };
            let Some(channel) = channel else { continue };
            if value.sender == Sender::Owner && channel.accounts.is_empty() {
                self.push(
                    Diagnostic::new(
                        Code::AccountsRequired,
                        format!("{path}.sender"),
                        format!("messages from each customer's owner need the owners' accounts on channel `{}`", channel.id),
                    )
                    .with_help("list the sales reps' accounts in the channel's `accounts`"),
                );
                continue;
            }
            if let (Some((from, to)), Some(zone), true) = (
                first_gap(window, phases, stages),
                self.time_zone,
                campaign.is_some(),
            ) {
                self.push(
                    Diagnostic::new(
                        Code::WindowInGap,
                        format!("{path}.window"),
                        format!(
                            "the window reaches into a gap from {} to {} that belongs to no phase or stage; nothing can be chosen or sent there",
                            format_instant(zone, from),
                            format_instant(zone, to)
                        ),
                    )
                    .with_help("keep the window inside phases and stages"),
                );
                continue;
            }
            if let (Some(quiet), Some(zone)) = (&channel.quiet_hours, self.time_zone) {
                // Held from the window's start until the quiet hours end: past the window's end,
                // no message of the reach-out can ever go.
                let opens = crate::customer::eligibility::next_allowed(quiet, zone, window.start);
                if opens >= window.end {
                    self.push(
                        Diagnostic::new(
                            Code::WindowAllQuiet,
                            format!("{path}.window"),
                            format!(
                                "the window {} to {} lies wholly in channel `{}`'s quiet hours ({} to {}): no message of it can ever be sent",
                                format_instant(zone, window.start),
                                format_instant(zone, window.end),
                                channel.id,
                                quiet.start.format("%H:%M"),
                                quiet.end.format("%H:%M")
                            ),
                        )
                        .with_help("move the window, or the channel's quiet_hours"),
                    );
                }
            }
            if let Some(rule) = value
                .follow_up
                .as_ref()
                .and_then(|id| follow_ups.iter().find(|r| &r.id == id))
            {
                let rule_channel = rule
                    .channel
                    .as_ref()
                    .and_then(|id| channels.iter().find(|c| &c.id == id))
                    .unwrap_or(channel);
                if rule.after < rule_channel.fatigue {
                    self.push(
                        Diagnostic::new(
                            Code::FollowUpInsideFatigue,
                            format!("{path}.follow_up"),
                            format!(
                                "follow-up `{}` comes {} after the last message, inside channel `{}`'s {} fatigue window: it waits until the window has passed",
                                rule.id, rule.after, rule_channel.id, rule_channel.fatigue
                            ),
                        )
                        .with_help(format!("set after = \"{}\" or more", rule_channel.fatigue)),
                    );
                }
            }
            let reach_out = ReachOut {
                id: entry.id.clone(),
                name: value.name.clone(),
                description: value.description.clone(),
                segment: value.segment.clone(),
                channel: value.channel.clone(),
                template,
                window,
                accounts,
                follow_up: value.follow_up.clone(),
                sender: value.sender,
            };
            if !coverage {
                reach_outs.push(reach_out);
                continue;
            }
            // The template every message of this reach-out will use must exist and be unique.
            self.cover(
                &format!("{path}.template"),
                &reach_out.template,
                channel,
                TemplatePurpose::ReachOut,
                &value.segment,
                window,
                phases,
                stages,
                templates,
                "the reach-out",
            );
            if let (Some(quiet), Some(zone)) = (&channel.quiet_hours, self.time_zone) {
                // Held from the window's start until the quiet hours end: past the window's end,
                // no message of the reach-out can ever go.
                let opens = crate::customer::eligibility::next_allowed(quiet, zone, window.start);
                if opens >= window.end {
                    self.push(
                        Diagnostic::new(
                            Code::WindowAllQuiet,
                            format!("{path}.window"),
                            format!(
                                "the window {} to {} lies wholly in channel `{}`'s quiet hours ({} to {}): no message of it can ever be sent",
                                format_instant(zone, window.start),
                                format_instant(zone, window.end),
                                channel.id,
                                quiet.start.format("%H:%M"),
                                quiet.end.format("%H:%M")
                            ),
                        )
                        .with_help("move the window, or the channel's quiet_hours"),
                    );
                }
            }
            if let Some(rule) = value
                .follow_up
                .as_ref()
                .and_then(|id| follow_ups.iter().find(|r| &r.id == id))
            {
                let rule_channel = rule
                    .channel
                    .as_ref()
                    .and_then(|id| channels.iter().find(|c| &c.id == id))
                    .unwrap_or(channel);
                // Bounded by the attempt limit and the campaign; checked, so that no plan can
                // overflow the calendar.
                let end = rule
                    .after
                    .seconds()
                    .checked_mul(i64::from(rule.max_attempts))
                    .and_then(chrono::Duration::try_seconds)
                    .and_then(|reach| window.end.checked_add_signed(reach));
                let start = window.start.checked_add_signed(rule.after.to_chrono());
                let follow_window = match (start, end) {
                    (Some(start), Some(end)) => Some(Window {
                        start,
                        end: campaign.map_or(end, |c| end.min(c.end)),
                    }),
                    _ => None,
                };
                if let Some(follow_window) = follow_window.filter(|w| w.start < w.end) {
                    self.cover(
                        &format!("{path}.follow_up"),
                        &rule.template,
                        rule_channel,
                        TemplatePurpose::FollowUp,
                        &value.segment,
                        follow_window,
                        phases,
                        stages,
                        templates,
                        &format!("follow-up `{}`", rule.id),
                    );
                }
            }
            reach_outs.push(reach_out);
        }
        reach_outs
    }

    /// Checks that every message sent in `window` finds exactly one template: for each phase or
    /// stage the window touches and each class of customer tier the channel's templates tell
    /// apart.
    #[allow(clippy::too_many_arguments)] // The query's dimensions, each needed.
    pub(super) fn cover(
        &mut self,
        path: &str,
        choice: &TemplateChoice,
        channel: &Channel,
        purpose: TemplatePurpose,
        segment: &str,
        window: Window,
        phases: &[Phase],
        stages: &[Stage],
        templates: &[Template],
        what: &str,
    ) {
        let mut contexts: Vec<(PhaseKind, Option<&str>)> = Vec::new();
        for phase in phases.iter().filter(|p| p.window.overlaps(&window)) {
            if phase.kind == PhaseKind::Burst {
                for stage in stages.iter().filter(|s| s.window.overlaps(&window)) {
                    contexts.push((PhaseKind::Burst, Some(stage.id.as_str())));
                }
            } else {
                contexts.push((phase.kind, None));
            }
        }
        let where_ = |phase: PhaseKind, stage: Option<&str>| match stage {
            Some(stage) => format!("burst stage `{stage}`"),
            None => format!("the {} phase", phase.label()),
        };
        match choice {
            TemplateChoice::Fixed(id) => {
                let Some(template) = templates.iter().find(|t| &t.id == id) else {
                    return;
                };
                if template.channel != channel.id {
                    self.push(Diagnostic::new(
                        Code::TemplateChannel,
                        path,
                        format!(
                            "template `{id}` is written for channel `{}`, but {what} sends on `{}`",
                            template.channel, channel.id
                        ),
                    ));
                    return;
                }
                if template.purpose != purpose {
                    self.push(Diagnostic::new(
                        Code::TemplatePurposeMismatch,
                        path,
                        format!(
                            "template `{id}` has purpose \"{}\" but {what} needs \"{}\"",
                            template.purpose.as_str(),
                            purpose.as_str()
                        ),
                    ));
                    return;
                }
                let outside: Vec<String> = contexts
                    .iter()
                    .filter(|(phase, stage)| {
                        template.phase.is_some_and(|p| p != *phase)
                            || template.stage.as_deref().is_some_and(|s| Some(s) != *stage)
                    })
                    .map(|(phase, stage)| where_(*phase, *stage))
                    .collect();
                if !template.segments.is_empty() && !template.segments.iter().any(|s| s == segment)
                {
                    self.push(Diagnostic::new(
                        Code::TemplateOutOfWindow,
                        path,
                        format!(
                            "template `{id}` is meant for segments {}, but {what} goes to segment `{segment}`",
                            template.segments.join(", ")
                        ),
                    ));
                }
                if !outside.is_empty() {
                    self.push(Diagnostic::new(
                        Code::TemplateOutOfWindow,
                        path,
                        format!("template `{id}` is meant for another phase or stage, but {what} also sends in {}", outside.join(", ")),
                    ));
                }
            }
            TemplateChoice::Auto => {
                let mut tiers: Vec<Option<&str>> = vec![None];
                let mut seen_tiers: std::collections::HashSet<&str> =
                    std::collections::HashSet::new();
                for template in templates
                    .iter()
                    .filter(|t| t.channel == channel.id && t.purpose == purpose)
                {
                    for tier in &template.tiers {
                        if seen_tiers.insert(tier.as_str()) {
                            tiers.push(Some(tier.as_str()));
                        }
                    }
                }
                let mut missing: Vec<String> = Vec::new();
                let mut ambiguous: Vec<String> = Vec::new();
                let tier_words = |tier: Option<&str>| match tier {
                    Some(tier) => format!(" for tier `{tier}`"),
                    None => " for customers of other tiers".to_string(),
                };
                // Templates of this channel and purpose that name tiers, by tier: a customer of
                // tier t is served by the best tierless templates plus those naming t, so each
                // tier costs only its own templates.
                let mut by_tier: HashMap<&str, Vec<&Template>> = HashMap::new();
                for template in templates
                    .iter()
                    .filter(|t| t.channel == channel.id && t.purpose == purpose)
                {
                    for tier in &template.tiers {
                        by_tier.entry(tier.as_str()).or_default().push(template);
                    }
                }
                for (phase, stage) in &contexts {
                    let place = where_(*phase, *stage);
                    // Reach-outs of one channel, purpose, stage and segment all get the same
                    // answer: work it out once.
                    let key: CoverKey = (
                        channel.id.clone(),
                        purpose,
                        *phase,
                        stage.map(str::to_string),
                        segment.to_string(),
                    );
                    let (missing_tiers, ambiguous_tiers) = match self.coverage.get(&key) {
                        Some(known) => known.clone(),
                        None => {
                            let mut missing_tiers: Vec<Option<String>> = Vec::new();
                            let mut ambiguous_tiers: Vec<(Option<String>, Vec<String>)> =
                                Vec::new();
                            let base_query = Query {
                                channel: &channel.id,
                                purpose,
                                phase: *phase,
                                stage: *stage,
                                segment,
                                tier: None,
                            };
                            let base = template::maximal(
                                templates.iter().filter(|t| template::fits(t, &base_query)),
                            );
                            for tier in &tiers {
                                let query = Query {
                                    tier: *tier,
                                    ..base_query
                                };
                                let own = tier
                                    .and_then(|tier| by_tier.get(tier))
                                    .into_iter()
                                    .flatten()
                                    .copied()
                                    // Found by their tier: only the rest of the context is checked.
                                    .filter(|t| template::fits_context(t, &query));
                                match template::select_among(base.iter().copied().chain(own)) {
                                    Selection::One(_) => {}
                                    Selection::None => missing_tiers.push(tier.map(str::to_string)),
                                    Selection::Ambiguous(candidates) => ambiguous_tiers.push((
                                        tier.map(str::to_string),
                                        candidates.iter().map(|t| format!("`{}`", t.id)).collect(),
                                    )),
                                }
                            }
                            self.coverage
                                .insert(key, (missing_tiers.clone(), ambiguous_tiers.clone()));
                            (missing_tiers, ambiguous_tiers)
                        }
                    };
                    // Name the tiers only when they differ in the outcome.
                    if missing_tiers.len() == tiers.len() {
                        missing.push(place.clone());
                    } else {
                        missing.extend(
                            missing_tiers
                                .iter()
                                .map(|tier| format!("{place}{}", tier_words(tier.as_deref()))),
                        );
                    }
                    let same_everywhere = ambiguous_tiers.len() == tiers.len()
                        && ambiguous_tiers
                            .windows(2)
                            .all(|pair| pair[0].1 == pair[1].1);
                    if same_everywhere {
                        if let Some((_, ids)) = ambiguous_tiers.first() {
                            ambiguous.push(format!("{place}: {}", ids.join(" or ")));
                        }
                    } else {
                        for (tier, ids) in ambiguous_tiers {
                            ambiguous.push(format!(
                                "{place}{}: {}",
                                tier_words(tier.as_deref()),
                                ids.join(" or ")
                            ));
                        }
                    }
                }
                if !missing.is_empty() {
                    self.push(
                        Diagnostic::new(
                            Code::NoTemplate,
                            path,
                            format!(
                                "no {} template for {what} to segment `{segment}` on channel `{}` in {}",
                                purpose.as_str().replace('_', "-"),
                                channel.id,
                                missing.join(", ")
                            ),
                        )
                        .with_help(format!(
                            "add a template with channel = \"{}\"{} covering it, or name one with template = \"ID\"",
                            channel.id,
                            if purpose == TemplatePurpose::FollowUp { " and purpose = \"follow_up\"" } else { "" }
                        )),
                    );
                }
                for problem in ambiguous {
                    self.push(
                        Diagnostic::new(
                            Code::AmbiguousTemplate,
                            path,
                            format!("two templates fit {what} equally well in {problem}"),
                        )
                        .with_help("make one more specific (stage, segments, tiers) or add one that is more specific than both"),
                    );
                }
            }
        }
    }
}

/// The first stretch of `window` that no phase covers, or, inside the burst phase, no stage.
fn first_gap(
    window: Window,
    phases: &[Phase],
    stages: &[Stage],
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut covered: Vec<Window> = phases
        .iter()
        .filter(|phase| phase.kind != PhaseKind::Burst)
        .map(|phase| phase.window)
        .chain(stages.iter().map(|stage| stage.window))
        .collect();
    covered.sort_by_key(|w| w.start);
    let mut cursor = window.start;
    for piece in covered {
        if cursor >= window.end {
            break;
        }
        if piece.end <= cursor {
            continue;
        }
        if piece.start > cursor {
            return Some((cursor, piece.start.min(window.end)));
        }
        cursor = piece.end;
    }
    (cursor < window.end).then_some((cursor, window.end))
}
