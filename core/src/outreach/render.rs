//! Rendering a planned send: the template chosen for the phase and stage in force when it goes,
//! the reach-out's segment and the customer's tier (`plan::template::select`, the function
//! validation uses), rendered with the environment validation used, HTML-escaped for mail.
//! A render that fails sends nothing: the send gets a typed reason instead.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::port::Message;
use super::state::Send;
use crate::campaign::timeline::local;
use crate::campaign::timeline::Step;
use crate::customer::book::{Customer, Symbols};
use crate::plan::model::{ChannelKind, PhaseKind, Plan, Template, TemplateChoice, TemplatePurpose};
use crate::plan::template::{environment, select, Query, Selection};
use crate::text::single_line;

/// The plan's templates, parsed once, for a batch of sends.
pub struct Renderer<'p> {
    plan: &'p Plan,
    environment: minijinja::Environment<'p>,
}

fn body_name(template: &Template) -> String {
    format!("body/{}", template.id)
}

fn subject_name(template: &Template) -> String {
    format!("subject/{}", template.id)
}

impl<'p> Renderer<'p> {
    /// Parses every template of the plan. Call it on a deep stack (`on_deep_stack`), as
    /// validation does.
    pub fn new(plan: &'p Plan) -> Renderer<'p> {
        let mut environment = environment(false);
        let html: std::collections::BTreeSet<String> = plan
            .templates
            .iter()
            .filter(|t| {
                plan.channel(&t.channel)
                    .is_some_and(|c| c.kind == ChannelKind::Mail)
            })
            .map(body_name)
            .collect();
        environment.set_auto_escape_callback(move |name| {
            if html.contains(name) {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for template in &plan.templates {
            // Validation parsed these; a failure shows when the template is used.
            let _ = environment.add_template_owned(body_name(template), template.body.clone());
            if let Some(subject) = &template.subject {
                let _ = environment.add_template_owned(subject_name(template), subject.clone());
            }
        }
        Renderer { plan, environment }
    }

    /// The template for a send going at `now` in `step`.
    pub fn choose(
        &self,
        send: &Send,
        tier: Option<&str>,
        step: Option<&Step>,
        now: DateTime<Utc>,
    ) -> Result<&'p Template, String> {
        let plan = self.plan;
        let planned = &send.planned;
        let reach_out = plan
            .reach_outs
            .iter()
            .find(|r| r.id == planned.reach_out)
            .ok_or_else(|| format!("the plan no longer has reach-out `{}`", planned.reach_out))?;
        let (purpose, choice) = if planned.attempt <= 1 {
            (TemplatePurpose::ReachOut, reach_out.template.clone())
        } else {
            let rule = planned
                .follow_up
                .as_ref()
                .and_then(|terms| plan.follow_ups.iter().find(|rule| rule.id == terms.rule));
            (
                TemplatePurpose::FollowUp,
                rule.map_or(TemplateChoice::Auto, |rule| rule.template.clone()),
            )
        };
        if let TemplateChoice::Fixed(id) = &choice {
            return plan
                .template(id)
                .ok_or_else(|| format!("the plan no longer has template `{id}`"));
        }
        let (phase, stage) = match step {
            Some(step) => (step.phase, step.stage.clone()),
            None => match plan.position_at(now) {
                Some((phase, stage)) => (phase, stage.map(str::to_string)),
                None => (PhaseKind::Prep, None),
            },
        };
        let query = Query {
            channel: &planned.channel,
            purpose,
            phase,
            stage: stage.as_deref(),
            segment: &reach_out.segment,
            tier,
        };
        match select(&plan.templates, &query) {
            Selection::One(template) => Ok(template),
            Selection::None => Err(format!(
                "no {} template fits channel {} in {}{}",
                purpose.as_str(),
                planned.channel,
                phase.label(),
                stage.map(|s| format!(" ({s} stage)")).unwrap_or_default()
            )),
            Selection::Ambiguous(list) => Err(format!(
                "templates {} fit equally",
                list.iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The message for a planned send, rendered whole or not at all.
    pub fn render(
        &self,
        send: &Send,
        customer: &Customer,
        symbols: &Symbols,
        step: Option<&Step>,
        now: DateTime<Utc>,
    ) -> Result<Message, String> {
        let plan = self.plan;
        let planned = &send.planned;
        let tier = customer.tier.map(|sym| symbols.name(sym));
        let template = self.choose(send, tier, step, now)?;
        let zone = plan.campaign.time_zone;
        let mut context: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
        // A field the customer lacks is left out, not filled with another field or an empty
        // text: `{{ customer.name | default("customer") }}` is how a template says what to write
        // instead (plan-format.md, "Template variables").
        let mut fields: BTreeMap<&str, String> =
            BTreeMap::from([("id", customer.id().to_string())]);
        for (field, value) in [
            ("name", customer.name()),
            ("company", customer.company()),
            ("email", customer.email()),
            ("tier", tier),
            ("owner", customer.owner.map(|s| symbols.name(s))),
            ("locale", customer.locale.map(|s| symbols.name(s))),
        ] {
            if let Some(value) = value {
                fields.insert(field, value.to_string());
            }
        }
        context.insert("customer", minijinja::Value::from_serialize(fields));
        context.insert(
            "campaign",
            minijinja::Value::from_serialize(BTreeMap::from([
                ("id", plan.campaign.id.clone()),
                ("name", plan.campaign.name.clone()),
                ("currency", plan.campaign.currency.clone()),
            ])),
        );
        let phase_kind = step
            .map(|s| s.phase)
            .or_else(|| plan.position_at(now).map(|(phase, _)| phase));
        let phase_name = phase_kind
            .and_then(|kind| plan.phase(kind))
            .map(|phase| phase.name.clone())
            .unwrap_or_default();
        context.insert(
            "phase",
            minijinja::Value::from_serialize(BTreeMap::from([("name", phase_name)])),
        );
        let stage = step
            .and_then(|s| s.stage.as_deref())
            .and_then(|id| plan.stage(id));
        let date =
            |instant: DateTime<Utc>| instant.with_timezone(&zone).format("%Y-%m-%d").to_string();
        let stage_fields = match stage {
            Some(stage) => BTreeMap::from([
                ("id", stage.id.clone()),
                ("name", stage.name.clone()),
                ("theme", stage.theme.clone()),
                // The instants, as the campaign's clock reads them: a stage may end at 21:00.
                ("starts", local(zone, stage.window.start)),
                ("ends", local(zone, stage.window.end)),
                ("first_day", date(stage.window.start)),
                // Windows are half-open: the last day is the one before the end instant.
                (
                    "last_day",
                    date(stage.window.end - chrono::Duration::milliseconds(1)),
                ),
            ]),
            None => BTreeMap::from([
                ("id", String::new()),
                ("name", String::new()),
                ("theme", String::new()),
                ("starts", String::new()),
                ("ends", String::new()),
                ("first_day", String::new()),
                ("last_day", String::new()),
            ]),
        };
        context.insert("stage", minijinja::Value::from_serialize(stage_fields));
        context.insert(
            "sender",
            minijinja::Value::from_serialize(BTreeMap::from([
                ("name", planned.account.clone()),
                ("account", planned.account.clone()),
            ])),
        );
        let reach_out_name = plan
            .reach_outs
            .iter()
            .find(|r| r.id == planned.reach_out)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        context.insert(
            "reach_out",
            minijinja::Value::from_serialize(BTreeMap::from([("name", reach_out_name)])),
        );
        if let Some(coupon) = template
            .coupon
            .as_deref()
            .and_then(|id| plan.offers.coupons.iter().find(|c| c.id == id))
        {
            let money =
                |value: crate::plan::values::Money| format!("{value} {}", plan.campaign.currency);
            context.insert(
                "coupon",
                minijinja::Value::from_serialize(BTreeMap::from([
                    ("name", coupon.name.clone()),
                    ("value", money(coupon.value)),
                    ("min_spend", coupon.min_spend.map(money).unwrap_or_default()),
                    ("code", coupon.code.clone().unwrap_or_default()),
                ])),
            );
        }
        // Built here from a slug and a percent-encoded id, so safe as it is: escaping it for
        // HTML would turn its slashes into entities.
        context.insert(
            "unsubscribe_url",
            minijinja::Value::from_safe_string(format!(
                "unsubscribe://{}/{}",
                super::links::percent_encoded(&plan.campaign.id),
                super::links::percent_encoded(customer.id())
            )),
        );
        let render = |name: String| -> Result<String, String> {
            let compiled = self
                .environment
                .get_template(&name)
                .map_err(|error| format!("template {}: {error}", template.id))?;
            compiled
                .render(&context)
                .map_err(|error| format!("template {}: {error}", template.id))
        };
        let body = render(body_name(template))?;
        // A subject is a header line: a customer's name with CR/LF in it must not add a header
        // (`Bcc:`), and a repaired subject would be another subject, so the send is refused
        // (`template_failed`, with this as its detail).
        let subject = match template.subject {
            Some(_) => {
                let subject = render(subject_name(template))?;
                single_line(&subject).map_err(|refused| {
                    format!("template {}: the subject {refused}", template.id)
                })?;
                Some(subject)
            }
            None => None,
        };
        let address: Vec<String> = match planned.kind {
            ChannelKind::Mail => customer.email().iter().map(|e| e.to_string()).collect(),
            _ => vec![customer.id().to_string()],
        };
        // Addresses and the sender are header-bound too.
        for header in address.iter().chain([&planned.account]) {
            single_line(header).map_err(|refused| format!("an address {refused}"))?;
        }
        Ok(Message {
            key: planned.key.clone(),
            campaign: plan.campaign.id.clone(),
            channel: planned.channel.clone(),
            kind: planned.kind,
            to: customer.id().to_string(),
            address,
            from: Some(planned.account.clone()),
            subject,
            body,
            template: Some(template.id.clone()),
            template_version: Some(template.version),
            reach_out: Some(planned.reach_out.clone()),
            attempt: Some(planned.attempt),
            at: now,
            document: None,
        })
    }
}
