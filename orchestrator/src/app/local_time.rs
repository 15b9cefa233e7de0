//! An instant as a campaign reads it: RFC 3339 with the campaign's offset at that instant
//! (`2026-09-03T10:00:00+08:00`), as every view writes its instants in JSON. The same instant as
//! the UTC form; only how it is written changes.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant with the offset of the campaign's zone at that instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-09-03T10:00:00+08:00")]
pub struct LocalTime(DateTime<FixedOffset>);

impl LocalTime {
    /// `instant` as read in `zone`.
    pub fn new(zone: Tz, instant: DateTime<Utc>) -> LocalTime {
        LocalTime(instant.with_timezone(&zone).fixed_offset())
    }

    /// The instant itself.
    pub fn instant(self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }
}

impl Serialize for LocalTime {
    /// As `timeline::local_rfc3339` writes it: `+00:00`, never `Z`, and fractions of a second
    /// only when there are some.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LocalTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(LocalTime)
            .map_err(|error| serde::de::Error::custom(format_args!("`{text}`: {error}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests report failures by panicking")]
mod tests {
    use super::*;
    use battleplan_core::campaign::timeline::local_rfc3339;

    #[test]
    fn written_as_the_campaign_reads_it_and_read_back() {
        let instants = [
            "2026-09-02T16:00:00Z",
            "2026-09-02T16:00:00.250Z",
            "2026-03-29T01:30:00Z",
        ];
        for zone in [
            chrono_tz::Asia::Shanghai,
            chrono_tz::UTC,
            chrono_tz::Europe::Berlin,
        ] {
            for text in instants {
                let instant = DateTime::parse_from_rfc3339(text)
                    .unwrap()
                    .with_timezone(&Utc);
                let local = LocalTime::new(zone, instant);
                let json = serde_json::to_string(&local).unwrap();
                assert_eq!(json, format!("\"{}\"", local_rfc3339(zone, instant)));
                let back: LocalTime = serde_json::from_str(&json).unwrap();
                assert_eq!(back, local);
                assert_eq!(back.instant(), instant);
            }
        }
        assert!(serde_json::from_str::<LocalTime>("\"last tuesday\"").is_err());
    }
}
