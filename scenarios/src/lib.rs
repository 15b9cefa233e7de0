//! Scenario files (a plan, customers and a script of outside inputs over time) and the runner
//! that drives the real orchestrator under a manual clock.
//!
//! So far: deterministic customer and outcome files for the example plan (`customers`, and the
//! `generate-customers` binary). The runner comes next.

pub mod customers;
