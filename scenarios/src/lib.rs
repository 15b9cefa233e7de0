//! Scenario files (a plan, customers and a script of outside inputs over time) and the
//! deterministic customer and outcome files they generate. The runner that drives the real
//! orchestrator under a manual clock is `battleplan_orchestrator::hosts::scenario`.

pub mod customers;
pub mod scenario;
