//! Failpoints: environment variables the crash and fault tests set to stop a process at an
//! exact place (each is named where it acts, `BATTLEPLAN_FAILPOINT_...`). Read here, once per
//! use, so that no use case reads the environment itself.

/// The number a failpoint is set to, if it is set to one.
pub fn number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}
