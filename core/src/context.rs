//! Time and identity as values: the ports through which the clock and the id source reach the
//! core, with the deterministic implementations used by tests and scenarios. The system clock
//! and random ids live in `battleplan-adapters`.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, instant: DateTime<Utc>) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = instant;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub trait IdSource: Send + Sync {
    /// A new UUID v7 for the given instant (the instant orders ids in time).
    fn next_id(&self, at: DateTime<Utc>) -> Uuid;
}

/// Deterministic UUID v7s: the instant's milliseconds, then a counter mixed with a seed where a
/// random generator would put random bits. The same seed and instants give the same ids.
#[derive(Debug)]
pub struct SeededIds {
    seed: u64,
    counter: Mutex<u64>,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        SeededIds {
            seed,
            counter: Mutex::new(0),
        }
    }
}

impl IdSource for SeededIds {
    fn next_id(&self, at: DateTime<Utc>) -> Uuid {
        let mut counter = self
            .counter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counter += 1;
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        // splitmix64 of seed and counter: well spread, reproducible.
        let mut mixed = self
            .seed
            .wrapping_add(counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        let random = [(mixed >> 48) as u16 & 0x0fff, 0, 0];
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6..8].copy_from_slice(&(0x7000 | random[0]).to_be_bytes());
        bytes[8..16].copy_from_slice(
            &((mixed & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000).to_be_bytes(),
        );
        Uuid::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_are_version_7_ordered_and_reproducible() {
        let at = DateTime::from_timestamp(1_788_000_000, 0).unwrap();
        let first = SeededIds::new(42);
        let second = SeededIds::new(42);
        let a: Vec<Uuid> = (0..5).map(|_| first.next_id(at)).collect();
        let b: Vec<Uuid> = (0..5).map(|_| second.next_id(at)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|id| id.get_version_num() == 7));
        let later = first.next_id(at + chrono::Duration::milliseconds(1));
        assert!(a.iter().all(|id| *id < later), "ids follow time");
        let other = SeededIds::new(43).next_id(at);
        assert_ne!(a[0], other);
    }
}
