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
    "stage.first_day",
    "stage.last_day",
    "sender.name",
    "sender.account",
    "reach_out.name",
    "coupon.name",
    "coupon.value",
    "coupon.min_spend",
    "coupon.code",
    "unsubscribe_url",
];

/// The customer's fields an import may leave out. A customer without one has no such variable
/// (it is undefined, not empty), so `{{ customer.name | default("customer") }}` gives the
/// fallback and a bare `{{ customer.name }}` fails to render for them (the send is not sent,
/// with the reason `template_failed`); validation warns about such templates (BP0708).
pub const OPTIONAL_CUSTOMER_VARIABLES: &[&str] = &[
    "customer.name",
    "customer.company",
    "customer.email",
    "customer.tier",
    "customer.owner",
    "customer.locale",
];

/// Functions every template may call; they are not variables.
pub const GLOBAL_FUNCTIONS: &[&str] = &["range", "dict", "namespace"];

/// The longest subject or body: a message, not a document. Keeps parsing and rendering bounded.
pub const MAX_TEMPLATE_BYTES: usize = 32 * 1024;

/// Instructions a dry render may run: far more than any message needs, few enough that a loop
/// over loops cannot stall validation.
const RENDER_FUEL: u64 = 200_000;

/// Stack for parsing and rendering: minijinja recurses once per operator of an expression, and a
/// 32 KiB text of unary minuses is 32,000 levels deep.
const TEMPLATE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// The template language battleplan offers: Jinja syntax with the everyday filters, tests and
/// functions, and none that allocate whatever a template asks (`batch`, `indent`, `format`, ...).
/// Sending uses the same environment, so a template that validates renders the same way.
pub fn environment<'source>(escape_html: bool) -> minijinja::Environment<'source> {
    use minijinja::{filters, functions, tests};
    let mut environment = minijinja::Environment::empty();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    environment.set_fuel(Some(RENDER_FUEL));
    environment.set_auto_escape_callback(move |_| {
        if escape_html {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    environment.add_filter("upper", filters::upper);
    environment.add_filter("lower", filters::lower);
    environment.add_filter("title", filters::title);
    environment.add_filter("capitalize", filters::capitalize);
    environment.add_filter("trim", filters::trim);
    environment.add_filter("replace", filters::replace);
    environment.add_filter("length", filters::length);
    environment.add_filter("reverse", filters::reverse);
    environment.add_filter("join", filters::join);
    environment.add_filter("default", filters::default);
    environment.add_filter("d", filters::default);
    environment.add_filter("abs", filters::abs);
    environment.add_filter("int", filters::int);
    environment.add_filter("float", filters::float);
    environment.add_filter("round", filters::round);
    environment.add_filter("first", filters::first);
    environment.add_filter("last", filters::last);
    environment.add_filter("sort", filters::sort);
    environment.add_filter("list", filters::list);
    environment.add_filter("escape", filters::escape);
    environment.add_filter("e", filters::escape);
    environment.add_filter("safe", filters::safe);
    environment.add_test("defined", tests::is_defined);
    environment.add_test("undefined", tests::is_undefined);
    environment.add_test("none", tests::is_none);
    environment.add_test("number", tests::is_number);
    environment.add_test("string", tests::is_string);
    environment.add_test("odd", tests::is_odd);
    environment.add_test("even", tests::is_even);
    environment.add_function("range", functions::range);
    environment.add_function("dict", functions::dict);
    environment.add_function("namespace", functions::namespace);
    environment
}

thread_local! {
    /// Set on threads started by `on_deep_stack`, where templates need no thread of their own.
    static DEEP_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work` on a thread whose stack is deep enough for any template under the size limit.
/// Plan validation runs whole on one such thread; template functions called from anywhere else
/// start their own.
pub fn on_deep_stack<T: Send>(work: impl FnOnce() -> T + Send) -> Option<T> {
    if DEEP_STACK.with(std::cell::Cell::get) {
        return Some(work());
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(TEMPLATE_STACK_BYTES)
            .spawn_scoped(scope, || {
                DEEP_STACK.with(|deep| deep.set(true));
                work()
            })
            .ok()?
            .join()
            .ok()
    })
}

fn with_template_stack<T: Send>(
    work: impl FnOnce() -> Result<T, SyntaxError> + Send,
) -> Result<T, SyntaxError> {
    on_deep_stack(work).unwrap_or_else(|| {
        Err(SyntaxError {
            message: "the template could not be checked".into(),
            line: None,
        })
    })
}

/// The most a message may render to; a template producing more is refused (fuel bounds the
/// steps a render takes, not the bytes each step writes).
const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Counts rendered bytes, and fails past `MAX_RENDERED_BYTES`.
struct OutputLimit {
    written: usize,
}

impl std::io::Write for OutputLimit {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.written += bytes.len();
        if self.written > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other(format!(
                "the message renders to more than {} KiB",
                MAX_RENDERED_BYTES / 1024
            )));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn syntax_error(error: minijinja::Error) -> SyntaxError {
    SyntaxError {
        message: error
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| error.kind().to_string()),
        line: error.line(),
    }
}

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
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(SyntaxError {
            message: format!(
                "{} bytes is longer than a message template may be ({} KiB)",
                source.len(),
                MAX_TEMPLATE_BYTES / 1024
            ),
            line: None,
        });
    }
    with_template_stack(|| {
        let environment = environment(false);
        let template = environment
            .template_from_str(source)
            .map_err(syntax_error)?;
        Ok(template
            .undeclared_variables(true)
            .into_iter()
            .filter(|name| !GLOBAL_FUNCTIONS.contains(&name.split('.').next().unwrap_or(name)))
            .collect())
    })
}

/// Renders a template as a send would, with a sample value for every known variable (and the
/// coupon's only when the template names one), failing on anything undefined: an unknown filter
/// or test, an `include` or `extends` (templates stand alone), a variable used in a way its value
/// does not allow. Call it once `variables` found nothing unknown.
pub fn dry_render(source: &str, with_coupon: bool, escape_html: bool) -> Result<(), SyntaxError> {
    dry_render_without(source, with_coupon, escape_html, None)
}

/// Renders a template as [`dry_render`] does, for a customer who lacks `missing` (one of
/// [`OPTIONAL_CUSTOMER_VARIABLES`]): whether the template copes with a customer without it.
pub fn dry_render_without(
    source: &str,
    with_coupon: bool,
    escape_html: bool,
    missing: Option<&str>,
) -> Result<(), SyntaxError> {
    use std::collections::BTreeMap;
    let mut objects: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut context: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
    for variable in KNOWN_VARIABLES {
        if variable.starts_with("coupon.") && !with_coupon || Some(*variable) == missing {
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
    with_template_stack(move || {
        let environment = environment(escape_html);
        let template = environment
            .template_from_str(source)
            .map_err(syntax_error)?;
        template
            .render_captured_to(&context, OutputLimit { written: 0 })
            .map(|_| ())
            .map_err(|error| {
                if error.kind() == minijinja::ErrorKind::WriteFailure {
                    SyntaxError {
                        message: format!(
                            "the message renders to more than {} KiB",
                            MAX_RENDERED_BYTES / 1024
                        ),
                        line: error.line(),
                    }
                } else {
                    syntax_error(error)
                }
            })
    })
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
    fits_context(template, query)
        && (template.tiers.is_empty()
            || query
                .tier
                .is_some_and(|tier| template.tiers.iter().any(|t| t == tier)))
}

/// Whether a template fits everything about a message but its tier.
pub fn fits_context(template: &Template, query: &Query<'_>) -> bool {
    template.channel == query.channel
        && template.purpose == query.purpose
        && template.phase.is_none_or(|phase| phase == query.phase)
        && template
            .stage
            .as_deref()
            .is_none_or(|stage| Some(stage) == query.stage)
        && (template.segments.is_empty() || template.segments.iter().any(|s| s == query.segment))
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

    #[test]
    fn a_customer_without_a_name_has_no_name_variable() {
        let missing = Some("customer.name");
        // A fallback applies when the name is missing, not only when it is undefined in the
        // plan: the name is left out, never replaced by the company or the id.
        for copes in [
            "Dear {{ customer.name | default(\"customer\") }},",
            "{% if customer.name is defined %}Dear {{ customer.name }},{% endif %}",
            "Dear {{ customer.company }},",
        ] {
            assert!(
                dry_render_without(copes, false, true, missing).is_ok(),
                "{copes}"
            );
        }
        assert!(dry_render_without("Dear {{ customer.name }},", false, true, missing).is_err());
        assert!(dry_render_without("Dear {{ customer.name }},", false, true, None).is_ok());
    }

    #[test]
    fn templates_cannot_exhaust_memory_stack_or_time() {
        // Filters that allocate what the template asks are not offered.
        for greedy in [
            "{{ range(3)|batch(9999999999999) }}",
            "{{ \"a\"|indent(9999999999999) }}",
            "{{ \"%99999999999d\"|format(1) }}",
        ] {
            assert!(dry_render(greedy, false, false).is_err(), "{greedy}");
        }
        // A long chain of operators parses on a deep stack instead of overflowing.
        let chain = format!("{{{{ {}1 }}}}", "-".repeat(22_000));
        assert!(variables(&chain).is_ok());
        // Past the size limit, a template is refused unread.
        assert!(variables(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).is_err());
        // A message that would render to megabytes is refused before it does.
        let huge = "{% set s = \"x\" * 100000 %}{% for i in range(100000) %}{{ s }}{% endfor %}";
        assert!(dry_render(huge, false, false).is_err());
        // Loops over loops run out of fuel.
        let busy =
            "{% for a in range(3000) %}{% for b in range(3000) %}{{ b }}{% endfor %}{% endfor %}";
        assert!(dry_render(busy, false, false).is_err());
    }
}
