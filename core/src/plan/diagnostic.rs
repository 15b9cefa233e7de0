//! Diagnostics: every problem the validator finds, with a stable code, a severity, the key path it
//! concerns and, where the file is known, a line and column. Codes never change meaning once
//! published; `docs/diagnostics.md` explains each.

use std::fmt;
use std::ops::Range;

macro_rules! codes {
    ($($variant:ident = $code:literal, $severity:ident, $title:literal;)*) => {
        /// The stable code of a diagnostic. The number is what users search for and scripts match.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $title] $variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// `BP0204` and so on.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// One line saying what the rule is.
            pub fn title(self) -> &'static str {
                match self {
                    $(Code::$variant => $title,)*
                }
            }

            /// Whether this rule is an error (the plan is rejected) or advice.
            pub fn severity(self) -> Severity {
                match self {
                    $(Code::$variant => Severity::$severity,)*
                }
            }
        }
    };
}

codes! {
    Syntax = "BP0001", Error, "the file is not valid TOML";
    NotUtf8 = "BP0002", Error, "the file is not UTF-8 text";
    Empty = "BP0003", Error, "the file is empty";
    TooLarge = "BP0004", Error, "the file is larger than a plan can be";
    UnknownKey = "BP0005", Error, "a key the format does not know";
    InvalidValue = "BP0006", Error, "a value of the wrong type or form";
    MissingKey = "BP0007", Error, "a required key is missing";
    WrongShape = "BP0008", Error, "a section that must be a table is not";
    UnsupportedFormat = "BP0009", Error, "the plan is written for a newer format";
    UnknownReference = "BP0010", Error, "a reference to something the plan does not declare";
    InvalidId = "BP0011", Error, "an id that is not a slug";
    InvalidCampaignId = "BP0101", Error, "the campaign id is not a slug";
    UnknownTimeZone = "BP0102", Error, "the time zone is not an IANA zone name";
    InvalidCurrency = "BP0103", Error, "the currency is not written as an ISO 4217 code (three capital letters)";
    MissingPhase = "BP0201", Error, "prep, warm_up and burst are required";
    EmptyWindow = "BP0202", Error, "a window that ends before it starts";
    PhaseOverlap = "BP0203", Error, "phases out of order or overlapping";
    PhaseGap = "BP0204", Error, "a gap between phases that the plan does not declare";
    StageOutsideBurst = "BP0205", Error, "a stage outside the burst phase";
    StageOverlap = "BP0206", Error, "stages out of order or overlapping";
    StageGap = "BP0207", Error, "part of the burst phase is covered by no stage";
    NoStages = "BP0208", Error, "the burst phase has no stages";
    NonexistentLocalTime = "BP0209", Error, "a local time that the time zone skips (daylight saving)";
    AmbiguousLocalTime = "BP0210", Warning, "a local time that happens twice (daylight saving)";
    StageNameClash = "BP0211", Error, "a stage named like a phase";
    AnchorCycle = "BP0212", Error, "boundaries defined in terms of each other";
    RecurringTimeSkipped = "BP0213", Warning, "a recurring time of day the zone skips on some day";
    DueOutsidePhase = "BP0301", Error, "a task due outside its phase";
    ConflictingSchedule = "BP0302", Error, "a task schedule that says two things, or nothing";
    InvalidReminder = "BP0303", Error, "a reminder or escalation delay of zero";
    WorkstreamWithoutTasks = "BP0304", Warning, "a workstream with no tasks";
    RoleWithoutMembers = "BP0305", Warning, "a role with tasks but no members to remind";
    RoleOutsideWorkstream = "BP0306", Warning, "a task for a role its workstream does not list";
    StageOutsidePhase = "BP0307", Error, "a stage used with a phase other than burst";
    DuplicateReminder = "BP0308", Warning, "the same reminder lead time twice";
    TargetUnknownMetric = "BP0401", Error, "a target for a metric battleplan does not measure";
    TargetNotPositive = "BP0402", Error, "a target that is not a positive number";
    TargetNotWhole = "BP0403", Error, "a count target with decimals";
    TargetRate = "BP0404", Error, "a rate target that is not between 0 and 100%";
    SegmentKind = "BP0501", Error, "a segment must be exactly one of system, rule or list";
    ConditionSelector = "BP0502", Error, "a condition must have exactly one selector";
    ConditionOption = "BP0503", Error, "a condition option that does not fit its selector";
    EmptySegment = "BP0504", Error, "an empty customer list or rule";
    SegmentCycle = "BP0505", Error, "segments that include each other";
    DuplicateCustomer = "BP0506", Warning, "the same customer twice in a list";
    FreeAboveCap = "BP0601", Error, "a free quota above the daily cap";
    ZeroCap = "BP0602", Error, "a cap of zero";
    AccountsRequired = "BP0603", Error, "a per-account cap with no sending accounts";
    Unlimited = "BP0604", Warning, "a channel with no daily cap";
    NoFatigue = "BP0605", Warning, "a fatigue window of zero";
    EmptyQuietHours = "BP0606", Error, "quiet hours that start when they end";
    BounceRate = "BP0607", Error, "a bounce threshold outside (0, 1]";
    UnpricedVolume = "BP0608", Warning, "paid volume with no price";
    DuplicateAccount = "BP0609", Error, "the same sending account twice";
    PaidAboveCap = "BP0610", Warning, "free quota and cap that leave no paid volume but a price";
    SmtpNotMail = "BP0611", Error, "mail server settings on a channel that is not mail";
    PlainSmtpRemote = "BP0612", Error, "mail without TLS to a server that is not on this machine";
    SmtpPassword = "BP0613", Error, "a login without exactly one place to read its password";
    WebhookOnMail = "BP0614", Error, "webhook settings on a mail channel";
    WebhookAddress = "BP0615", Error, "a webhook address that is not https (or http on this machine)";
    WebhookSecret = "BP0616", Error, "a webhook without exactly one place to read its signing secret";
    RobotSecret = "BP0617", Error, "a robot without exactly one place to read its address, or a secret it cannot use";
    TemplateSyntax = "BP0701", Error, "a template that does not parse";
    UnknownVariable = "BP0702", Error, "a template variable battleplan does not provide";
    CouponVariable = "BP0703", Error, "coupon variables in a template that names no coupon";
    MissingSubject = "BP0704", Error, "a mail template without a subject";
    NoUnsubscribeLink = "BP0705", Warning, "a mail template without an unsubscribe link";
    EmptyTemplate = "BP0706", Error, "a template with an empty body";
    TemplateVersion = "BP0707", Error, "a template version of zero";
    OptionalVariable = "BP0708", Warning, "a template that cannot render for a customer without a name, a company, ...";
    NoTemplate = "BP0801", Error, "no template for a phase, stage, segment or tier a message will go out in";
    AmbiguousTemplate = "BP0802", Error, "two templates equally fit the same message";
    TemplateChannel = "BP0803", Error, "a template used on a channel it is not written for";
    TemplateOutOfWindow = "BP0804", Warning, "a fixed template meant for another phase, stage or segment";
    WindowOutsideCampaign = "BP0805", Error, "a window outside the campaign";
    AccountNotOnChannel = "BP0806", Error, "a sending account the channel does not have";
    FollowUpLimits = "BP0807", Error, "a follow-up with no delay, or no or too many attempts";
    TemplatePurposeMismatch = "BP0808", Error, "a follow-up template used for a first message, or the reverse";
    FollowUpInsideFatigue = "BP0809", Warning, "a follow-up due before the channel's fatigue window has passed";
    WindowInGap = "BP0810", Error, "a window that reaches into a gap between phases or stages";
    WindowAllQuiet = "BP0811", Warning, "a reach-out window that lies wholly in its channel's quiet hours";
    NegativeAmount = "BP0912", Error, "a price, cost or threshold of zero or less";
    TooManyTiers = "BP0901", Error, "more than 3 spend tiers";
    TiersNotIncreasing = "BP0902", Error, "spend tiers that do not strictly increase";
    TierThreshold = "BP0903", Warning, "a first tier outside 10-30% above the average order value";
    DiscountTooDeep = "BP0904", Error, "a discounted price below 1% of list or below 1.00";
    DiscountNotLower = "BP0905", Error, "a discounted price not below the list price";
    NotListed = "BP0906", Error, "an item not listed for the whole discount";
    BundleSize = "BP0907", Error, "a bundle with fewer than 2 or more than 5 items";
    BundleNotCheaper = "BP0908", Error, "a bundle price not below the sum of its items";
    TooManyBundles = "BP0909", Error, "more than 50 bundles";
    CouponValue = "BP0910", Error, "a coupon worth nothing, or as much as its threshold";
    CouponThreshold = "BP0911", Error, "a spend-threshold coupon without a threshold";
    ReportSchedule = "BP1001", Error, "a report schedule that is not a weekday and a time of day";
    ReportRecipients = "BP1002", Error, "a report sent to no role";
}

impl fmt::Display for Code {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// The key path the problem concerns, e.g. `tasks.pick-high-potential.due`; empty for the
    /// file as a whole.
    pub path: String,
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
    pub message: String,
    /// A hint on how to fix it: a suggestion for a misspelt name, the key to set.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            path: path.into(),
            span: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_span(mut self, span: Option<Range<usize>>) -> Self {
        self.span = span;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Turns byte offsets into 1-based line and column (in characters).
#[derive(Debug, Clone)]
pub struct LineIndex {
    line_starts: Vec<usize>,
    text: String,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
        LineIndex {
            line_starts,
            text: text.to_string(),
        }
    }

    /// The 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(line_start..offset)
            .map(|prefix| prefix.chars().count())
            .unwrap_or(offset - line_start)
            + 1;
        (line.max(1), column)
    }
}

/// Renders diagnostics the way `battleplan validate` prints them:
/// `plan.toml:12:9: error[BP0204] phases.warm_up.start: message`, then `  help: ...`.
pub fn render(file_name: &str, index: Option<&LineIndex>, diagnostic: &Diagnostic) -> String {
    let mut location = file_name.to_string();
    if let (Some(index), Some(span)) = (index, &diagnostic.span) {
        let (line, column) = index.line_column(span.start);
        location = format!("{location}:{line}:{column}");
    }
    let mut out = format!("{location}: {}[{}]", diagnostic.severity, diagnostic.code);
    if !diagnostic.path.is_empty() {
        out.push(' ');
        out.push_str(&diagnostic.path);
    }
    out.push_str(": ");
    out.push_str(&diagnostic.message);
    if let Some(help) = &diagnostic.help {
        out.push_str("\n  help: ");
        out.push_str(help);
    }
    out
}

/// The closest name to `wrong` among `candidates`, if one is close enough to be a likely typo.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Names people type are short; comparing long texts costs time and suggests nothing useful.
    const LONGEST: usize = 100;
    if wrong.len() > LONGEST {
        return None;
    }
    // Suggesting among thousands of names costs more than it helps; a list that long is shown
    // in the plan itself.
    const MOST_CANDIDATES: usize = 2_000;
    let candidates: Vec<&'a str> = candidates.into_iter().take(MOST_CANDIDATES + 1).collect();
    if candidates.len() > MOST_CANDIDATES {
        return None;
    }
    let wrong_lower = wrong.to_lowercase();
    candidates
        .into_iter()
        .filter(|candidate| candidate.len() <= LONGEST)
        .map(|candidate| {
            let distance = strsim::damerau_levenshtein(&wrong_lower, &candidate.to_lowercase());
            (distance, candidate)
        })
        .filter(|(distance, candidate)| {
            let longest = wrong.chars().count().max(candidate.chars().count());
            *distance <= (longest / 3).max(1)
        })
        .min_by_key(|(distance, candidate)| (*distance, *candidate))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is used twice");
            assert_eq!(text.len(), 6);
            assert!(text.starts_with("BP") && text[2..].chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        let index = LineIndex::new("a = 1\nname = \"促销\" x\n");
        assert_eq!(index.line_column(0), (1, 1));
        assert_eq!(index.line_column(6), (2, 1));
        let offset = "a = 1\nname = \"促销\" ".len();
        assert_eq!(index.line_column(offset), (2, 13));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = ["time_zone", "currency", "name"];
        assert_eq!(suggest("timezone", keys), Some("time_zone"));
        assert_eq!(suggest("currnecy", keys), Some("currency"));
        assert_eq!(suggest("budget", keys), None);
    }
}
