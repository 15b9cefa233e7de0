//! Small value types of the plan format: durations ("3d"), instants written as local dates or as
//! expressions anchored on phase and stage boundaries ("prep.end - 1d"), times of day ("10:00"),
//! money in minor units, and weekdays. Each parses from the text a person writes and prints back
//! in the same form.

use std::fmt;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A length of time written as `3d`, `2h`, `90m`, `1w` or combined (`1d12h`). Stored in whole
/// seconds so it is exact; never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlanDuration {
    seconds: i64,
}

impl PlanDuration {
    pub const ZERO: PlanDuration = PlanDuration { seconds: 0 };

    pub fn from_seconds(seconds: i64) -> Self {
        PlanDuration { seconds }
    }

    pub fn seconds(self) -> i64 {
        self.seconds
    }

    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.seconds)
    }

    /// Parses `3d`, `12h`, `30m`, `45s`, `2w` and concatenations such as `1d12h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("a duration cannot be empty; write for example \"3d\" or \"2h\"".into());
        }
        let mut seconds: i64 = 0;
        let mut digits = String::new();
        for character in trimmed.chars() {
            if character.is_ascii_digit() {
                digits.push(character);
                continue;
            }
            let unit = match character {
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                ' ' if digits.is_empty() => continue,
                _ => {
                    return Err(format!(
                        "`{trimmed}` is not a duration: unexpected `{character}`; use a number \
                         followed by w, d, h, m or s, for example \"3d\" or \"1d12h\""
                    ))
                }
            };
            if digits.is_empty() {
                return Err(format!(
                    "`{trimmed}` is not a duration: `{character}` has no number before it"
                ));
            }
            let amount: i64 = digits
                .parse()
                .map_err(|_| format!("`{trimmed}` is not a duration: the number is too large"))?;
            seconds = amount
                .checked_mul(unit)
                .and_then(|part| seconds.checked_add(part))
                .filter(|total| *total <= MAX_DURATION_SECONDS)
                .ok_or_else(|| {
                    format!("`{trimmed}` is too long: durations are at most 100 years")
                })?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(format!(
                "`{trimmed}` is not a duration: `{digits}` needs a unit (w, d, h, m or s)"
            ));
        }
        Ok(PlanDuration { seconds })
    }
}

const MAX_DURATION_SECONDS: i64 = 100 * 366 * 86_400;

impl fmt::Display for PlanDuration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return formatter.write_str("0s");
        }
        let mut rest = self.seconds;
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(formatter, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PlanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = PlanDuration;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a duration such as \"3d\", \"2h\" or \"1d12h\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<PlanDuration, E> {
                PlanDuration::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A time of day on the campaign's local clock, written `"10:00"` or `"22:30"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub NaiveTime);

impl fmt::Display for TimeOfDay {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0.format("%H:%M"))
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = TimeOfDay;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a time of day such as \"10:00\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<TimeOfDay, E> {
                NaiveTime::parse_from_str(text.trim(), "%H:%M")
                    .or_else(|_| NaiveTime::parse_from_str(text.trim(), "%H:%M:%S"))
                    .map(TimeOfDay)
                    .map_err(|_| {
                        E::custom(format!(
                            "`{text}` is not a time of day; write it as \"HH:MM\""
                        ))
                    })
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<TimeOfDay, M::Error> {
                let datetime =
                    toml_edit::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (datetime.date, datetime.time, datetime.offset) {
                    (None, Some(time), None) => NaiveTime::from_hms_opt(
                        time.hour.into(),
                        time.minute.into(),
                        time.second.into(),
                    )
                    .map(TimeOfDay)
                    .ok_or_else(|| {
                        de::Error::custom(format!("`{datetime}` is not a valid time of day"))
                    }),
                    _ => Err(de::Error::custom(format!(
                        "`{datetime}` is not a time of day; write it as \"HH:MM\""
                    ))),
                }
            }
        }
        deserializer.deserialize_any(TimeVisitor)
    }
}

/// Which edge of a window an anchored instant refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Edge {
    Start,
    End,
}

impl fmt::Display for Edge {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Edge::Start => "start",
            Edge::End => "end",
        })
    }
}

/// An instant as the plan writes it, before it is resolved against the campaign's zone and
/// phase windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// A local date: as a start it means that day's first instant, as an end the instant after
    /// the day (ends are inclusive of the named day).
    Date(NaiveDate),
    /// A local date and time on the campaign's clock.
    Local(NaiveDateTime),
    /// A date and time with an explicit UTC offset.
    Fixed(chrono::DateTime<chrono::FixedOffset>),
    /// `NAME.start`, `NAME.end`, optionally `+ DURATION` or `- DURATION`, where NAME is a phase or
    /// a stage.
    Anchored {
        anchor: String,
        edge: Edge,
        offset_seconds: i64,
    },
}

impl TimeSpec {
    /// Parses the string form: `prep.end - 1d`, `early.start + 10h`, `burst.start`.
    pub fn parse_expression(text: &str) -> Result<TimeSpec, String> {
        let trimmed = text.trim();
        // Ids may contain `-`, never `.`: the sign is searched after the dot.
        let dot = trimmed.find('.').unwrap_or(0);
        let (reference, sign, amount) = match trimmed[dot..].find(['+', '-']).map(|at| at + dot) {
            Some(index) => {
                let sign = if trimmed[index..].starts_with('-') {
                    -1
                } else {
                    1
                };
                (
                    trimmed[..index].trim(),
                    sign,
                    Some(trimmed[index + 1..].trim()),
                )
            }
            None => (trimmed, 1, None),
        };
        let Some((anchor, edge)) = reference.rsplit_once('.') else {
            return Err(format!(
                "`{trimmed}` is not an instant: write a local date (2026-09-02), a local date and \
                 time (2026-09-02T10:00:00) or a boundary such as \"prep.end - 1d\""
            ));
        };
        let edge = match edge {
            "start" => Edge::Start,
            "end" => Edge::End,
            other => {
                return Err(format!(
                    "`{trimmed}`: a boundary ends in `.start` or `.end`, not `.{other}`"
                ))
            }
        };
        if anchor.is_empty() {
            return Err(format!(
                "`{trimmed}`: name the phase or stage before `.{edge}`"
            ));
        }
        let offset_seconds = match amount {
            Some(amount) => sign * PlanDuration::parse(amount)?.seconds(),
            None => 0,
        };
        Ok(TimeSpec::Anchored {
            anchor: anchor.to_string(),
            edge,
            offset_seconds,
        })
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeSpec::Date(date) => write!(formatter, "{date}"),
            TimeSpec::Local(datetime) => {
                write!(formatter, "{}", datetime.format("%Y-%m-%dT%H:%M:%S"))
            }
            TimeSpec::Fixed(datetime) => write!(formatter, "{}", datetime.to_rfc3339()),
            TimeSpec::Anchored {
                anchor,
                edge,
                offset_seconds,
            } => {
                write!(formatter, "{anchor}.{edge}")?;
                match offset_seconds.signum() {
                    1 => write!(
                        formatter,
                        " + {}",
                        PlanDuration::from_seconds(*offset_seconds)
                    ),
                    -1 => write!(
                        formatter,
                        " - {}",
                        PlanDuration::from_seconds(-offset_seconds)
                    ),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for TimeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeSpecVisitor;
        impl<'de> Visitor<'de> for TimeSpecVisitor {
            type Value = TimeSpec;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(
                    "a local date (2026-09-02), a local date and time (2026-09-02T10:00:00) or a \
                     boundary such as \"prep.end - 1d\"",
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<TimeSpec, E> {
                let spec = Self::read_str(text).map_err(E::custom)?;
                let year = match &spec {
                    TimeSpec::Date(date) => Some(date.year()),
                    TimeSpec::Local(local) => Some(local.year()),
                    TimeSpec::Fixed(fixed) => Some(fixed.year()),
                    TimeSpec::Anchored { .. } => None,
                };
                match year {
                    // TOML's own dates stop at 9999; quoted ones may not go further.
                    Some(year) if !(1..=9999).contains(&year) => {
                        Err(E::custom(format!("`{text}`: years run from 1 to 9999")))
                    }
                    _ => Ok(spec),
                }
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<TimeSpec, M::Error> {
                let datetime =
                    toml_edit::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                time_spec_from_toml(&datetime).map_err(de::Error::custom)
            }
        }
        impl TimeSpecVisitor {
            fn read_str(text: &str) -> Result<TimeSpec, String> {
                // A date written as a string is accepted too: people quote dates.
                if let Ok(date) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                    return Ok(TimeSpec::Date(date));
                }
                if let Ok(fixed) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
                    return Ok(TimeSpec::Fixed(fixed));
                }
                for format in [
                    "%Y-%m-%dT%H:%M:%S",
                    "%Y-%m-%d %H:%M:%S",
                    "%Y-%m-%dT%H:%M",
                    "%Y-%m-%d %H:%M",
                ] {
                    if let Ok(local) = NaiveDateTime::parse_from_str(text.trim(), format) {
                        return Ok(TimeSpec::Local(local));
                    }
                }
                TimeSpec::parse_expression(text)
            }
        }
        deserializer.deserialize_any(TimeSpecVisitor)
    }
}

fn time_spec_from_toml(datetime: &toml_edit::Datetime) -> Result<TimeSpec, String> {
    let date = datetime
        .date
        .ok_or_else(|| format!("`{datetime}` has no date; an instant needs one"))?;
    let naive_date = NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())
        .ok_or_else(|| format!("`{datetime}` is not a calendar date"))?;
    let Some(time) = datetime.time else {
        return Ok(TimeSpec::Date(naive_date));
    };
    let naive_time = NaiveTime::from_hms_nano_opt(
        time.hour.into(),
        time.minute.into(),
        time.second.into(),
        time.nanosecond,
    )
    .ok_or_else(|| format!("`{datetime}` is not a valid time"))?;
    let local = naive_date.and_time(naive_time);
    match datetime.offset {
        None => Ok(TimeSpec::Local(local)),
        Some(offset) => {
            let minutes = match offset {
                toml_edit::Offset::Z => 0,
                toml_edit::Offset::Custom { minutes } => i32::from(minutes),
            };
            let fixed = chrono::FixedOffset::east_opt(minutes * 60)
                .ok_or_else(|| format!("`{datetime}` has an impossible UTC offset"))?;
            local
                .and_local_timezone(fixed)
                .single()
                .map(TimeSpec::Fixed)
                .ok_or_else(|| format!("`{datetime}` is not a valid instant"))
        }
    }
}

/// An amount of money in minor units (fen for CNY, cents for USD): exact, never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    minor: i64,
}

impl Money {
    pub fn from_minor(minor: i64) -> Self {
        Money { minor }
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn parse_text(text: &str) -> Result<Money, String> {
        let trimmed = text.trim();
        let (negative, digits) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let digits_only = !whole.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && fraction.chars().all(|c| c.is_ascii_digit());
        if digits_only && fraction.len() > 2 {
            return Err(format!(
                "`{trimmed}` has more than two decimals; money is counted in cents"
            ));
        }
        if !digits_only {
            return Err(format!(
                "`{trimmed}` is not an amount of money; write it like 2.00 (at most two decimals)"
            ));
        }
        let whole: i64 = whole
            .parse()
            .map_err(|_| format!("`{trimmed}` is too large an amount"))?;
        let fraction_minor: i64 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<i64>().unwrap_or(0) * 10,
            _ => fraction.parse::<i64>().unwrap_or(0),
        };
        let minor = whole
            .checked_mul(100)
            .and_then(|value| value.checked_add(fraction_minor))
            .filter(|value| *value <= MAX_MONEY_MINOR)
            .ok_or_else(|| format!("`{trimmed}` is too large an amount"))?;
        Ok(Money {
            minor: if negative { -minor } else { minor },
        })
    }
}

impl serde::Serialize for Money {
    /// As text, `120.00`: exact, and what a person reads in an export.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A trillion in major units: far above any sale, far below overflow when summed.
const MAX_MONEY_MINOR: i64 = 100_000_000_000_000;

impl fmt::Display for Money {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let absolute = self.minor.unsigned_abs();
        write!(formatter, "{sign}{}.{:02}", absolute / 100, absolute % 100)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;
        impl Visitor<'_> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an amount of money such as 2.00")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Money, E> {
                Money::parse_text(&value.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Money, E> {
                Money::parse_text(&value.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Money, E> {
                if !value.is_finite() {
                    return Err(E::custom("an amount of money must be a finite number"));
                }
                // The shortest text that reads back as this float is what the person wrote
                // (1500000000.55, not 1500000000.5499999); read that, exactly.
                let text = format!("{value}");
                if text.contains(['e', 'E']) {
                    return Err(E::custom(format!(
                        "`{text}` is not an amount of money; write it like 2.00"
                    )));
                }
                Money::parse_text(&text).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Money, E> {
                Money::parse_text(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(MoneyVisitor)
    }
}

/// A day of the week as plans write it: `mon`, `tue`, ... (full names accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanWeekday(pub Weekday);

impl<'de> Deserialize<'de> for PlanWeekday {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim()
            .parse::<Weekday>()
            .map(PlanWeekday)
            .map_err(|_| {
                de::Error::custom(format!(
                    "`{text}` is not a day of the week; use mon, tue, wed, thu, fri, sat or sun"
                ))
            })
    }
}

/// A ratio written as a fraction (`0.05`) or a percentage string (`"5%"`).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Ratio(pub f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RatioVisitor;
        impl Visitor<'_> for RatioVisitor {
            type Value = Ratio;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a ratio such as 0.05 or \"5%\"")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Ratio, E> {
                if value.is_finite() {
                    Ok(Ratio(value))
                } else {
                    Err(E::custom("a ratio must be a finite number"))
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Ratio, E> {
                Ok(Ratio(value as f64))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Ratio, E> {
                Ok(Ratio(value as f64))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Ratio, E> {
                let trimmed = text.trim();
                let number = trimmed.strip_suffix('%').ok_or_else(|| {
                    E::custom(format!("`{trimmed}` is not a ratio; write 0.05 or \"5%\""))
                })?;
                number
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .map(|value| Ratio(value / 100.0))
                    .ok_or_else(|| E::custom(format!("`{trimmed}` is not a percentage")))
            }
        }
        deserializer.deserialize_any(RatioVisitor)
    }
}

/// A count as people read it: `1234567` as `1,234,567`.
/// Names people write for a zone that IANA does not have, with the zone they mean. The
/// nearest spelling would mislead for these (`Asia/Beijing` is closest to `Asia/Beirut`).
/// Valid names (`PRC`, `Asia/Chongqing`, `Asia/Harbin`) are not here: they parse.
const WELL_KNOWN_WRONG_ZONES: &[(&str, &str)] = &[
    ("Asia/Beijing", "Asia/Shanghai"),
    ("Asia/Peking", "Asia/Shanghai"),
    ("Asia/Guangzhou", "Asia/Shanghai"),
    ("Asia/Shenzhen", "Asia/Shanghai"),
    ("Asia/Hangzhou", "Asia/Shanghai"),
    ("Asia/China", "Asia/Shanghai"),
    ("Beijing", "Asia/Shanghai"),
    ("Peking", "Asia/Shanghai"),
    ("Shanghai", "Asia/Shanghai"),
    ("Guangzhou", "Asia/Shanghai"),
    ("Shenzhen", "Asia/Shanghai"),
    ("China", "Asia/Shanghai"),
    ("China Standard Time", "Asia/Shanghai"),
    ("CST", "Asia/Shanghai"),
    ("Beijing Time", "Asia/Shanghai"),
    ("Hong Kong", "Asia/Hong_Kong"),
    ("Taipei", "Asia/Taipei"),
    ("New York", "America/New_York"),
    ("Eastern", "America/New_York"),
    ("Pacific", "America/Los_Angeles"),
];

/// The zone to suggest for a name that is not an IANA zone: the one a well-known wrong name
/// means (case and spaces or underscores aside), else the nearest spelling.
pub fn suggest_zone(wrong: &str) -> Option<&'static str> {
    let normal = |text: &str| text.trim().replace('_', " ").to_ascii_lowercase();
    let wanted = normal(wrong);
    if let Some((_, zone)) = WELL_KNOWN_WRONG_ZONES
        .iter()
        .find(|(name, _)| normal(name) == wanted)
    {
        return Some(zone);
    }
    super::diagnostic::suggest(wrong, chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name()))
}

pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_known_wrong_zone_suggests_the_zone_it_means() {
        for wrong in [
            "Asia/Beijing",
            "asia/peking",
            "Beijing",
            "China",
            "CST",
            "Shanghai ",
        ] {
            assert_eq!(suggest_zone(wrong), Some("Asia/Shanghai"), "{wrong}");
        }
        assert_eq!(suggest_zone("New_York"), Some("America/New_York"));
        // A misspelling is still met with the nearest name.
        assert_eq!(suggest_zone("Europe/Berln"), Some("Europe/Berlin"));
        // The table names only zones that exist, and no name that is itself a zone.
        for (name, zone) in WELL_KNOWN_WRONG_ZONES {
            assert!(zone.parse::<chrono_tz::Tz>().is_ok(), "{zone}");
            assert!(name.parse::<chrono_tz::Tz>().is_err(), "{name}");
        }
    }

    #[test]
    fn durations_parse_and_print_back() {
        for (text, seconds, printed) in [
            ("3d", 259_200, "3d"),
            ("2h", 7_200, "2h"),
            ("1d12h", 129_600, "1d12h"),
            ("1w", 604_800, "7d"),
            ("90m", 5_400, "1h30m"),
            ("0d", 0, "0s"),
        ] {
            let duration = PlanDuration::parse(text).unwrap();
            assert_eq!(duration.seconds(), seconds, "{text}");
            assert_eq!(duration.to_string(), printed, "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for text in [
            "",
            "3",
            "d",
            "3x",
            "-1d",
            "99999999999999999999d",
            "36600000d",
        ] {
            assert!(
                PlanDuration::parse(text).is_err(),
                "{text} should be rejected"
            );
        }
    }

    #[test]
    fn anchored_expressions_parse() {
        assert_eq!(
            TimeSpec::parse_expression("prep.end - 1d").unwrap(),
            TimeSpec::Anchored {
                anchor: "prep".into(),
                edge: Edge::End,
                offset_seconds: -86_400
            }
        );
        assert_eq!(
            TimeSpec::parse_expression("warm_up.start+2h")
                .unwrap()
                .to_string(),
            "warm_up.start + 2h"
        );
        assert_eq!(
            TimeSpec::parse_expression("early-bird.end - 1h")
                .unwrap()
                .to_string(),
            "early-bird.end - 1h"
        );
        assert!(TimeSpec::parse_expression("prep.middle").is_err());
        use serde::de::IntoDeserializer;
        let read = |text: &str| {
            TimeSpec::deserialize(
                IntoDeserializer::<serde::de::value::Error>::into_deserializer(text),
            )
        };
        assert!(matches!(
            read("2026-09-02T10:00:00+08:00"),
            Ok(TimeSpec::Fixed(_))
        ));
        assert!(matches!(read("2026-09-02"), Ok(TimeSpec::Date(_))));
        assert!(
            read("+262142-12-30").is_err(),
            "years past 9999 are refused"
        );
        assert!(TimeSpec::parse_expression("prep").is_err());
        assert!(TimeSpec::parse_expression(".end").is_err());
    }

    #[test]
    fn money_is_exact() {
        assert_eq!(Money::parse_text("2.00").unwrap().minor(), 200);
        assert_eq!(Money::parse_text("2.5").unwrap().minor(), 250);
        assert_eq!(Money::parse_text("1500").unwrap().to_string(), "1500.00");
        assert!(Money::parse_text("2.005").is_err());
        assert!(Money::parse_text("abc").is_err());
        assert!(Money::parse_text("").is_err());
        // Large amounts read from a float keep their cents.
        use serde::de::IntoDeserializer;
        let read = |value: f64| {
            Money::deserialize(
                IntoDeserializer::<serde::de::value::Error>::into_deserializer(value),
            )
        };
        assert_eq!(read(150_000_000.55).unwrap().minor(), 15_000_000_055);
        assert_eq!(read(1_500_000_000.55).unwrap().minor(), 150_000_000_055);
        assert!(read(2.005).is_err());
        assert!(read(1e-8).is_err());
    }
}
