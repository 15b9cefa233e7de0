//! The real clock and random ids, for production. Tests and scenarios use the manual clock and
//! seeded ids from `battleplan_core::context`.

use battleplan_core::context::{Clock, IdSource};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// UUID v7 with random bits from the operating system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next_id(&self, at: DateTime<Utc>) -> Uuid {
        let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
        let timestamp =
            uuid::Timestamp::from_unix(uuid::NoContext, seconds, at.timestamp_subsec_nanos());
        Uuid::new_v7(timestamp)
    }
}
