//! `[reports.weekly]`: when the weekly report is sent (a weekday and a local time) and to which
//! roles.

use chrono::{NaiveTime, Weekday};

use super::Validator;
use crate::plan::diagnostic::{Code, Diagnostic};
use crate::plan::model::{Role, WeeklyReportSchedule};

/// `"monday 09:30"`: a weekday (`mon` or `monday`, any case) and a time of day, `HH:MM`.
pub(crate) fn every(text: &str) -> Result<(Weekday, NaiveTime), String> {
    let mut words = text.split_whitespace();
    let (Some(day), Some(time), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "`{}` is not a weekday and a time of day",
            crate::text::printable(text)
        ));
    };
    let weekday = day
        .parse::<Weekday>()
        .map_err(|_| format!("`{}` is not a day of the week", crate::text::printable(day)))?;
    let at = NaiveTime::parse_from_str(time, "%H:%M").map_err(|_| {
        format!(
            "`{}` is not a time of day written HH:MM",
            crate::text::printable(time)
        )
    })?;
    Ok((weekday, at))
}

impl Validator<'_> {
    pub(super) fn weekly_report(&mut self, roles: &[Role]) -> Option<WeeklyReportSchedule> {
        let raw = self.raw.weekly_report.as_ref()?;
        let when = match every(&raw.every) {
            Ok(when) => Some(when),
            Err(reason) => {
                self.push(
                    Diagnostic::new(Code::ReportSchedule, "reports.weekly.every", reason)
                        .with_help("every = \"monday 09:30\": a day of the week and a local time in the campaign's zone"),
                );
                None
            }
        };
        if raw.to.is_empty() {
            self.push(
                Diagnostic::new(
                    Code::ReportRecipients,
                    "reports.weekly.to",
                    "the weekly report goes to no role",
                )
                .with_help("to = [\"boss\"]: the roles whose members receive it"),
            );
        }
        let declared: Vec<&str> = roles.iter().map(|role| role.id.as_str()).collect();
        let mut known = true;
        for (index, role) in raw.to.iter().enumerate() {
            let path = format!("reports.weekly.to[{index}]");
            known &= self.known(&path, "role", role, &declared);
        }
        let (weekday, at) = when?;
        (known && !raw.to.is_empty()).then(|| WeeklyReportSchedule {
            weekday,
            at,
            to: raw.to.clone(),
            week: raw.week,
        })
    }
}
