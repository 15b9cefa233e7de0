//! Scenario files (a plan, customers and a script of outside inputs over time) and the runner
//! that drives the real orchestrator under a manual clock.
//!
//! Empty until the orchestrator runtime exists to drive.
