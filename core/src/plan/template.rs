//! Templates: which variables a message may use, the check that a template parses and uses only
//! those, and the choice of one template for a message (the most specific that fits wins; two
//! equally specific fits are an ambiguity, reported at plan time). The same `select` is used when
//! planning and when sending.

use std::collections::BTreeSet;

use super::model::{PhaseKind, Template, TemplatePurpose};

/// Every variable a template may use. `coupon.*` needs the template to name its coupon.
pub const KNOWN_VARIABLES: &[&str] = &[
    "customer.id",
    "customer.name",
    "customer.company",
    "customer.email",
    "customer.tier",
    "customer.owner",
    "customer.locale",
    "campaign.id",
    "campaign.name",
    "campaign.currency",
    "phase.name",
    "stage.id",
    "stage.name",
    "stage.theme",
    "stage.starts",
    "stage.ends",
    "sender.name",
    "sender.account",
    "reach_out.name",
    "coupon.name",
    "coupon.value",
    "coupon.min_spend",
    "coupon.code",
    "unsubscribe_url",
];

/// Functions every template may call; they are not variables.
pub const GLOBAL_FUNCTIONS: &[&str] = &["range", "dict", "debug", "namespace"];

/// A template source that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    /// 1-based line within the template text.
    pub line: Option<usize>,
}

/// Parses a template and returns the variables it reads from outside (loop variables and `set`
/// names excluded), as dotted paths such as `customer.name`.
pub fn variables(source: &str) -> Result<BTreeSet<String>, SyntaxError> {
    let environment = minijinja::Environment::new();
    let template = environment
        .template_from_str(source)
        .map_err(|error| SyntaxError {
            message: error
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| error.kind().to_string()),
            line: error.line(),
        })?;
    Ok(template
        .undeclared_variables(true)
        .into_iter()
        .filter(|name| !GLOBAL_FUNCTIONS.contains(&name.split('.').next().unwrap_or(name)))
        .collect())
}

/// Renders a template as a send would, with a sample value for every known variable (and the
/// coupon's only when the template names one), failing on anything undefined: an unknown filter
/// or test, an `include` or `extends` (templates stand alone), a variable used in a way its value
/// does not allow. Call it once `variables` found nothing unknown.
pub fn dry_render(source: &str, with_coupon: bool, escape_html: bool) -> Result<(), SyntaxError> {
    use std::collections::BTreeMap;
    let mut environment = minijinja::Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    environment.set_auto_escape_callback(move |_| {
        if escape_html {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    let mut context: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
    let mut objects: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for variable in KNOWN_VARIABLES {
        if variable.starts_with("coupon.") && !with_coupon {
            continue;
        }
        match variable.split_once('.') {
            Some((object, field)) => {
                objects.entry(object).or_default().insert(field, "sample");
            }
            None => {
                context.insert(
                    variable,
                    minijinja::Value::from("https://example.invalid/u"),
                );
            }
        }
    }
    for (object, fields) in objects {
        context.insert(object, minijinja::Value::from_serialize(&fields));
    }
    let failure = |error: minijinja::Error| SyntaxError {
        message: error
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| error.kind().to_string()),
        line: error.line(),
    };
    let template = environment.template_from_str(source).map_err(failure)?;
    template.render(&context).map(|_| ()).map_err(failure)
}

/// What a message needs a template for.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub channel: &'a str,
    pub purpose: TemplatePurpose,
    pub phase: PhaseKind,
    pub stage: Option<&'a str>,
    pub segment: &'a str,
    pub tier: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub enum Selection<'t> {
    One(&'t Template),
    None,
    /// The most specific fits, none more specific than the others.
    Ambiguous(Vec<&'t Template>),
}

/// Which of phase, stage, segment and tier a template constrains. A template is more specific
/// than another when it constrains everything the other does and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Specificity {
    phase: bool,
    stage: bool,
    segment: bool,
    tier: bool,
}

impl Specificity {
    fn of(template: &Template) -> Self {
        Specificity {
            phase: template.phase.is_some() || template.stage.is_some(),
            stage: template.stage.is_some(),
            segment: !template.segments.is_empty(),
            tier: !template.tiers.is_empty(),
        }
    }

    fn covers(self, other: Specificity) -> bool {
        (self.phase || !other.phase)
            && (self.stage || !other.stage)
            && (self.segment || !other.segment)
            && (self.tier || !other.tier)
    }
}

pub fn fits(template: &Template, query: &Query<'_>) -> bool {
    template.channel == query.channel
        && template.purpose == query.purpose
        && template.phase.is_none_or(|phase| phase == query.phase)
        && template
            .stage
            .as_deref()
            .is_none_or(|stage| Some(stage) == query.stage)
        && (template.segments.is_empty() || template.segments.iter().any(|s| s == query.segment))
        && (template.tiers.is_empty()
            || query
                .tier
                .is_some_and(|tier| template.tiers.iter().any(|t| t == tier)))
}

/// Chooses the template for a message: among the templates that fit, the one more specific than
/// every other.
pub fn select<'t>(templates: &'t [Template], query: &Query<'_>) -> Selection<'t> {
    select_among(templates.iter().filter(|t| fits(t, query)))
}

impl Specificity {
    /// One of 16 classes: which of the four dimensions are constrained.
    fn class(self) -> usize {
        usize::from(self.phase)
            | usize::from(self.stage) << 1
            | usize::from(self.segment) << 2
            | usize::from(self.tier) << 3
    }

    fn from_class(class: usize) -> Self {
        Specificity {
            phase: class & 1 != 0,
            stage: class & 2 != 0,
            segment: class & 4 != 0,
            tier: class & 8 != 0,
        }
    }
}

/// The candidates no other candidate is more specific than. Linear: candidates fall into 16
/// classes of specificity, and classes are compared, not templates.
pub fn maximal<'t>(candidates: impl IntoIterator<Item = &'t Template>) -> Vec<&'t Template> {
    let mut classes: [Vec<&'t Template>; 16] = Default::default();
    for candidate in candidates {
        classes[Specificity::of(candidate).class()].push(candidate);
    }
    let present: Vec<usize> = (0..16)
        .filter(|class| !classes[*class].is_empty())
        .collect();
    let mut result = Vec::new();
    for &class in &present {
        let mine = Specificity::from_class(class);
        let dominated = present
            .iter()
            .any(|&other| other != class && Specificity::from_class(other).covers(mine));
        if !dominated {
            result.extend(classes[class].iter().copied());
        }
    }
    result
}

/// Chooses among templates already known to fit: the one more specific than every other.
pub fn select_among<'t>(candidates: impl IntoIterator<Item = &'t Template>) -> Selection<'t> {
    let best = maximal(candidates);
    match best.as_slice() {
        [] => Selection::None,
        [only] => Selection::One(only),
        // Two maximal templates are never comparable (or they would not both be maximal), and two
        // of one class are equally specific: either way, an ambiguity.
        _ => Selection::Ambiguous(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(id: &str, stage: Option<&str>, segments: &[&str], tiers: &[&str]) -> Template {
        Template {
            id: id.into(),
            channel: "mail".into(),
            purpose: TemplatePurpose::ReachOut,
            phase: stage.map(|_| PhaseKind::Burst),
            stage: stage.map(str::to_string),
            segments: segments.iter().map(|s| s.to_string()).collect(),
            tiers: tiers.iter().map(|s| s.to_string()).collect(),
            coupon: None,
            version: 1,
            subject: Some("s".into()),
            body: "b".into(),
            description: None,
        }
    }

    fn query<'a>(stage: &'a str, segment: &'a str, tier: Option<&'a str>) -> Query<'a> {
        Query {
            channel: "mail",
            purpose: TemplatePurpose::ReachOut,
            phase: PhaseKind::Burst,
            stage: Some(stage),
            segment,
            tier,
        }
    }

    fn chosen(selection: Selection<'_>) -> String {
        match selection {
            Selection::One(template) => template.id.clone(),
            Selection::None => "none".into(),
            Selection::Ambiguous(list) => {
                let ids: Vec<_> = list.iter().map(|t| t.id.as_str()).collect();
                format!("ambiguous {}", ids.join(","))
            }
        }
    }

    #[test]
    fn the_most_specific_template_wins() {
        let templates = vec![
            template("generic", None, &[], &[]),
            template("early", Some("early"), &[], &[]),
            template("early-vip", Some("early"), &["vip"], &[]),
        ];
        assert_eq!(
            chosen(select(&templates, &query("early", "vip", None))),
            "early-vip"
        );
        assert_eq!(
            chosen(select(&templates, &query("early", "pool", None))),
            "early"
        );
        assert_eq!(
            chosen(select(&templates, &query("late", "pool", None))),
            "generic"
        );
    }

    #[test]
    fn incomparable_fits_are_ambiguous() {
        let templates = vec![
            template("early", Some("early"), &[], &[]),
            template("vip", None, &["vip"], &[]),
        ];
        assert_eq!(
            chosen(select(&templates, &query("early", "vip", None))),
            "ambiguous early,vip"
        );
        let duplicates = vec![
            template("a", Some("early"), &[], &[]),
            template("b", Some("early"), &[], &[]),
        ];
        assert_eq!(
            chosen(select(&duplicates, &query("early", "x", None))),
            "ambiguous a,b"
        );
    }

    #[test]
    fn tier_templates_fit_only_their_tiers() {
        let templates = vec![
            template("any", None, &[], &[]),
            template("l1", None, &[], &["L1+"]),
        ];
        assert_eq!(
            chosen(select(&templates, &query("early", "x", Some("L1+")))),
            "l1"
        );
        assert_eq!(
            chosen(select(&templates, &query("early", "x", Some("L2")))),
            "any"
        );
        assert_eq!(
            chosen(select(&templates, &query("early", "x", None))),
            "any"
        );
        let only_tier = vec![template("l1", None, &[], &["L1+"])];
        assert_eq!(
            chosen(select(&only_tier, &query("early", "x", None))),
            "none"
        );
    }

    #[test]
    fn variables_are_read_from_the_source() {
        let found = variables(
            "Hi {{ customer.name }}, {% for x in [1] %}{{ x }}{% endfor %}{{ coupon.value }}",
        )
        .unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["coupon.value".to_string(), "customer.name".to_string()]
        );
        let error = variables("Hi {{ customer.name }").unwrap_err();
        assert_eq!(error.line, Some(1));
        let with_functions = variables("{% for n in range(3) %}{{ n }}{% endfor %}").unwrap();
        assert!(with_functions.is_empty(), "{with_functions:?}");
    }

    #[test]
    fn a_dry_render_fails_where_a_send_would() {
        assert!(dry_render(
            "Hi {{ customer.name | upper }} {{ unsubscribe_url }}",
            false,
            true
        )
        .is_ok());
        assert!(dry_render("{% for n in range(3) %}{{ n }}{% endfor %}", false, true).is_ok());
        for broken in [
            "{{ customer.name | nosuchfilter }}",
            "{% if customer.name is nosuchtest %}x{% endif %}",
            "{% include \"header\" %}",
            "{% extends \"base\" %}",
            "{{ coupon.value }}",
        ] {
            assert!(dry_render(broken, false, true).is_err(), "{broken}");
        }
        assert!(dry_render("{{ coupon.value }}", true, true).is_ok());
    }
}
