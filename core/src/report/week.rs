//! ISO 8601 weeks as a campaign reads them: `2026-W36` is Monday 00:00 to the next Monday
//! 00:00 in the campaign's zone, so a week across a daylight-saving change is 167 or 169 hours
//! long, and its bounds are the instants the zone gives those local midnights.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;

use crate::plan::model::Window;
use crate::task::schedule::local_instant;

/// An ISO 8601 week: its week-based year and number (1 to 52 or 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    year: i32,
    week: u32,
}

impl IsoWeek {
    /// The week `week` of the week-based `year`, if the year has it.
    pub fn new(year: i32, week: u32) -> Option<IsoWeek> {
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)?;
        Some(IsoWeek { year, week })
    }

    /// The week a local day belongs to.
    pub fn of_date(date: NaiveDate) -> IsoWeek {
        let iso = date.iso_week();
        IsoWeek {
            year: iso.year(),
            week: iso.week(),
        }
    }

    /// The week an instant falls in, in `zone`.
    pub fn of_instant(zone: Tz, instant: DateTime<Utc>) -> IsoWeek {
        IsoWeek::of_date(instant.with_timezone(&zone).date_naive())
    }

    /// Reads `2026-W36` (also `2026-w36` and `2026-W36-1`, a Monday in the extended form); or
    /// says, in words, what is wrong.
    pub fn parse(text: &str) -> Result<IsoWeek, String> {
        let trimmed = text.trim();
        let shape = "write a week as YEAR-Wnn, like 2026-W36 (ISO 8601: weeks start on Monday)";
        let Some((year, rest)) = trimmed.split_once(['-']) else {
            return Err(format!("`{trimmed}` is not a week; {shape}"));
        };
        let rest = rest.strip_suffix("-1").unwrap_or(rest);
        let Some(number) = rest.strip_prefix(['W', 'w']) else {
            return Err(format!("`{trimmed}` is not a week; {shape}"));
        };
        let digits = |text: &str, count: std::ops::RangeInclusive<usize>| {
            count.contains(&text.len()) && text.chars().all(|c| c.is_ascii_digit())
        };
        if !digits(year, 4..=4) || !digits(number, 2..=2) {
            return Err(format!("`{trimmed}` is not a week; {shape}"));
        }
        let (Ok(year), Ok(week)) = (year.parse::<i32>(), number.parse::<u32>()) else {
            return Err(format!("`{trimmed}` is not a week; {shape}"));
        };
        IsoWeek::new(year, week).ok_or_else(|| {
            let last = (52..=53)
                .rev()
                .find(|week| NaiveDate::from_isoywd_opt(year, *week, Weekday::Mon).is_some())
                .unwrap_or(52);
            format!("{year} has no week {week}: its weeks are {year}-W01 to {year}-W{last:02}")
        })
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn number(self) -> u32 {
        self.week
    }

    /// Its Monday.
    pub fn monday(self) -> NaiveDate {
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon).unwrap_or(NaiveDate::MIN)
    }

    /// The week before.
    pub fn previous(self) -> IsoWeek {
        IsoWeek::of_date(
            self.monday()
                .checked_sub_signed(Duration::days(7))
                .unwrap_or(NaiveDate::MIN),
        )
    }

    /// The week after.
    pub fn next(self) -> IsoWeek {
        IsoWeek::of_date(
            self.monday()
                .checked_add_signed(Duration::days(7))
                .unwrap_or(NaiveDate::MAX),
        )
    }

    /// Monday 00:00 to the next Monday 00:00 in `zone`, as instants (a midnight the zone
    /// skips is the first instant after the gap).
    pub fn window(self, zone: Tz) -> Window {
        let start = midnight(zone, self.monday());
        let end = midnight(zone, self.next().monday());
        Window { start, end }
    }

    /// Its seven local days, Monday first.
    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        self.monday().iter_days().take(7)
    }
}

impl fmt::Display for IsoWeek {
    /// `2026-W36`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:04}-W{:02}", self.year, self.week)
    }
}

/// A local day's first instant in `zone`.
pub fn midnight(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|local| local_instant(zone, local))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
