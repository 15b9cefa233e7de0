//! Refusals as RFC 9457 problem details (`application/problem+json`): every 4xx and 5xx the API
//! sends, whatever refused (the application layer, authentication, a body the server could not
//! read, a route that does not exist), carries the same object with the stable `code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppError;

/// The media type of a problem detail.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before trying again after a `busy` refusal.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An RFC 9457 problem detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the class of the problem: `urn:battleplan:problem:CODE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The class in a few words (the same for every problem of the class).
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for people.
    pub detail: String,
    /// The stable code of the class (`AppError::code`): `unknown_campaign`, `forbidden`, ...
    pub code: &'static str,
    /// The plan's diagnostics, for `invalid_plan`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl std::fmt::Display) -> Problem {
        Problem {
            kind: format!("urn:battleplan:problem:{code}"),
            title: title(code),
            status: status.as_u16(),
            detail: detail.to_string(),
            code,
            diagnostics: Vec::new(),
        }
    }

    /// 400: the request could not be read (a bad header, query or body).
    pub fn bad_request(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid", detail)
    }

    /// 415: a body of a type the route does not take.
    pub fn unsupported_type(detail: impl std::fmt::Display) -> Problem {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }

    /// 413: a body over the route's limit.
    pub fn too_large(limit: u64) -> Problem {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format_args!(
                "the request's body is larger than this route takes ({limit} bytes at most)"
            ),
        )
    }

    /// 401, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403.
    pub fn forbidden(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 503, with `Retry-After`.
    pub fn busy(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail)
    }

    /// 500.
    pub fn internal(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The status of an application refusal.
pub fn status_of(error: &AppError) -> StatusCode {
    match error {
        AppError::UnknownCampaign { .. } | AppError::NotFound { .. } => StatusCode::NOT_FOUND,
        AppError::InvalidPlan { .. } | AppError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::Rejected { .. } | AppError::Conflict { .. } => StatusCode::CONFLICT,
        AppError::Busy { .. } | AppError::StoreUnusable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
        AppError::Disk { .. } | AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<&AppError> for Problem {
    fn from(error: &AppError) -> Problem {
        let mut problem = Problem::new(status_of(error), error.code(), error);
        if let AppError::InvalidPlan { diagnostics } = error {
            problem.diagnostics = diagnostics.clone();
            problem.detail = "the plan has errors; nothing was applied".to_string();
        }
        problem
    }
}

fn title(code: &str) -> &'static str {
    match code {
        "unknown_campaign" => "No such campaign",
        "not_found" => "Not found",
        "rejected" => "The campaign refused the command",
        "invalid_plan" => "The plan has errors",
        "invalid" => "The request is not valid",
        "conflict" => "The request conflicts with what was recorded",
        "busy" => "Too many requests at once",
        "unauthorized" => "No valid token",
        "forbidden" => "The token's role may not do this",
        "store_unusable" => "The store cannot be used",
        "disk" => "The disk failed",
        "unsupported_media_type" => "Wrong content type",
        "too_large" => "The body is too large",
        "method_not_allowed" => "Method not allowed",
        "timeout" => "The request took too long",
        _ => "Internal error",
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::present::json(&self);
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}
