//! Audiences and channels: segments and their conditions, channel quotas, fatigue and guards.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Validator;
use crate::plan::diagnostic::{Code, Diagnostic};
use crate::plan::model::*;
use crate::plan::raw::*;
use crate::plan::values::PlanDuration;

/// Whether a host is this machine (`localhost`, `127.0.0.1`, `::1`).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An address's scheme (lower case) and host, when it is `scheme://host[:port][/...]` with a
/// host; `None` otherwise.
fn url_host(url: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') || authority.chars().any(char::is_whitespace) {
        // No credentials in the address: the secret has its own place.
        return None;
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        &authority[..bracketed.find(']')? + 2]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some((scheme, host))
}

/// The default fatigue window when a channel sets none: the platforms' 7 days.
const DEFAULT_FATIGUE_DAYS: i64 = 7;

impl Validator<'_> {
    /// `[channels.ID.smtp]`: only on a mail channel; plain only to this machine; a login with
    /// exactly one place to read its password. `None` (with its diagnostics) when refused.
    fn smtp(&mut self, path: &str, kind: ChannelKind, raw: &RawSmtp) -> Option<Smtp> {
        let mut ok = true;
        if kind != ChannelKind::Mail {
            ok = false;
            self.push(
                Diagnostic::new(
                    Code::SmtpNotMail,
                    format!("{path}.smtp"),
                    format!("a mail server for a channel of kind {}", kind.as_str()),
                )
                .with_help("only a channel of kind = \"mail\" sends through a mail server"),
            );
        }
        if raw.tls == SmtpTlsMode::None && !is_loopback(&raw.host) {
            ok = false;
            self.push(
                Diagnostic::new(
                    Code::PlainSmtpRemote,
                    format!("{path}.smtp.tls"),
                    format!(
                        "mail to {} without TLS would carry the password and the customers' addresses in the clear",
                        raw.host
                    ),
                )
                .with_help("tls = \"implicit\" (port 465) or tls = \"starttls\" (587); \"none\" is for a relay on this machine only"),
            );
        }
        let password = match (&raw.password_env, &raw.password_file) {
            (Some(variable), None) => Some(SecretSource::Env(variable.clone())),
            (None, Some(file)) => Some(SecretSource::File(file.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => {
                ok = false;
                self.push(Diagnostic::new(
                    Code::SmtpPassword,
                    format!("{path}.smtp"),
                    "both password_env and password_file: say one place to read the password",
                ));
                None
            }
        };
        if raw.user.is_some() && password.is_none() && ok {
            ok = false;
            self.push(
                Diagnostic::new(
                    Code::SmtpPassword,
                    format!("{path}.smtp"),
                    "a user without a password: name where to read it",
                )
                .with_help("password_env = \"SHOP_SMTP_PASSWORD\" (an environment variable of the daemon) or password_file = \"/etc/battleplan/smtp-password\"; never the password itself"),
            );
        }
        if raw.user.is_none() && password.is_some() {
            ok = false;
            self.push(Diagnostic::new(
                Code::SmtpPassword,
                format!("{path}.smtp.user"),
                "a password without a user: name the user to log in as",
            ));
        }
        if raw.connections == Some(0) {
            ok = false;
            self.push(Diagnostic::new(
                Code::InvalidValue,
                format!("{path}.smtp.connections"),
                "at least one connection",
            ));
        }
        let timeout_seconds = raw
            .timeout
            .map_or(30, |timeout| u64::try_from(timeout.seconds()).unwrap_or(0));
        if timeout_seconds == 0 {
            ok = false;
            self.push(Diagnostic::new(
                Code::InvalidValue,
                format!("{path}.smtp.timeout"),
                "a timeout of zero: no reply could ever come in time",
            ));
        }
        ok.then(|| Smtp {
            host: raw.host.clone(),
            port: raw.port.unwrap_or(match raw.tls {
                SmtpTlsMode::Implicit => 465,
                SmtpTlsMode::Starttls => 587,
                SmtpTlsMode::None => 25,
            }),
            tls: raw.tls,
            user: raw.user.clone(),
            password,
            from: raw.from.clone(),
            reply_to: raw.reply_to.clone(),
            connections: raw.connections.unwrap_or(4),
            per_second: raw.per_second,
            timeout_seconds,
        })
    }

    /// `[channels.ID.webhook]`: not on mail (mail goes through its mail server); https, or
    /// http only to this machine; exactly one place to read the signing secret. `None` (with
    /// its diagnostics) when refused.
    fn webhook(&mut self, path: &str, kind: ChannelKind, raw: &RawWebhook) -> Option<Webhook> {
        let mut ok = true;
        if kind == ChannelKind::Mail {
            ok = false;
            self.push(
                Diagnostic::new(
                    Code::WebhookOnMail,
                    format!("{path}.webhook"),
                    "a webhook for a mail channel",
                )
                .with_help("mail goes through its mail server ([channels.ID.smtp]); a webhook is for in-site messages, IM or a system of the merchant's"),
            );
        }
        match url_host(&raw.url) {
            Some(("https", _)) => {}
            Some(("http", host)) if is_loopback(host) => {}
            Some(("http", host)) => {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::WebhookAddress,
                        format!("{path}.webhook.url"),
                        format!(
                            "a webhook to {host} over plain http would carry the customers' data in the clear"
                        ),
                    )
                    .with_help("use https://; http:// is for a receiver on this machine only"),
                );
            }
            _ => {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::WebhookAddress,
                        format!("{path}.webhook.url"),
                        format!("{:?} is not an http(s) address", raw.url),
                    )
                    .with_help("url = \"https://shop.example.com/hooks/battleplan\""),
                );
            }
        }
        let secret = match (&raw.secret_env, &raw.secret_file) {
            (Some(variable), None) => Some(SecretSource::Env(variable.clone())),
            (None, Some(file)) => Some(SecretSource::File(file.clone())),
            (both_or_none_env, _) => {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::WebhookSecret,
                        format!("{path}.webhook"),
                        if both_or_none_env.is_some() {
                            "both secret_env and secret_file: say one place to read the signing secret"
                        } else {
                            "no signing secret: every request is signed, so the receiver can tell it came from battleplan"
                        },
                    )
                    .with_help("secret_env = \"SHOP_WEBHOOK_SECRET\" (an environment variable of the daemon holding whsec_ and base64) or secret_file = \"/etc/battleplan/webhook-secret\"; never the secret itself"),
                );
                None
            }
        };
        for (field, value) in [("attempts", raw.attempts), ("connections", raw.connections)] {
            if value == Some(0) {
                ok = false;
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    format!("{path}.webhook.{field}"),
                    format!("{field} of zero: nothing would ever be sent"),
                ));
            }
        }
        let timeout_seconds = raw
            .timeout
            .map_or(10, |timeout| u64::try_from(timeout.seconds()).unwrap_or(0));
        if timeout_seconds == 0 {
            ok = false;
            self.push(Diagnostic::new(
                Code::InvalidValue,
                format!("{path}.webhook.timeout"),
                "a timeout of zero: no answer could ever come in time",
            ));
        }
        let secret = secret?;
        ok.then(|| Webhook {
            url: raw.url.clone(),
            secret,
            timeout_seconds,
            attempts: raw.attempts.unwrap_or(8),
            connections: raw.connections.unwrap_or(4),
        })
    }

    pub(super) fn segments(&mut self) -> Vec<Segment> {
        let raw = self.raw;
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let mut segments = Vec::new();
        let mut includes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for entry in &raw.segments {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let has_rule = value.all.is_some() || value.any.is_some() || value.none.is_some();
            let kinds = [value.system.is_some(), has_rule, value.customers.is_some()]
                .iter()
                .filter(|present| **present)
                .count();
            if kinds != 1 {
                self.push_at_key(
                    Diagnostic::new(
                        Code::SegmentKind,
                        path,
                        if kinds == 0 {
                            format!("segment `{}` says nothing about who is in it", entry.id)
                        } else {
                            format!("segment `{}` mixes kinds; choose one of `system`, a rule (`all` / `any` / `none`) or `customers`", entry.id)
                        },
                    )
                    .with_help("system = \"active_30d\", or all = [ { tag = \"vip\" } ], or customers = [\"c-1\"]"),
                );
                continue;
            }
            let name = value.name.clone().unwrap_or_else(|| entry.id.clone());
            let definition = if let Some(system) = value.system {
                SegmentDefinition::System(system)
            } else if let Some(customers) = &value.customers {
                if customers.is_empty() {
                    self.push(Diagnostic::new(
                        Code::EmptySegment,
                        format!("{path}.customers"),
                        "the customer list is empty",
                    ));
                    continue;
                }
                let mut seen = HashSet::new();
                for (position, customer) in customers.iter().enumerate() {
                    if !seen.insert(customer) {
                        self.push(Diagnostic::new(
                            Code::DuplicateCustomer,
                            format!("{path}.customers[{position}]"),
                            format!("customer `{customer}` is listed twice"),
                        ));
                    }
                }
                SegmentDefinition::Fixed(customers.clone())
            } else {
                let mut lists = Vec::new();
                let mut ok = true;
                for (key, conditions) in [
                    ("all", &value.all),
                    ("any", &value.any),
                    ("none", &value.none),
                ] {
                    let mut converted = Vec::new();
                    for (position, condition) in conditions.iter().flatten().enumerate() {
                        let condition_path = format!("{path}.{key}[{position}]");
                        match self.condition(&condition_path, condition, &segment_ids) {
                            Some(condition) => {
                                if let Condition::InSegment(other) = &condition {
                                    includes
                                        .entry(entry.id.as_str())
                                        .or_default()
                                        .push(other.clone());
                                }
                                converted.push(condition);
                            }
                            None => ok = false,
                        }
                    }
                    lists.push(converted);
                }
                if !ok {
                    continue;
                }
                if lists.iter().all(Vec::is_empty) {
                    self.push_at_key(Diagnostic::new(
                        Code::EmptySegment,
                        path,
                        format!("segment `{}` has a rule with no conditions", entry.id),
                    ));
                    continue;
                }
                let none = lists.pop().unwrap_or_default();
                let any = lists.pop().unwrap_or_default();
                let all = lists.pop().unwrap_or_default();
                if all.is_empty() && any.is_empty() {
                    self.push_at_key(
                        Diagnostic::new(
                            Code::EmptySegment,
                            path,
                            format!("segment `{}` only excludes; it would take every customer not excluded", entry.id),
                        )
                        .with_help("add an `all` or `any` condition, e.g. { activity = \"active\", within = \"180d\" }"),
                    );
                    continue;
                }
                SegmentDefinition::Dynamic { all, any, none }
            };
            segments.push(Segment {
                id: entry.id.clone(),
                name,
                description: value.description.clone(),
                definition,
            });
        }
        // Segments that include each other would never finish evaluating. Their strongly
        // connected components (Tarjan's algorithm, iterative: linear in the plan, whatever its
        // shape) are the cycles; each is reported once, at its first member in declared order.
        let order: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut low: HashMap<&str, usize> = HashMap::new();
        let mut on_stack: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = Vec::new();
        let mut in_cycle: HashSet<String> = HashSet::new();
        let mut cycles: Vec<Vec<&str>> = Vec::new();
        let mut counter = 0;
        for start in order.iter().copied() {
            if index_of.contains_key(start) {
                continue;
            }
            // Each frame: a node and the index of its next edge to follow.
            let mut frames: Vec<(&str, usize)> = vec![(start, 0)];
            index_of.insert(start, counter);
            low.insert(start, counter);
            counter += 1;
            stack.push(start);
            on_stack.insert(start);
            while let Some(&mut (node, ref mut edge)) = frames.last_mut() {
                let next = includes
                    .get(node)
                    .and_then(|edges| edges.get(*edge))
                    .map(String::as_str);
                *edge += 1;
                match next {
                    Some(next) => {
                        let Some(next) = includes
                            .get_key_value(next)
                            .map(|(k, _)| *k)
                            .or_else(|| order.iter().copied().find(|o| *o == next))
                        else {
                            continue;
                        };
                        if !index_of.contains_key(next) {
                            index_of.insert(next, counter);
                            low.insert(next, counter);
                            counter += 1;
                            stack.push(next);
                            on_stack.insert(next);
                            frames.push((next, 0));
                        } else if on_stack.contains(next) {
                            let reached = index_of[next];
                            if let Some(l) = low.get_mut(node) {
                                *l = (*l).min(reached);
                            }
                        }
                    }
                    None => {
                        frames.pop();
                        let node_low = low[node];
                        if let Some(&(parent, _)) = frames.last() {
                            if let Some(l) = low.get_mut(parent) {
                                *l = (*l).min(node_low);
                            }
                        }
                        if node_low == index_of[node] {
                            let mut component = Vec::new();
                            while let Some(member) = stack.pop() {
                                on_stack.remove(member);
                                component.push(member);
                                if member == node {
                                    break;
                                }
                            }
                            let self_loop = includes
                                .get(node)
                                .is_some_and(|edges| edges.iter().any(|e| e == node));
                            if component.len() > 1 || self_loop {
                                cycles.push(component);
                            }
                        }
                    }
                }
            }
        }
        let position: HashMap<&str, usize> =
            order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        cycles.sort_by_key(|component| {
            component
                .iter()
                .map(|m| position.get(m).copied().unwrap_or(usize::MAX))
                .min()
        });
        for component in cycles {
            let members: HashSet<&str> = component.iter().copied().collect();
            let first = component
                .iter()
                .copied()
                .min_by_key(|m| position.get(m).copied().unwrap_or(usize::MAX))
                .unwrap_or_default();
            // Show one cycle through the first member, following includes inside the component.
            let mut shown = vec![first];
            let mut current = first;
            let mut seen: HashSet<&str> = HashSet::from([first]);
            loop {
                let next = includes
                    .get(current)
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .find(|n| members.contains(n) && (*n == first || !seen.contains(n)));
                match next {
                    Some(n) if n == first => {
                        shown.push(first);
                        break;
                    }
                    Some(n) => {
                        seen.insert(n);
                        shown.push(n);
                        current = n;
                    }
                    None => {
                        shown.push(first);
                        break;
                    }
                }
            }
            self.push_at_key(Diagnostic::new(
                Code::SegmentCycle,
                format!("segments.{first}"),
                format!("segments include each other: {}", shown.join(" -> ")),
            ));
            in_cycle.extend(component.iter().map(|m| m.to_string()));
        }
        segments.retain(|segment| !in_cycle.contains(&segment.id));
        segments
    }

    pub(super) fn condition(
        &mut self,
        path: &str,
        raw: &RawCondition,
        segment_ids: &[&str],
    ) -> Option<Condition> {
        let selectors: Vec<&str> = [
            ("tag", raw.tag.is_some()),
            ("not_tag", raw.not_tag.is_some()),
            ("tier", raw.tier.is_some()),
            ("owner", raw.owner.is_some()),
            ("source", raw.source.is_some()),
            ("locale", raw.locale.is_some()),
            ("lifecycle", raw.lifecycle.is_some()),
            ("in_segment", raw.in_segment.is_some()),
            ("activity", raw.activity.is_some()),
            ("attribute", raw.attribute.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(key, _)| key)
        .collect();
        if selectors.len() != 1 {
            self.push(
                Diagnostic::new(
                    Code::ConditionSelector,
                    path,
                    if selectors.is_empty() {
                        "a condition needs a selector".to_string()
                    } else {
                        format!("a condition has one selector; this one has {}", selectors.join(", "))
                    },
                )
                .with_help("selectors: tag, not_tag, tier, owner, source, locale, lifecycle, in_segment, activity, attribute; split into several conditions"),
            );
            return None;
        }
        let selector = selectors[0];
        let misplaced: Vec<&str> = [
            ("within", raw.within.is_some() && selector != "activity"),
            (
                "not_within",
                raw.not_within.is_some() && selector != "activity",
            ),
            ("equals", raw.equals.is_some() && selector != "attribute"),
            ("one_of", raw.one_of.is_some() && selector != "attribute"),
        ]
        .into_iter()
        .filter(|(_, wrong)| *wrong)
        .map(|(key, _)| key)
        .collect();
        if !misplaced.is_empty() {
            self.push(Diagnostic::new(
                Code::ConditionOption,
                path,
                format!(
                    "`{}` does not apply to a `{selector}` condition",
                    misplaced.join("`, `")
                ),
            ));
            return None;
        }
        let list = |values: &Option<OneOrMany<String>>| {
            values.as_ref().map(|v| v.0.clone()).unwrap_or_default()
        };
        let empty_list = |diagnostics: &mut Self| {
            diagnostics.push(Diagnostic::new(
                Code::ConditionOption,
                format!("{path}.{selector}"),
                format!("`{selector}` needs at least one value"),
            ));
        };
        let condition = match selector {
            "tag" => Condition::Tag(raw.tag.clone().unwrap_or_default()),
            "not_tag" => Condition::NotTag(raw.not_tag.clone().unwrap_or_default()),
            "tier" | "owner" | "locale" => {
                let values = list(match selector {
                    "tier" => &raw.tier,
                    "owner" => &raw.owner,
                    _ => &raw.locale,
                });
                if values.is_empty() {
                    empty_list(self);
                    return None;
                }
                match selector {
                    "tier" => Condition::Tier(values),
                    "owner" => Condition::Owner(values),
                    _ => Condition::Locale(values),
                }
            }
            "source" => {
                let values = raw.source.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                if values.is_empty() {
                    empty_list(self);
                    return None;
                }
                Condition::Source(values)
            }
            "lifecycle" => {
                let values = raw
                    .lifecycle
                    .as_ref()
                    .map(|v| v.0.clone())
                    .unwrap_or_default();
                if values.is_empty() {
                    empty_list(self);
                    return None;
                }
                Condition::Lifecycle(values)
            }
            "in_segment" => {
                let other = raw.in_segment.clone().unwrap_or_default();
                if !segment_ids.contains(&other.as_str()) {
                    self.unknown_reference(
                        &format!("{path}.in_segment"),
                        "segment",
                        &other,
                        segment_ids.iter().copied(),
                    );
                    return None;
                }
                Condition::InSegment(other)
            }
            "activity" => {
                let activity = raw.activity?;
                match (raw.within, raw.not_within) {
                    (Some(_), Some(_)) => {
                        self.push(Diagnostic::new(
                            Code::ConditionOption,
                            path,
                            "an activity condition has `within` or `not_within`, not both; use two conditions",
                        ));
                        return None;
                    }
                    (None, Some(within)) => Condition::NoActivity { activity, within },
                    (within, None) => Condition::Activity { activity, within },
                }
            }
            _ => {
                let name = raw.attribute.clone().unwrap_or_default();
                let one_of = match (&raw.equals, &raw.one_of) {
                    (Some(value), None) => vec![value.clone()],
                    (None, Some(values)) if !values.is_empty() => values.clone(),
                    _ => {
                        self.push(Diagnostic::new(
                            Code::ConditionOption,
                            path,
                            "an attribute condition needs exactly one of `equals` or a non-empty `one_of`",
                        ));
                        return None;
                    }
                };
                Condition::Attribute { name, one_of }
            }
        };
        Some(condition)
    }

    pub(super) fn channels(&mut self) -> Vec<Channel> {
        let raw = self.raw;
        let segment_ids: Vec<&str> = raw.segments.iter().map(|e| e.id.as_str()).collect();
        let mut channels = Vec::new();
        for entry in &raw.channels {
            let Some(value) = &entry.value else { continue };
            let path = entry.path.as_str();
            let mut ok = true;
            for (key, cap) in [
                ("daily_cap", value.daily_cap),
                ("per_account_daily_cap", value.per_account_daily_cap),
            ] {
                if cap == Some(0) {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::ZeroCap,
                            format!("{path}.{key}"),
                            format!("`{key}` of zero would send nothing"),
                        )
                        .with_help(
                            "remove the channel from reach-outs instead, or give a cap above zero",
                        ),
                    );
                }
            }
            if let (Some(free), Some(cap)) = (value.free_per_day, value.daily_cap) {
                if free > cap {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::FreeAboveCap,
                        format!("{path}.free_per_day"),
                        format!("{free} free messages a day is more than the daily cap of {cap}"),
                    ));
                }
                if free == cap && value.cost_per_1000.is_some_and(|cost| cost.minor() > 0) {
                    self.push(Diagnostic::new(
                        Code::PaidAboveCap,
                        format!("{path}.cost_per_1000"),
                        "the free quota equals the cap, so nothing is ever paid: the price is never used",
                    ));
                }
            }
            for (key, budget) in [
                ("daily_budget", value.daily_budget),
                ("monthly_budget", value.monthly_budget),
            ] {
                if budget.is_some_and(|budget| budget.minor() <= 0) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::NegativeAmount,
                        format!("{path}.{key}"),
                        "a budget must be above zero",
                    ));
                }
            }
            if value.cost_per_1000.is_some_and(|cost| cost.minor() < 0) {
                ok = false;
                self.push(Diagnostic::new(
                    Code::NegativeAmount,
                    format!("{path}.cost_per_1000"),
                    "a cost cannot be negative",
                ));
            }
            if value.daily_cap.is_none() && value.per_account_daily_cap.is_none() {
                self.push_at_key(
                    Diagnostic::new(
                        Code::Unlimited,
                        path,
                        format!("channel `{}` has no daily cap: nothing limits how much it sends in a day", entry.id),
                    )
                    .with_help("set daily_cap (mail: 2000 on the platform) or per_account_daily_cap"),
                );
            }
            let paid_possible = match (value.free_per_day, value.daily_cap) {
                (Some(free), Some(cap)) => free < cap,
                (Some(_), None) => true,
                _ => false,
            };
            if paid_possible && value.cost_per_1000.is_none() {
                self.push_at_key(
                    Diagnostic::new(
                        Code::UnpricedVolume,
                        format!("{path}.free_per_day"),
                        "messages above the free quota are paid, but the channel has no `cost_per_1000`; previews will show them as free",
                    )
                    .with_help("set cost_per_1000 (mail: 2.00 CNY on the platform)"),
                );
            }
            if value.per_account_daily_cap.is_some() && value.accounts.is_empty() {
                ok = false;
                self.push(
                    Diagnostic::new(
                        Code::AccountsRequired,
                        format!("{path}.per_account_daily_cap"),
                        "a per-account cap needs the sending accounts it applies to",
                    )
                    .with_help("add accounts = [\"...\"]"),
                );
            }
            let mut seen_accounts = HashSet::new();
            for (position, account) in value.accounts.iter().enumerate() {
                if account.trim().is_empty() {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        format!("{path}.accounts[{position}]"),
                        "an account name cannot be empty",
                    ));
                } else if !seen_accounts.insert(account.as_str()) {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::DuplicateAccount,
                        format!("{path}.accounts[{position}]"),
                        format!("account `{account}` is listed twice"),
                    ));
                }
            }
            let fatigue = value
                .fatigue
                .unwrap_or(PlanDuration::from_seconds(DEFAULT_FATIGUE_DAYS * 86_400));
            if fatigue.seconds() == 0 {
                self.push(
                    Diagnostic::new(
                        Code::NoFatigue,
                        format!("{path}.fatigue"),
                        "no fatigue window: a customer can be messaged again at once, which the platforms count as spam",
                    )
                    .with_help("the platforms exclude customers marketed in the last 7 days: fatigue = \"7d\""),
                );
            }
            let quiet_hours = match &value.quiet_hours {
                Some(quiet) if quiet.start == quiet.end => {
                    ok = false;
                    self.push(Diagnostic::new(
                        Code::EmptyQuietHours,
                        format!("{path}.quiet_hours"),
                        format!(
                            "quiet hours start and end at {}; say which hours are quiet",
                            quiet.start
                        ),
                    ));
                    None
                }
                Some(quiet) => Some(QuietHours {
                    start: quiet.start.0,
                    end: quiet.end.0,
                    policy: quiet.policy,
                }),
                None => None,
            };
            let bounce_guard = match &value.bounce_guard {
                Some(guard)
                    if !(guard.max_bounce_rate.0 > 0.0 && guard.max_bounce_rate.0 <= 1.0) =>
                {
                    ok = false;
                    self.push(
                        Diagnostic::new(
                            Code::BounceRate,
                            format!("{path}.bounce_guard.max_bounce_rate"),
                            format!(
                                "a bounce rate of {} is not between 0 and 1",
                                guard.max_bounce_rate.0
                            ),
                        )
                        .with_help("write a fraction such as 0.05 or a percentage such as \"5%\""),
                    );
                    None
                }
                Some(guard) => Some(BounceGuard {
                    max_bounce_rate: guard.max_bounce_rate.0,
                    min_sent: guard.min_sent,
                }),
                None => None,
            };
            let smtp = match &value.smtp {
                None => None,
                Some(raw) => match self.smtp(path, value.kind, raw) {
                    Some(smtp) => Some(smtp),
                    None => {
                        ok = false;
                        None
                    }
                },
            };
            let webhook = match &value.webhook {
                None => None,
                Some(raw) => match self.webhook(path, value.kind, raw) {
                    Some(webhook) => Some(webhook),
                    None => {
                        ok = false;
                        None
                    }
                },
            };
            for (position, segment) in value.exclude_segments.iter().enumerate() {
                ok &= self.known(
                    &format!("{path}.exclude_segments[{position}]"),
                    "segment",
                    segment,
                    &segment_ids,
                );
            }
            if ok {
                channels.push(Channel {
                    id: entry.id.clone(),
                    name: value.name.clone().unwrap_or_else(|| entry.id.clone()),
                    kind: value.kind,
                    daily_cap: value.daily_cap,
                    free_per_day: value.free_per_day,
                    cost_per_1000: value.cost_per_1000,
                    per_account_daily_cap: value.per_account_daily_cap,
                    accounts: value.accounts.clone(),
                    fatigue,
                    fatigue_scope: value.fatigue_scope,
                    quiet_hours,
                    exclude_segments: value.exclude_segments.clone(),
                    bounce_guard,
                    daily_budget: value.daily_budget,
                    monthly_budget: value.monthly_budget,
                    unknown_outcome: value.unknown_outcome,
                    smtp,
                    webhook,
                    track_links: value.track_links,
                });
            }
        }
        channels
    }
}
