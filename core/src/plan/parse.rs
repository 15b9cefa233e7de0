//! From bytes to a [`RawPlan`]: size and encoding checks, TOML syntax with line and column, an
//! index from key paths to byte ranges, every unknown key, and each entry deserialized on its own
//! so that one bad entry never hides the problems of another.

use std::collections::HashMap;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use toml_edit::{ImDocument, Item, TableLike, Value};

use super::diagnostic::{suggest, Code, Diagnostic};
use super::raw::*;

/// Plans are written by people; anything larger is a mistake (a customer list pasted in, the
/// wrong file). Customers come through imports, not the plan.
pub const MAX_PLAN_BYTES: usize = 4 * 1024 * 1024;

/// The current plan format. A plan may say `format = 1`; a larger number is refused.
pub const PLAN_FORMAT: i64 = 1;

const TOP_LEVEL_KEYS: &[&str] = &[
    "format",
    "campaign",
    "phases",
    "stages",
    "roles",
    "workstreams",
    "tasks",
    "targets",
    "segments",
    "channels",
    "templates",
    "reach_outs",
    "follow_ups",
    "offers",
    "reports",
];

const PHASE_KEYS: &[&str] = &["prep", "warm_up", "burst", "review"];

const OFFER_KEYS: &[&str] = &["coupons", "tiered", "discounts", "bundles"];

const REPORT_KEYS: &[&str] = &["weekly"];

/// Byte ranges of keys and values by their dotted path (`tasks.x.due`, `offers.tiered.a.tiers[1]`).
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    keys: HashMap<String, Range<usize>>,
    values: HashMap<String, Range<usize>>,
}

impl SpanIndex {
    /// Where the key of `path` is written; falls back to the nearest enclosing path.
    pub fn key(&self, path: &str) -> Option<Range<usize>> {
        self.lookup(path, true)
    }

    /// Where the value of `path` is written; falls back to its key, then to the nearest
    /// enclosing path.
    pub fn value(&self, path: &str) -> Option<Range<usize>> {
        self.lookup(path, false)
    }

    fn lookup(&self, path: &str, key_first: bool) -> Option<Range<usize>> {
        let mut current = path;
        loop {
            let (first, second) = if key_first {
                (&self.keys, &self.values)
            } else {
                (&self.values, &self.keys)
            };
            if let Some(span) = first.get(current).or_else(|| second.get(current)) {
                return Some(span.clone());
            }
            let cut = current.rfind(['.', '['])?;
            current = &current[..cut];
        }
    }

    fn record(&mut self, path: &str, key: Option<Range<usize>>, value: Option<Range<usize>>) {
        if let Some(key) = key {
            self.keys.entry(path.to_string()).or_insert(key);
        }
        if let Some(value) = value {
            self.values.entry(path.to_string()).or_insert(value);
        }
    }

    fn index_table(&mut self, prefix: &str, table: &dyn TableLike) {
        for (name, item) in table.iter() {
            let path = join(prefix, name);
            let key_span = table.key(name).and_then(|key| key.span());
            self.record(&path, key_span, item.span());
            self.index_item(&path, item);
        }
    }

    fn index_item(&mut self, path: &str, item: &Item) {
        match item {
            Item::Table(table) => self.index_table(path, table),
            Item::ArrayOfTables(array) => {
                for (position, table) in array.iter().enumerate() {
                    let element = format!("{path}[{position}]");
                    self.record(&element, None, table.span());
                    self.index_table(&element, table);
                }
            }
            Item::Value(value) => self.index_value(path, value),
            Item::None => {}
        }
    }

    fn index_value(&mut self, path: &str, value: &Value) {
        match value {
            Value::InlineTable(table) => self.index_table(path, table),
            Value::Array(array) => {
                for (position, element) in array.iter().enumerate() {
                    let element_path = format!("{path}[{position}]");
                    self.record(&element_path, None, element.span());
                    self.index_value(&element_path, element);
                }
            }
            _ => {}
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// What parsing produced: the raw plan (as far as it could be read), the span index for
/// locating later diagnostics, and the diagnostics found so far.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub raw: RawPlan,
    pub spans: SpanIndex,
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks size, emptiness and encoding. The text is returned only if it can be parsed.
pub fn decode(bytes: &[u8]) -> Result<&str, Diagnostic> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let valid = error.valid_up_to();
        Diagnostic::new(
            Code::NotUtf8,
            "",
            format!("the file is not UTF-8 text: byte {valid} cannot be read"),
        )
        .with_span(Some(valid..valid))
        .with_help("save the plan as UTF-8; is this the right file?")
    })?;
    if text.trim().is_empty() {
        return Err(Diagnostic::new(Code::Empty, "", "the file is empty")
            .with_help("`battleplan init` writes a complete example plan to start from"));
    }
    Ok(text)
}

/// The diagnostic for a file of `length` bytes, above [`MAX_PLAN_BYTES`]. Callers that can see
/// the length before reading use it to avoid reading a huge file at all.
pub fn too_large(length: u64) -> Diagnostic {
    Diagnostic::new(
        Code::TooLarge,
        "",
        format!(
            "the file is {:.1} MiB; a plan is at most {} MiB",
            length as f64 / (1024.0 * 1024.0),
            MAX_PLAN_BYTES / (1024 * 1024)
        ),
    )
    .with_help("customers and outcomes are imported with `battleplan customers import`, not written in the plan")
}

/// Parses TOML text into a raw plan, collecting every problem of syntax, shape and type.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let document = match ImDocument::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let message = error
                .message()
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let message = if message.is_empty() {
                "invalid TOML".to_string()
            } else {
                message
            };
            parsed
                .diagnostics
                .push(Diagnostic::new(Code::Syntax, "", message).with_span(error.span()));
            return parsed;
        }
    };
    let root = document.as_table();
    parsed.spans.index_table("", root);
    let mut reader = Reader {
        spans: &parsed.spans,
        diagnostics: &mut parsed.diagnostics,
    };
    reader.unknown_keys("", root, TOP_LEVEL_KEYS);
    let raw = &mut parsed.raw;
    if let Some(item) = root.get("format") {
        match item.as_integer() {
            Some(format) if (1..=PLAN_FORMAT).contains(&format) => raw.format = Some(format),
            Some(format) if format > PLAN_FORMAT => reader.push(Diagnostic::new(
                Code::UnsupportedFormat,
                "format",
                format!("this plan is written for plan format {format}; this battleplan reads format {PLAN_FORMAT}"),
            ).with_help("upgrade battleplan, or write the plan for this version's format")),
            _ => reader.push(Diagnostic::new(
                Code::InvalidValue,
                "format",
                format!("`format` is the plan format number; this battleplan reads format {PLAN_FORMAT}"),
            )),
        }
    }
    raw.time_zone_hint = root
        .get("campaign")
        .and_then(|campaign| campaign.get("time_zone"))
        .and_then(|zone| zone.as_str())
        .map(str::to_string);
    match root.get("campaign") {
        Some(item) => raw.campaign = reader.entry::<RawCampaign>("campaign", item, true),
        None => reader.push(
            Diagnostic::new(Code::MissingKey, "", "missing required section [campaign]")
                .with_help("every plan starts with [campaign]: id, name, time_zone, currency"),
        ),
    }
    if let Some(table) = reader.section(root, "phases") {
        reader.unknown_keys("phases", table, PHASE_KEYS);
        // Keys that are not phases were reported as unknown; they are not read as phases too.
        raw.phases = reader.entries(table, "phases", true, |id| PHASE_KEYS.contains(&id));
    }
    if let Some(table) = reader.section(root, "stages") {
        raw.stages = reader.entries(table, "stages", true, |_| true);
    }
    if let Some(table) = reader.section(root, "roles") {
        raw.roles = reader.entries(table, "roles", true, |_| true);
    }
    if let Some(table) = reader.section(root, "workstreams") {
        raw.workstreams = reader.entries(table, "workstreams", true, |_| true);
    }
    if let Some(table) = reader.section(root, "tasks") {
        raw.tasks = reader.entries(table, "tasks", true, |_| true);
    }
    if let Some(table) = reader.section(root, "targets") {
        // Target keys are metric names, checked with suggestions in validation.
        raw.targets = reader.entries(table, "targets", false, |_| true);
    }
    if let Some(table) = reader.section(root, "segments") {
        raw.segments = reader.entries(table, "segments", true, |_| true);
    }
    if let Some(table) = reader.section(root, "channels") {
        raw.channels = reader.entries(table, "channels", true, |_| true);
    }
    if let Some(table) = reader.section(root, "templates") {
        raw.templates = reader.entries(table, "templates", true, |_| true);
    }
    if let Some(table) = reader.section(root, "reach_outs") {
        raw.reach_outs = reader.entries(table, "reach_outs", true, |_| true);
    }
    if let Some(table) = reader.section(root, "follow_ups") {
        raw.follow_ups = reader.entries(table, "follow_ups", true, |_| true);
    }
    if let Some(offers) = reader.section(root, "offers") {
        reader.unknown_keys("offers", offers, OFFER_KEYS);
        if let Some(table) = reader.section(offers, "offers.coupons") {
            raw.coupons = reader.entries(table, "offers.coupons", true, |_| true);
        }
        if let Some(table) = reader.section(offers, "offers.tiered") {
            raw.tiered = reader.entries(table, "offers.tiered", true, |_| true);
        }
        if let Some(table) = reader.section(offers, "offers.discounts") {
            raw.discounts = reader.entries(table, "offers.discounts", true, |_| true);
        }
        if let Some(table) = reader.section(offers, "offers.bundles") {
            raw.bundles = reader.entries(table, "offers.bundles", true, |_| true);
        }
    }
    if let Some(reports) = reader.section(root, "reports") {
        reader.unknown_keys("reports", reports, REPORT_KEYS);
        if let Some(item) = reports.get("weekly") {
            raw.weekly_report = reader.entry::<RawWeeklyReport>("reports.weekly", item, true);
        }
    }
    parsed
}

struct Reader<'a> {
    spans: &'a SpanIndex,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn push(&mut self, diagnostic: Diagnostic) {
        let span = diagnostic
            .span
            .clone()
            .or_else(|| self.spans.value(&diagnostic.path));
        self.diagnostics.push(diagnostic.with_span(span));
    }

    /// A sub-table of `parent`, or a diagnostic when the key holds something else.
    fn section<'t>(&mut self, parent: &'t dyn TableLike, path: &str) -> Option<&'t dyn TableLike> {
        let name = path.rsplit('.').next().unwrap_or(path);
        let item = parent.get(name)?;
        match item.as_table_like() {
            Some(table) => Some(table),
            None => {
                self.push(Diagnostic::new(
                    Code::WrongShape,
                    path,
                    format!("`{path}` must be a table of entries, like [{path}.ID]"),
                ));
                None
            }
        }
    }

    fn unknown_keys(&mut self, prefix: &str, table: &dyn TableLike, known: &[&str]) {
        for (name, _) in table.iter() {
            if known.contains(&name) {
                continue;
            }
            let path = join(prefix, name);
            let mut diagnostic = Diagnostic::new(
                Code::UnknownKey,
                path.clone(),
                format!("unknown key `{name}`"),
            )
            .with_span(self.spans.key(&path));
            diagnostic = match suggest(name, known.iter().copied()) {
                Some(candidate) => diagnostic.with_help(format!("did you mean `{candidate}`?")),
                None => diagnostic.with_help(format!("known keys here: {}", known.join(", "))),
            };
            self.diagnostics.push(diagnostic);
        }
    }

    fn entries<T: DeserializeOwned>(
        &mut self,
        table: &dyn TableLike,
        prefix: &str,
        check_keys: bool,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<Entry<T>> {
        table
            .iter()
            .filter(|(id, _)| wanted(id))
            .map(|(id, item)| {
                let path = join(prefix, id);
                let value = self.entry::<T>(&path, item, check_keys);
                Entry {
                    id: id.to_string(),
                    path,
                    value,
                }
            })
            .collect()
    }

    /// Deserializes one entry on its own, reporting its unknown keys and its first type error.
    fn entry<T: DeserializeOwned>(
        &mut self,
        path: &str,
        item: &Item,
        check_keys: bool,
    ) -> Option<T> {
        let Some(table) = item.as_table_like() else {
            self.push(Diagnostic::new(
                Code::WrongShape,
                path,
                format!("`{path}` must be a table"),
            ));
            return None;
        };
        if check_keys {
            let known = fields_of::<T>();
            self.unknown_keys(path, table, known);
        }
        let value = item.clone().into_value().ok()?;
        match serde_path_to_error::deserialize::<_, T>(value.into_deserializer()) {
            Ok(value) => Some(value),
            Err(error) => {
                let mut inner_path = String::new();
                for segment in error.path().iter() {
                    match segment {
                        serde_path_to_error::Segment::Seq { index } => {
                            inner_path.push_str(&format!("[{index}]"))
                        }
                        serde_path_to_error::Segment::Map { key } => {
                            if key.starts_with("$__toml_private") {
                                continue;
                            }
                            inner_path.push('.');
                            inner_path.push_str(key);
                        }
                        serde_path_to_error::Segment::Enum { .. }
                        | serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let full_path = format!("{path}{inner_path}");
                let diagnostic =
                    explain_serde_error(&full_path, error.inner().message(), self.spans);
                self.diagnostics.push(diagnostic);
                None
            }
        }
    }
}

/// Rewrites serde's messages into the plan's words, with a code and a suggestion where serde
/// lists what it expected.
fn explain_serde_error(path: &str, message: &str, spans: &SpanIndex) -> Diagnostic {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return Diagnostic::new(
            Code::MissingKey,
            path,
            format!("missing required key `{field}`"),
        )
        .with_span(spans.key(path));
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let expected = expected_names(rest);
        // The path may already end at the unknown key.
        let key_path = if path.ends_with(&format!(".{field}")) {
            path.to_string()
        } else {
            format!("{path}.{field}")
        };
        let diagnostic = Diagnostic::new(
            Code::UnknownKey,
            key_path.clone(),
            format!("unknown key `{field}`"),
        )
        .with_span(spans.key(&key_path));
        return match suggest(field, expected.iter().map(String::as_str)) {
            Some(candidate) => diagnostic.with_help(format!("did you mean `{candidate}`?")),
            None => diagnostic.with_help(format!("known keys here: {}", expected.join(", "))),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or(rest);
        let expected = expected_names(rest);
        let diagnostic = Diagnostic::new(
            Code::InvalidValue,
            path,
            format!("`{variant}` is not one of: {}", expected.join(", ")),
        )
        .with_span(spans.value(path));
        return match suggest(variant, expected.iter().map(String::as_str)) {
            Some(candidate) => diagnostic.with_help(format!("did you mean `{candidate}`?")),
            None => diagnostic,
        };
    }
    Diagnostic::new(Code::InvalidValue, path, humanize(message)).with_span(spans.value(path))
}

/// The names serde lists after "expected": "expected one of `a`, `b`" or "expected `a` or `b`".
fn expected_names(rest: &str) -> Vec<String> {
    let Some((_, expected)) = rest.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn humanize(message: &str) -> String {
    let mut text = message.trim().to_string();
    for (serde_words, plan_words) in [
        ("invalid type: ", "wrong type: found "),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected a text in quotes"),
        ("expected a sequence", "expected a list [ ... ]"),
        ("invalid value: integer", "invalid value: the number"),
        ("floating point", "a decimal number"),
        ("sequence", "list"),
    ] {
        text = text.replace(serde_words, plan_words);
    }
    // serde names the Rust type it expected ("expected struct RawQuietHours"): say "a table".
    if let Some(at) = text.find("expected struct ") {
        text.truncate(at);
        text.push_str("expected a table { ... }");
    }
    text
}

/// The field names a derived `Deserialize` struct accepts, read from serde's own description of
/// the struct so that the list can never drift from the struct.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Collector<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Collector<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields collected"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The error is the point: the collector stops as soon as serde names the fields.
    let _ = T::deserialize(Collector(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_the_struct() {
        let fields = fields_of::<RawCampaign>();
        assert!(fields.contains(&"time_zone"));
        assert!(fields.contains(&"currency"));
        assert!(!fields.contains(&"timezone"));
    }

    #[test]
    fn spans_are_indexed_by_path() {
        let text = "[campaign]\nid = \"a\"\n[tasks.t1]\nremind = [\"1d\", \"2h\"]\n";
        let parsed = parse(text);
        let span = parsed.spans.value("tasks.t1.remind[1]").unwrap();
        assert_eq!(&text[span], "\"2h\"");
        let key = parsed.spans.key("tasks.t1.remind").unwrap();
        assert_eq!(&text[key], "remind");
        // An unknown deeper path falls back to its nearest ancestor.
        let fallback = parsed.spans.key("tasks.t1.remind.nothing").unwrap();
        assert_eq!(&text[fallback], "remind");
    }
}
