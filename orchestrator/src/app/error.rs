//! The refusals of the application layer: one variant per class, each with a stable code that
//! every front shows (the CLI's exit code, HTTP's status and problem type, the socket's JSON).

use battleplan_core::event::StoreError;
use serde::{Deserialize, Serialize};

use crate::kernel::runtime::HandleError;

/// Whose fault a refusal is: the user's (exit 2, HTTP 4xx) or the program's (exit 1, 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    User,
    Internal,
}

/// A use case's refusal. The message is for people; the code is for programs and never changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum AppError {
    /// No campaign by that id; `known` lists those there are.
    #[error("{}", unknown_campaign(campaign, known))]
    UnknownCampaign {
        campaign: String,
        known: Vec<String>,
    },
    /// Something named in the request is not there (a reach-out, a customer, a task, a
    /// channel, a file).
    #[error("{message}")]
    NotFound { message: String },
    /// The campaign's state machine refused the command (pause a paused campaign, say).
    #[error("{message}")]
    Rejected { message: String },
    /// The plan has errors; each diagnostic as `FILE:LINE:COLUMN: error[CODE] path: message`.
    #[error("{}", diagnostics.join("\n"))]
    InvalidPlan { diagnostics: Vec<String> },
    /// The request itself is wrong: a bad value, a bad file, a question that cannot be asked.
    #[error("{message}")]
    Invalid { message: String },
    /// The request contradicts what was recorded: an idempotency key reused with another body,
    /// a command that kept losing the race for its stream.
    #[error("{message}")]
    Conflict { message: String },
    /// Too much at once: try again shortly.
    #[error("{message}")]
    Busy { message: String },
    /// No identity, or one that is not known (HTTP only).
    #[error("{message}")]
    Unauthorized { message: String },
    /// An identity whose role may not do this.
    #[error("{message}")]
    Forbidden { message: String },
    /// The store cannot be used: damaged, or written by a newer battleplan.
    #[error("the store cannot be used: {detail}. {}", DAMAGE_HINT)]
    StoreUnusable { detail: String },
    /// The disk failed under the command.
    #[error("the disk failed: {detail}. Everything acknowledged before is kept; free space or repair the disk, then run the command again")]
    Disk { detail: String },
    /// A fault of the program.
    #[error("internal error: {message}")]
    Internal { message: String },
}

/// What to do about a damaged store, said with every refusal of one.
pub const DAMAGE_HINT: &str = "Nothing was changed; `battleplan store check` tells what is intact, and docs/store.md how to recover";

fn unknown_campaign(id: &str, known: &[String]) -> String {
    if id.is_empty() {
        // None was named (`tasks` without --campaign) and there is none to take.
        return "there is no campaign yet (apply a plan first: `battleplan plan apply PLAN`)"
            .to_string();
    }
    if known.is_empty() {
        return format!("no campaign named {id}: there are no campaigns yet");
    }
    format!("no campaign named {id}; known: {}", known.join(", "))
}

impl AppError {
    /// The stable code of the refusal's class (`unknown_campaign`, `forbidden`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            AppError::UnknownCampaign { .. } => "unknown_campaign",
            AppError::NotFound { .. } => "not_found",
            AppError::Rejected { .. } => "rejected",
            AppError::InvalidPlan { .. } => "invalid_plan",
            AppError::Invalid { .. } => "invalid",
            AppError::Conflict { .. } => "conflict",
            AppError::Busy { .. } => "busy",
            AppError::Unauthorized { .. } => "unauthorized",
            AppError::Forbidden { .. } => "forbidden",
            AppError::StoreUnusable { .. } => "store_unusable",
            AppError::Disk { .. } => "disk",
            AppError::Internal { .. } => "internal",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Disk { .. } | AppError::Internal { .. } => ErrorKind::Internal,
            _ => ErrorKind::User,
        }
    }

    pub fn invalid(message: impl std::fmt::Display) -> AppError {
        AppError::Invalid {
            message: message.to_string(),
        }
    }

    pub fn not_found(message: impl std::fmt::Display) -> AppError {
        AppError::NotFound {
            message: message.to_string(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> AppError {
        AppError::Internal {
            message: message.to_string(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        match error {
            StoreError::Io(detail) => AppError::Disk { detail },
            error @ (StoreError::Corrupt { .. } | StoreError::NewerFormat { .. }) => {
                AppError::StoreUnusable {
                    detail: error.to_string(),
                }
            }
            other => AppError::internal(other),
        }
    }
}

impl From<HandleError> for AppError {
    fn from(error: HandleError) -> AppError {
        match error {
            HandleError::Rejected(rejection) => AppError::Rejected {
                message: rejection.to_string(),
            },
            error @ (HandleError::Contended { .. } | HandleError::Reused { .. }) => {
                AppError::Conflict {
                    message: error.to_string(),
                }
            }
            HandleError::Store(error) => AppError::from(error),
            other => AppError::internal(other),
        }
    }
}
