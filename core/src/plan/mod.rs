//! The battle plan: the file a promo manager writes (TOML), every check made on it, and the
//! resolved [`Plan`] the rest of battleplan runs.
//!
//! The path through this module is `parse` (bytes to a raw plan, syntax and types) then
//! `validate` (meaning: windows, references, quotas, templates, offers) which yields a `Plan` or
//! the full list of diagnostics. [`check`] does both.

pub mod diagnostic;
pub mod model;
pub mod parse;
pub mod raw;
pub mod template;
pub mod validate;
pub mod values;

pub use diagnostic::{Code, Diagnostic, LineIndex, Severity};
pub use model::Plan;
pub use validate::{check, Checked};

/// The September procurement festival from DOMAIN.md: the example `battleplan init` writes and
/// the living documentation of the format.
pub const EXAMPLE_PLAN: &str = include_str!("september_festival.toml");
