//! The routes: each maps its path, query and body to an `app::Request` (built in [`build`], one
//! function per route) and answers with the view's JSON or a problem detail.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use battleplan_adapters::import::Format;
use battleplan_core::customer::ImportKind;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{Caller, Operation};
use super::problem::Problem;
use super::{Api, IDLE_TIMEOUT, MAX_JSON_BYTES, REQUEST_TIMEOUT};
use crate::app::{self, Action, Origin, Outcome, Request};

/// A route's answer.
pub type Answer = Result<Response, Problem>;

/// Every route under `/api/v1`, with its operation in the role matrix (`None`: no token needed).
pub const ROUTES: &[(Method, &str, Option<Operation>)] = &[
    (Method::GET, "/openapi.json", None),
    (Method::GET, "/campaigns", Some(Operation::ListCampaigns)),
    (Method::POST, "/campaigns", Some(Operation::ApplyPlan)),
    (Method::GET, "/campaigns/{id}", Some(Operation::Status)),
    (
        Method::GET,
        "/campaigns/{id}/history",
        Some(Operation::History),
    ),
    (
        Method::GET,
        "/campaigns/{id}/funnel",
        Some(Operation::Funnel),
    ),
    (
        Method::GET,
        "/campaigns/{id}/targets",
        Some(Operation::Targets),
    ),
    (
        Method::GET,
        "/campaigns/{id}/outbox",
        Some(Operation::Outbox),
    ),
    (Method::GET, "/campaigns/{id}/tasks", Some(Operation::Tasks)),
    (
        Method::GET,
        "/campaigns/{id}/audience",
        Some(Operation::Audience),
    ),
    (
        Method::GET,
        "/campaigns/{id}/customers/{customer}/explain",
        Some(Operation::Explain),
    ),
    (Method::POST, "/campaigns/{id}/pause", Some(Operation::Act)),
    (Method::POST, "/campaigns/{id}/resume", Some(Operation::Act)),
    (
        Method::POST,
        "/campaigns/{id}/advance",
        Some(Operation::Act),
    ),
    (Method::POST, "/campaigns/{id}/cancel", Some(Operation::Act)),
    (
        Method::POST,
        "/campaigns/{id}/channels/{channel}/resume",
        Some(Operation::ChannelResume),
    ),
    (
        Method::POST,
        "/campaigns/{id}/tasks/{occurrence}/done",
        Some(Operation::TaskDone),
    ),
    (
        Method::POST,
        "/imports/customers",
        Some(Operation::ImportCustomers),
    ),
    (
        Method::POST,
        "/imports/outcomes",
        Some(Operation::ImportOutcomes),
    ),
    (
        Method::POST,
        "/imports/metrics",
        Some(Operation::ImportMetrics),
    ),
    (
        Method::GET,
        "/campaigns/{id}/metrics",
        Some(Operation::Metrics),
    ),
    (
        Method::GET,
        "/campaigns/{id}/reports/weekly",
        Some(Operation::WeeklyReport),
    ),
    (Method::POST, "/outcomes", Some(Operation::ReportOutcomes)),
    (Method::POST, "/bounces", Some(Operation::ReportOutcomes)),
    // No token: the link is signed for one customer, campaign and channel kind.
    (
        Method::GET,
        "/unsubscribe/{campaign}/{customer}/{kind}/{mac}",
        None,
    ),
    (
        Method::POST,
        "/unsubscribe/{campaign}/{customer}/{kind}/{mac}",
        None,
    ),
    // No token: the link is signed for one message and one address.
    (Method::GET, "/click/{mac}/{message}/{target}", None),
    (Method::GET, "/export", Some(Operation::Export)),
    (Method::GET, "/audit/verify", Some(Operation::AuditVerify)),
    // `{file}` is `CAMPAIGN.ics` (a path parameter cannot have a suffix in the router); the
    // token may be in the query (`?token=`), a calendar token only (`super::authorize`).
    (Method::GET, "/calendar/{file}", Some(Operation::Calendar)),
];

/// The routes, unlayered (see `super::router`).
pub fn router(_api: Api) -> Router<Api> {
    let v1 = Router::new()
        .route("/openapi.json", get(super::openapi::document))
        .route("/campaigns", get(list_campaigns).post(apply_plan))
        .route("/campaigns/{id}", get(status))
        .route("/campaigns/{id}/history", get(history))
        .route("/campaigns/{id}/funnel", get(funnel))
        .route("/campaigns/{id}/targets", get(targets))
        .route("/campaigns/{id}/outbox", get(outbox))
        .route("/campaigns/{id}/tasks", get(tasks))
        .route("/campaigns/{id}/audience", get(audience))
        .route("/campaigns/{id}/customers/{customer}/explain", get(explain))
        .route("/campaigns/{id}/pause", post(pause))
        .route("/campaigns/{id}/resume", post(resume))
        .route("/campaigns/{id}/advance", post(advance))
        .route("/campaigns/{id}/cancel", post(cancel))
        .route(
            "/campaigns/{id}/channels/{channel}/resume",
            post(channel_resume),
        )
        .route("/campaigns/{id}/tasks/{occurrence}/done", post(task_done))
        .route("/imports/customers", post(import_customers))
        .route("/imports/outcomes", post(import_outcomes))
        .route("/imports/metrics", post(import_metrics))
        .route("/campaigns/{id}/metrics", get(metrics))
        .route("/campaigns/{id}/reports/weekly", get(weekly_report))
        .route("/outcomes", post(report_outcomes))
        .route("/bounces", post(report_bounces))
        .route(
            "/unsubscribe/{campaign}/{customer}/{kind}/{mac}",
            get(unsubscribe_page).post(unsubscribe),
        )
        .route("/click/{mac}/{message}/{target}", get(click))
        .route("/export", get(export))
        .route("/audit/verify", get(audit_verify))
        .route("/calendar/{file}", get(calendar));
    Router::new()
        .nest(super::BASE, v1)
        .route("/healthz", get(super::metrics::healthz))
        .route("/readyz", get(super::metrics::readyz))
        .route("/metrics", get(super::metrics::metrics))
        .merge(super::dashboard::router())
}

/// The requests, one function per route: the one place each route says what it asks.
pub mod build {
    use super::*;

    pub fn status(campaign: Option<String>) -> Request {
        Request::Status { campaign }
    }

    pub fn history(campaign: String, query: HistoryQuery) -> Request {
        Request::History {
            campaign: Some(campaign),
            as_of: query.as_of,
            after: query.after,
            limit: query.limit,
        }
    }

    pub fn funnel(campaign: String) -> Request {
        Request::Funnel { campaign }
    }

    pub fn targets(campaign: String) -> Request {
        Request::Targets { campaign }
    }

    pub fn metrics(campaign: String) -> Request {
        Request::Metrics { campaign }
    }

    pub fn weekly_report(
        campaign: String,
        query: WeeklyReportQuery,
        format: app::report::ReportFormat,
    ) -> Request {
        Request::WeeklyReport(app::report::WeeklyQuestion {
            campaign,
            week: query.week,
            format,
        })
    }

    pub fn import_metrics(
        caller: &Caller,
        path: PathBuf,
        file_name: String,
        format: Format,
        zone: Option<String>,
    ) -> Request {
        Request::ImportMetrics(app::metrics::MetricsImportRequest {
            path,
            file_name,
            format,
            zone,
            actor: caller.name.clone(),
        })
    }

    pub fn outbox(campaign: String, query: OutboxQuery) -> Request {
        Request::Outbox(app::outreach::OutboxQuestion {
            campaign,
            reach_out: query.reach_out,
            customers: query.customers.unwrap_or(false),
        })
    }

    pub fn tasks(campaign: String, query: TasksQuery) -> Request {
        Request::Tasks(app::tasks::TasksQuestion {
            campaign: Some(campaign),
            role: query.role,
            due_before: query.due_before,
        })
    }

    pub fn audience(campaign: String, query: AudienceQuery) -> Request {
        Request::AudiencePreview(app::audience::PreviewQuestion {
            campaign,
            reach_out: query.reach_out,
            segment: query.segment,
            channel: query.channel,
            at: query.at,
            customers: query.customers.unwrap_or(false),
        })
    }

    pub fn explain(campaign: String, customer: String, query: AsOfQuery) -> Request {
        Request::Explain(app::explain::ExplainQuestion {
            campaign,
            customer,
            as_of: query.as_of,
        })
    }

    pub fn apply_plan(
        caller: &Caller,
        query: PlanQuery,
        source: String,
        command_id: Option<Uuid>,
    ) -> Request {
        Request::ApplyPlan {
            file_name: query.file_name.unwrap_or_else(|| "plan.toml".to_string()),
            source,
            actor: caller.name.clone(),
            reason: query.reason,
            command_id,
        }
    }

    pub fn act(
        caller: &Caller,
        campaign: String,
        action: Action,
        body: ReasonBody,
        command_id: Option<Uuid>,
    ) -> Request {
        Request::Act {
            campaign,
            action,
            actor: caller.name.clone(),
            reason: body.reason,
            command_id,
        }
    }

    pub fn channel_resume(
        caller: &Caller,
        campaign: String,
        channel: String,
        body: ChannelResumeBody,
        command_id: Option<Uuid>,
    ) -> Request {
        Request::ChannelResume {
            campaign,
            channel,
            actor: caller.name.clone(),
            reason: body.reason,
            command_id,
        }
    }

    pub fn answers(
        caller: &Caller,
        source: app::answers::AnswerSource,
        outcomes: Vec<app::answers::OutcomeAnswer>,
        bounces: Vec<app::answers::BounceAnswer>,
    ) -> Request {
        Request::Answers(app::answers::AnswersRequest {
            source,
            outcomes,
            bounces,
            actor: caller.name.clone(),
        })
    }

    pub fn task_done(
        caller: &Caller,
        campaign: String,
        occurrence: String,
        body: NoteBody,
        command_id: Option<Uuid>,
    ) -> Request {
        Request::TaskDone(app::tasks::TaskDoneRequest {
            campaign: Some(campaign),
            occurrence,
            actor: caller.name.clone(),
            note: body.note,
            command_id,
        })
    }

    pub fn import(
        caller: &Caller,
        kind: ImportKind,
        path: PathBuf,
        file_name: String,
        format: Format,
        skip_bad_rows: bool,
    ) -> Request {
        Request::Import(app::import::ImportRequest {
            kind,
            path,
            file_name,
            format,
            skip_bad_rows,
            actor: caller.name.clone(),
        })
    }

    pub fn export(out: PathBuf, as_of: Option<DateTime<Utc>>) -> Request {
        Request::Export {
            out,
            file_name: "export".to_string(),
            as_of,
        }
    }

    pub fn audit_verify() -> Request {
        Request::AuditVerify
    }

    pub fn calendar(campaign: String, query: CalendarQuery) -> Request {
        Request::Calendar(app::calendar::CalendarQuestion {
            campaign,
            role: query.role,
            person: query.person,
        })
    }
}

// ----- query and body types -----

/// `?as_of=`: the log as of an instant.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// Only what was recorded up to this instant (RFC 3339).
    pub as_of: Option<DateTime<Utc>>,
}

/// A campaign's history, a page at a time.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only the events recorded up to this instant (RFC 3339).
    pub as_of: Option<DateTime<Utc>>,
    /// Only the events after this log position (the cursor: the last position of a page).
    pub after: Option<u64>,
    /// At most this many events (1 or more).
    #[param(minimum = 1)]
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// One reach-out only.
    pub reach_out: Option<String>,
    /// List the customers too.
    pub customers: Option<bool>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// One role's tasks only.
    pub role: Option<String>,
    /// Only the tasks due before this instant (RFC 3339).
    pub due_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct AudienceQuery {
    pub reach_out: Option<String>,
    pub segment: Option<String>,
    pub channel: Option<String>,
    /// The instant to preview at (RFC 3339).
    pub at: Option<DateTime<Utc>>,
    /// List the customers too.
    pub customers: Option<bool>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// The plan's file name, for the diagnostics (`plan.toml` when left out).
    pub file_name: Option<String>,
    /// Why, recorded with the plan.
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `csv` or `jsonl`, when the content type does not say (text/csv, application/x-ndjson).
    #[param(pattern = "^(csv|jsonl|ndjson)$")]
    pub format: Option<String>,
    /// Import the good rows and skip the bad ones (listed), instead of refusing the file.
    pub skip_bad_rows: Option<bool>,
    /// The file's name, recorded with the import (`upload.csv` or `upload.jsonl`).
    pub file_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// `csv` or `jsonl`, when the content type does not say (text/csv, application/x-ndjson).
    #[param(pattern = "^(csv|jsonl|ndjson)$")]
    pub format: Option<String>,
    /// The time zone of the file's dates (an IANA name); by default the zone every campaign
    /// shares.
    pub zone: Option<String>,
    /// The file's name, recorded with the figures (`upload.csv` or `upload.jsonl`).
    pub file_name: Option<String>,
}

/// Which week, in which form.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct WeeklyReportQuery {
    /// The ISO 8601 week (`2026-W36`); the one containing now when left out.
    #[param(pattern = "^[0-9]{4}-[Ww][0-9]{2}$", example = "2026-W36")]
    pub week: Option<String>,
    /// `json` (the report's data, the default), `text`, `markdown` or `html`.
    #[param(pattern = "^(json|text|markdown|html)$")]
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only the events recorded up to this instant (RFC 3339).
    pub as_of: Option<DateTime<Utc>>,
}

/// Whose calendar. The token, when it is in the query (`?token=`), is the routing layer's
/// (`super::authorize`) and documented as the `calendar_token` security scheme.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct CalendarQuery {
    /// Only this role's tasks (phases and stages are always in).
    pub role: Option<String>,
    /// Only the tasks of the roles this person is a member of.
    pub person: Option<String>,
}

/// Why: recorded with the command.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
}

/// Why the channel may send again: recorded with the command.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelResumeBody {
    pub reason: String,
}

/// A note recorded with the task's completion.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub note: Option<String>,
}

/// What an import answers with when the file is recorded, now or before (200).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ImportDone {
    Imported(app::import::Imported),
    AlreadyImported(app::import::AlreadyImported),
}

/// What an import answers with when the file is refused whole (422): nothing was recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ImportRefused {
    Rejected(app::import::Rejected),
    Unreadable(app::import::Unreadable),
}

// ----- shared steps -----

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, Problem> {
    extracted
        .map(|Path(value)| value)
        .map_err(|rejection| Problem::bad_request(rejection.body_text()))
}

fn query<T>(extracted: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    extracted.map(|Query(value)| value).map_err(|rejection| {
        Problem::bad_request(format_args!(
            "the query is not valid: {}",
            rejection.body_text()
        ))
    })
}

/// The body's media type, without its parameters, in lower case.
fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// Reads a body of at most `limit` bytes (413 beyond), each piece within [`IDLE_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Vec<u8>, Problem> {
    if declared_length(headers).is_some_and(|length| length > limit) {
        return Err(Problem::too_large(limit));
    }
    let reading = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(piece) = next_piece(&mut stream).await? {
            if bytes.len() as u64 + piece.len() as u64 > limit {
                return Err(Problem::too_large(limit));
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(bytes)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, reading)
        .await
        .unwrap_or_else(|_| {
            Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format_args!(
                    "the body was not sent within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            ))
        })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

async fn next_piece(
    stream: &mut axum::body::BodyDataStream,
) -> Result<Option<axum::body::Bytes>, Problem> {
    match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format_args!("the body stopped coming for {} s", IDLE_TIMEOUT.as_secs()),
        )),
        Ok(None) => Ok(None),
        Ok(Some(Ok(piece))) => Ok(Some(piece)),
        Ok(Some(Err(error))) => Err(Problem::bad_request(format_args!(
            "the body could not be read: {error}"
        ))),
    }
}

/// A JSON body (`{}` when empty): 415 for another media type, 400 for what is not JSON, 422
/// for JSON of the wrong shape.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, Problem> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        match media_type(headers) {
            Some(kind) if kind == "application/json" || kind.ends_with("+json") => bytes,
            other => {
                return Err(Problem::unsupported_type(format_args!(
                    "this route takes application/json, not {}",
                    other.unwrap_or_else(|| "a body without a content type".to_string())
                )))
            }
        }
    };
    serde_json::from_slice(bytes).map_err(|error| {
        if error.classify() == serde_json::error::Category::Data {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format_args!("the body does not fit this route: {error}"),
            )
        } else {
            Problem::bad_request(format_args!("the body is not valid JSON: {error}"))
        }
    })
}

/// The `Idempotency-Key` of a request, if it has one: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Problem::bad_request(
                "the Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)",
            )
        })?;
    Ok(Some(key.to_string()))
}

/// The command id an `Idempotency-Key` becomes (the same for the same token and key), and the
/// request's fingerprint (method, path with query, body) recorded with it.
fn command_of(
    caller: &Caller,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(Option<Uuid>, Origin), Problem> {
    let Some(key) = idempotency_key(headers)? else {
        return Ok((None, Origin::default()));
    };
    let command_id = app::command_id_for_key(&caller.name, &key);
    let mut hasher = blake3::Hasher::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(
        uri.path_and_query()
            .map(|path| path.as_str())
            .unwrap_or_default()
            .as_bytes(),
    );
    hasher.update(b"\n");
    hasher.update(body);
    let hash = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok((
        Some(command_id),
        Origin {
            fingerprint: Some(Uuid::from_bytes(bytes)),
        },
    ))
}

/// A JSON body with its content type.
fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to an outcome: the view's JSON (the bytes `--json` prints), or a problem.
pub fn answer(outcome: Outcome) -> Answer {
    let response = outcome.map_err(|error| Problem::from(&error))?;
    // An import refused whole (bad rows, an unreadable file) recorded nothing: its view,
    // which locates every problem, is the body of a 422.
    let status = match &response {
        app::Response::Import(
            app::import::ImportView::Rejected(_) | app::import::ImportView::Unreadable(_),
        ) => StatusCode::UNPROCESSABLE_ENTITY,
        app::Response::MetricsImported(view) if view.refused() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    Ok(json_response(status, crate::present::view_json(&response)))
}

async fn ask(api: &Api, request: Request, origin: Origin) -> Answer {
    answer(app::execute_with(api.runtime(), request, origin).await)
}

// ----- reads -----

/// Every campaign's status.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    responses((status = 200, description = "Every campaign's status", body = Vec<app::campaigns::CampaignStatus>),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_campaigns(State(api): State<Api>) -> Answer {
    ask(&api, build::status(None), Origin::default()).await
}

/// A campaign's status.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026")),
    responses((status = 200, description = "The campaign's status", body = app::campaigns::CampaignStatus),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn status(State(api): State<Api>, id: Result<Path<String>, PathRejection>) -> Answer {
    ask(&api, build::status(Some(path(id)?)), Origin::default()).await
}

/// A campaign's events, paged by log position.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/history", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"), HistoryQuery),
    responses((status = 200, description = "Every event (without a query), or a window of them", body = app::campaigns::HistoryBody),
        (status = 404, body = Problem), (status = 422, description = "A limit of 0", body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn history(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    found: Result<Query<HistoryQuery>, QueryRejection>,
) -> Answer {
    let request = build::history(path(id)?, query(found)?);
    ask(&api, request, Origin::default()).await
}

/// A campaign's funnel.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/funnel", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026")),
    responses((status = 200, description = "The funnel", body = app::tasks::FunnelView),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn funnel(State(api): State<Api>, id: Result<Path<String>, PathRejection>) -> Answer {
    ask(&api, build::funnel(path(id)?), Origin::default()).await
}

/// The shop's own numbers over a campaign: per day, per burst stage and overall, with the
/// formulas and the hot products and keywords.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/metrics", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026")),
    responses((status = 200, description = "The shop's numbers", body = app::metrics::MetricsView),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn metrics(State(api): State<Api>, id: Result<Path<String>, PathRejection>) -> Answer {
    ask(&api, build::metrics(path(id)?), Origin::default()).await
}

/// The boss's weekly business report of a campaign (docs/reports.md): one ISO week's GMV,
/// orders, inquiries and fans against the stage targets and the week before, the funnel,
/// reach-outs and their cost, hot products and keywords, each offer's uptake, tasks done per
/// person, what is late and next week's changes and tasks, with the log position it was
/// computed at. The same log gives the same bytes.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/reports/weekly", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"), WeeklyReportQuery),
    responses((status = 200, description = "The report: its data (JSON, the default), or the text, Markdown or HTML `format` asks for",
            content((app::report::WeeklyReportBody = "application/json"), (String = "text/plain"), (String = "text/markdown"), (String = "text/html"))),
        (status = 400, description = "A format other than json, text, markdown or html", body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "A week that is not YEAR-Wnn, outside the campaign, or not started yet", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn weekly_report(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    found: Result<Query<WeeklyReportQuery>, QueryRejection>,
) -> Answer {
    let campaign = path(id)?;
    let found = query(found)?;
    let format = match found.format.as_deref() {
        None => app::report::ReportFormat::Json,
        Some(asked) => app::report::ReportFormat::from_key(asked).ok_or_else(|| {
            Problem::bad_request(format_args!(
                "no format `{}`: json, text, markdown or html",
                battleplan_core::text::printable(asked)
            ))
        })?,
    };
    let request = build::weekly_report(campaign, found, format);
    match app::execute_with(api.runtime(), request, Origin::default()).await {
        Ok(app::Response::WeeklyReport(view)) if view.format != app::report::ReportFormat::Json => {
            let mut response =
                crate::present::report::rendered(&view.report, view.format).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::present::report::content_type(view.format)),
            );
            Ok(response)
        }
        outcome => answer(outcome),
    }
}

/// A campaign's stage targets against what was measured.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/targets", tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026")),
    responses((status = 200, description = "The targets", body = Vec<app::campaigns::TargetRow>),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn targets(State(api): State<Api>, id: Result<Path<String>, PathRejection>) -> Answer {
    ask(&api, build::targets(path(id)?), Origin::default()).await
}

/// A campaign's outbox.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/outbox", tag = "outreach",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"), OutboxQuery),
    responses((status = 200, description = "The outbox", body = app::outreach::OutboxView),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn outbox(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    found: Result<Query<OutboxQuery>, QueryRejection>,
) -> Answer {
    let request = build::outbox(path(id)?, query(found)?);
    ask(&api, request, Origin::default()).await
}

/// A campaign's task board.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/tasks", tag = "tasks",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"), TasksQuery),
    responses((status = 200, description = "The tasks", body = app::tasks::TasksView),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn tasks(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    found: Result<Query<TasksQuery>, QueryRejection>,
) -> Answer {
    let request = build::tasks(path(id)?, query(found)?);
    ask(&api, request, Origin::default()).await
}

/// Who a reach-out would reach, and when.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/audience", tag = "outreach",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"), AudienceQuery),
    responses((status = 200, description = "The audience", body = app::audience::PreviewView),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn audience(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    found: Result<Query<AudienceQuery>, QueryRejection>,
) -> Answer {
    let request = build::audience(path(id)?, query(found)?);
    ask(&api, request, Origin::default()).await
}

/// Why a customer was reached or not.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/customers/{customer}/explain", tag = "outreach",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"),
        ("customer" = String, Path, description = "The customer's id", example = "c-00042"), AsOfQuery),
    responses((status = 200, description = "The explanation", body = app::explain::ExplainView),
        (status = 404, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn explain(
    State(api): State<Api>,
    ids: Result<Path<(String, String)>, PathRejection>,
    found: Result<Query<AsOfQuery>, QueryRejection>,
) -> Answer {
    let (campaign, customer) = path(ids)?;
    let request = build::explain(campaign, customer, query(found)?);
    ask(&api, request, Origin::default()).await
}

/// The chain, the payloads and the stored projection, checked.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "What the check found", body = app::audit::VerifyView),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn audit_verify(State(api): State<Api>) -> Answer {
    ask(&api, build::audit_verify(), Origin::default()).await
}

/// A campaign's calendar (RFC 5545): its phases and burst stages as events, every task
/// occurrence as a to-do with its due instant, reminders and status (docs/calendar.md). For
/// calendar apps, which subscribe to a URL and send no header, the token may be in the query
/// (`?token=`): a token of the role `calendar` only, which reads calendars and nothing else;
/// any other role's token there is refused (403). Every role may send its token in the
/// Authorization header as usual.
#[utoipa::path(get, path = "/api/v1/calendar/{file}", tag = "tasks",
    params(("file" = String, Path, description = "The campaign's id followed by `.ics`", example = "sept-festival-2026.ics"),
        CalendarQuery),
    responses((status = 200, description = "The calendar (iCalendar, RFC 5545)", content_type = "text/calendar", body = String),
        (status = 404, description = "No such campaign, role or person, or an address not ending in `.ics`", body = Problem),
        (status = 401, body = Problem),
        (status = 403, description = "A token whose role may not read calendars, or a token other than a calendar token in the query", body = Problem)),
    security(("bearer" = []), ("calendar_token" = [])))]
pub async fn calendar(
    State(api): State<Api>,
    file: Result<Path<String>, PathRejection>,
    found: Result<Query<CalendarQuery>, QueryRejection>,
) -> Answer {
    let file = path(file)?;
    let Some(campaign) = file.strip_suffix(".ics") else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format_args!(
                "a calendar's address ends in .ics: {}/calendar/{}.ics",
                super::BASE,
                battleplan_core::text::printable(&file)
            ),
        ));
    };
    let request = build::calendar(campaign.to_string(), query(found)?);
    match app::execute_with(api.runtime(), request, Origin::default()).await {
        Ok(app::Response::Calendar(view)) => {
            let disposition = format!("inline; filename=\"{}.ics\"", view.campaign);
            let mut response = view.ics.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/calendar; charset=utf-8"),
            );
            // Personal (a person's tasks), and asked for again by the app: never kept by a
            // shared cache, always checked afresh.
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            Ok(response)
        }
        Ok(_) => Err(Problem::internal("an unexpected answer")),
        Err(error) => Err(Problem::from(&error)),
    }
}

// ----- commands -----

/// Applies a plan: the TOML file is the body.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", params(PlanQuery),
    request_body(content = String, content_type = "text/plain", description = "The plan file (sent as text/plain or application/toml)"),
    responses((status = 200, description = "The plan was applied", body = app::campaigns::ApplyBody),
        (status = 422, description = "The plan has errors", body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn apply_plan(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    found: Result<Query<PlanQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    let plan_query = query(found)?;
    match media_type(&headers).as_deref() {
        Some("application/toml" | "text/plain" | "text/x-toml" | "application/x-toml") => {}
        other => {
            return Err(Problem::unsupported_type(format_args!(
                "a plan is sent as application/toml (or text/plain), not {}",
                other.unwrap_or("a body without a content type")
            )))
        }
    }
    let limit = battleplan_core::plan::parse::MAX_PLAN_BYTES as u64;
    let bytes = read_body(&headers, body, limit).await?;
    let (command_id, origin) = command_of(&caller, &headers, &method, &uri, &bytes)?;
    let source = String::from_utf8(bytes).map_err(|_| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "the plan is not UTF-8 text",
        )
    })?;
    let request = build::apply_plan(&caller, plan_query, source, command_id);
    ask(&api, request, origin).await
}

#[allow(clippy::too_many_arguments)]
async fn act(
    api: Api,
    caller: Caller,
    action: Action,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Answer {
    let campaign = path(id)?;
    let bytes = read_body(&headers, body, MAX_JSON_BYTES).await?;
    let reason: ReasonBody = json_body(&headers, &bytes)?;
    let (command_id, origin) = command_of(&caller, &headers, &method, &uri, &bytes)?;
    ask(
        &api,
        build::act(&caller, campaign, action, reason, command_id),
        origin,
    )
    .await
}

macro_rules! act_route {
    ($name:ident, $action:expr, $path:literal, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, tag = "campaigns",
            params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"),
                ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key gets the first answer", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
            request_body(content = ReasonBody, content_type = "application/json"),
            responses((status = 200, description = "Done", body = app::campaigns::ActBody),
                (status = 404, body = Problem), (status = 409, description = "Refused by the campaign, or the key was used for another request", body = Problem),
                (status = 400, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
                (status = 401, body = Problem), (status = 403, body = Problem)),
            security(("bearer" = [])))]
        pub async fn $name(
            State(api): State<Api>,
            Extension(caller): Extension<Caller>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            id: Result<Path<String>, PathRejection>,
            body: Body,
        ) -> Answer {
            act(api, caller, $action, method, uri, headers, id, body).await
        }
    };
}

act_route!(
    pause,
    Action::Pause,
    "/api/v1/campaigns/{id}/pause",
    "Pauses a campaign's automated transitions."
);
act_route!(
    resume,
    Action::Resume,
    "/api/v1/campaigns/{id}/resume",
    "Resumes a paused campaign."
);
act_route!(
    advance,
    Action::Advance,
    "/api/v1/campaigns/{id}/advance",
    "Enters the next phase or stage now."
);
act_route!(
    cancel,
    Action::Cancel,
    "/api/v1/campaigns/{id}/cancel",
    "Ends a campaign for good."
);

/// Lets a channel the bounce guard paused send again.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/channels/{channel}/resume", tag = "outreach",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"),
        ("channel" = String, Path, description = "The channel's id", example = "email"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body(content = ChannelResumeBody, content_type = "application/json"),
    responses((status = 200, description = "Resumed", body = app::outreach::ChannelResumeView),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn channel_resume(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Answer {
    let (campaign, channel) = path(ids)?;
    let bytes = read_body(&headers, body, MAX_JSON_BYTES).await?;
    let reason: ChannelResumeBody = json_body(&headers, &bytes)?;
    let (command_id, origin) = command_of(&caller, &headers, &method, &uri, &bytes)?;
    let request = build::channel_resume(&caller, campaign, channel, reason, command_id);
    ask(&api, request, origin).await
}

/// A customer's one-click unsubscribe link (RFC 8058), followed: the page that confirms it.
/// No token: the link's MAC names the customer, campaign and channel kind it was made for.
#[utoipa::path(get, path = "/api/v1/unsubscribe/{campaign}/{customer}/{kind}/{mac}", tag = "outreach",
    params(("campaign" = String, Path, description = "The campaign's id", example = "sept-festival-2026"),
        ("customer" = String, Path, description = "The customer's id", example = "c-000417"),
        ("kind" = String, Path, description = "The channel kind", example = "mail"),
        ("mac" = String, Path, description = "The link's signature", example = "00000000000000000000000000000000")),
    responses((status = 200, description = "The page that confirms it", content_type = "text/html", body = String),
        (status = 403, description = "A link changed or not ours", body = Problem),
        (status = 404, body = Problem)))]
pub async fn unsubscribe_page(
    State(api): State<Api>,
    parts: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Answer {
    unsubscribe_link(&api, parts, false).await
}

/// A customer's one-click unsubscribe (RFC 8058's `POST`, or the confirmation page's button):
/// recorded at once; a repeat records nothing.
#[utoipa::path(post, path = "/api/v1/unsubscribe/{campaign}/{customer}/{kind}/{mac}", tag = "outreach",
    params(("campaign" = String, Path, description = "The campaign's id", example = "sept-festival-2026"),
        ("customer" = String, Path, description = "The customer's id", example = "c-000417"),
        ("kind" = String, Path, description = "The channel kind", example = "mail"),
        ("mac" = String, Path, description = "The link's signature", example = "00000000000000000000000000000000")),
    responses((status = 200, description = "Unsubscribed", content_type = "text/html", body = String),
        (status = 403, description = "A link changed or not ours", body = Problem),
        (status = 404, body = Problem)))]
pub async fn unsubscribe(
    State(api): State<Api>,
    parts: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Answer {
    unsubscribe_link(&api, parts, true).await
}

/// A tracked link of a message: records `clicked` for its customer (once per link) and
/// redirects to the address it was made for. A link changed in any part is refused: it never
/// leads anywhere else.
#[utoipa::path(get, path = "/api/v1/click/{mac}/{message}/{target}", tag = "outreach",
    params(("mac" = String, Path, description = "The link's signature", example = "00000000000000000000000000000000"),
        ("message" = String, Path, description = "The message's key, percent-encoded", example = "sept-festival-2026%2Fwarm-up-recall%2Fc-000417%2F1"),
        ("target" = String, Path, description = "Where it leads, percent-encoded", example = "https%3A%2F%2Fshop.example.com%2Fsale")),
    responses((status = 302, description = "To the address the link was made for"),
        (status = 403, description = "A link changed or not ours", body = Problem)))]
pub async fn click(
    State(api): State<Api>,
    parts: Result<Path<(String, String, String)>, PathRejection>,
) -> Answer {
    let not_ours =
        || Problem::forbidden("this link is not valid: it was changed, or it is not one of ours");
    let (mac, message, target) = parts.map(|Path(parts)| parts).map_err(|_| not_ours())?;
    let request = Request::Click(app::outreach::ClickRequest {
        mac,
        message,
        target,
    });
    match app::execute_with(api.runtime(), request, Origin::default()).await {
        Ok(app::Response::Clicked(view)) => {
            // Plain ASCII in the header: any other character percent-encoded.
            let target: String = view
                .target
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() {
                        c.to_string()
                    } else {
                        battleplan_core::outreach::links::percent_encoded(&c.to_string())
                    }
                })
                .collect();
            let location = HeaderValue::from_str(&target).map_err(|_| not_ours())?;
            Ok((
                StatusCode::FOUND,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
            )
                .into_response())
        }
        Ok(_) => Err(Problem::internal("an unexpected answer")),
        Err(error) => Err(Problem::from(&error)),
    }
}

async fn unsubscribe_link(
    api: &Api,
    parts: Result<Path<(String, String, String, String)>, PathRejection>,
    record: bool,
) -> Answer {
    let not_ours = || {
        Problem::forbidden(
            "this unsubscribe link is not valid: it was changed, or it is not one of ours",
        )
    };
    let (campaign, customer, kind, mac) = parts.map(|Path(parts)| parts).map_err(|_| not_ours())?;
    let kind: battleplan_core::plan::model::ChannelKind =
        serde_json::from_value(serde_json::Value::String(kind)).map_err(|_| not_ours())?;
    let request = Request::Unsubscribe(app::outreach::UnsubscribeRequest {
        campaign,
        customer,
        kind,
        mac,
        record,
    });
    match app::execute_with(api.runtime(), request, Origin::default()).await {
        Ok(app::Response::Unsubscribed(view)) => Ok((
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::present::outreach::unsubscribe_page(&view, !record),
        )
            .into_response()),
        Ok(_) => Err(Problem::internal("an unexpected answer")),
        Err(error) => Err(Problem::from(&error)),
    }
}

/// The body of `POST /outcomes`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomesBody {
    /// At most 1,000.
    pub outcomes: Vec<app::answers::OutcomeAnswer>,
}

/// The body of `POST /bounces`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BouncesBody {
    /// At most 1,000.
    pub bounces: Vec<app::answers::BounceAnswer>,
}

/// Outcomes a merchant's system reports (delivered, bounced, opened, replied, ordered,
/// unsubscribed), each with its own id: a repeat of an id is a no-op. Checked whole first: one
/// bad outcome refuses the batch, nothing recorded.
#[utoipa::path(post, path = "/api/v1/outcomes", tag = "outreach",
    request_body(content = OutcomesBody, content_type = "application/json"),
    responses((status = 200, description = "What became of each outcome", body = app::answers::AnswersView),
        (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn report_outcomes(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let bytes = read_body(&headers, body, MAX_JSON_BYTES).await?;
    let body: OutcomesBody = json_body(&headers, &bytes)?;
    let request = build::answers(
        &caller,
        app::answers::AnswerSource::Outcomes,
        body.outcomes,
        Vec::new(),
    );
    ask(&api, request, Origin::default()).await
}

/// The mail service's bounce notifications, in a generic form: a hard bounce makes the address
/// bad (no more mail to it, in any campaign), a complaint unsubscribes the customer from mail,
/// a soft bounce records nothing. Each with its own id: a repeat is a no-op.
#[utoipa::path(post, path = "/api/v1/bounces", tag = "outreach",
    request_body(content = BouncesBody, content_type = "application/json"),
    responses((status = 200, description = "What became of each notification", body = app::answers::AnswersView),
        (status = 422, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn report_bounces(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let bytes = read_body(&headers, body, MAX_JSON_BYTES).await?;
    let body: BouncesBody = json_body(&headers, &bytes)?;
    let request = build::answers(
        &caller,
        app::answers::AnswerSource::Bounces,
        Vec::new(),
        body.bounces,
    );
    ask(&api, request, Origin::default()).await
}

/// Marks a task done.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/tasks/{occurrence}/done", tag = "tasks",
    params(("id" = String, Path, description = "The campaign's id", example = "sept-festival-2026"),
        ("occurrence" = String, Path, description = "The task's occurrence id", example = "create-coupons"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body(content = NoteBody, content_type = "application/json"),
    responses((status = 200, description = "Done", body = app::tasks::TaskDoneView),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn task_done(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Answer {
    let (campaign, occurrence) = path(ids)?;
    let bytes = read_body(&headers, body, MAX_JSON_BYTES).await?;
    let note: NoteBody = json_body(&headers, &bytes)?;
    let (command_id, origin) = command_of(&caller, &headers, &method, &uri, &bytes)?;
    let request = build::task_done(&caller, campaign, occurrence, note, command_id);
    ask(&api, request, origin).await
}

// ----- files -----

/// The format of an upload: `?format=`, or its content type.
fn format_of(headers: &HeaderMap, asked: Option<&str>) -> Result<Format, Problem> {
    match asked.map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => return Ok(Format::Csv),
        Some("jsonl" | "ndjson") => return Ok(Format::Jsonl),
        Some(other) => {
            return Err(Problem::bad_request(format_args!(
                "format={} is not one: csv or jsonl",
                battleplan_core::text::printable(other)
            )))
        }
        None => {}
    }
    match media_type(headers).as_deref() {
        Some("text/csv") => Ok(Format::Csv),
        Some("application/x-ndjson" | "application/jsonl" | "application/x-jsonlines") => {
            Ok(Format::Jsonl)
        }
        other => Err(Problem::unsupported_type(format_args!(
            "an import is text/csv or application/x-ndjson (or say ?format=csv|jsonl), not {}",
            other.unwrap_or("a body without a content type")
        ))),
    }
}

/// Streams an upload into a file of the scratch directory, bounded by the import's limit.
async fn upload(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
    suffix: &str,
) -> Result<tempfile::NamedTempFile, Problem> {
    let limit = battleplan_adapters::import::MAX_FILE_BYTES;
    if declared_length(headers).is_some_and(|length| length > limit) {
        return Err(Problem::too_large(limit));
    }
    let scratch = api.scratch();
    let file = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(suffix)
        .tempfile_in(&scratch)
        .map_err(|error| {
            Problem::internal(format_args!(
                "cannot create a file in {}: {error}",
                scratch.display()
            ))
        })?;
    let written = file
        .reopen()
        .map_err(|error| Problem::internal(format_args!("cannot write the upload: {error}")))?;
    let mut writer = tokio::io::BufWriter::new(tokio::fs::File::from_std(written));
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(piece) = next_piece(&mut stream).await? {
        total += piece.len() as u64;
        if total > limit {
            return Err(Problem::too_large(limit));
        }
        tokio::io::AsyncWriteExt::write_all(&mut writer, &piece)
            .await
            .map_err(|error| Problem::internal(format_args!("cannot write the upload: {error}")))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut writer)
        .await
        .map_err(|error| Problem::internal(format_args!("cannot write the upload: {error}")))?;
    Ok(file)
}

async fn import(
    api: Api,
    caller: Caller,
    kind: ImportKind,
    headers: HeaderMap,
    found: Result<Query<ImportQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    let asked = query(found)?;
    let format = format_of(&headers, asked.format.as_deref())?;
    // A key is accepted and changes nothing: an import's command ids come from the file's
    // digest, so the same file again is recorded once whatever the key.
    idempotency_key(&headers)?;
    let suffix = match format {
        Format::Csv => ".csv",
        Format::Jsonl => ".jsonl",
    };
    let file = upload(&api, &headers, body, suffix).await?;
    let file_name = asked.file_name.unwrap_or_else(|| format!("upload{suffix}"));
    let request = build::import(
        &caller,
        kind,
        file.path().to_path_buf(),
        file_name,
        format,
        asked.skip_bad_rows.unwrap_or(false),
    );
    let answered = ask(&api, request, Origin::default()).await;
    drop(file);
    answered
}

/// Imports the shop's own numbers: the file is the body (docs/metrics.md). Only the periods
/// whose figures change are recorded; the same file again changes nothing.
#[utoipa::path(post, path = "/api/v1/imports/metrics", tag = "imports", params(MetricsQuery),
    request_body(content = String, content_type = "text/csv", description = "The metrics file (CSV, or JSON lines as application/x-ndjson)"),
    responses((status = 200, description = "Recorded, or unchanged", body = app::metrics::MetricsImportView),
        (status = 422, description = "The file was refused whole (nothing was recorded), or the request was",
            content((app::metrics::MetricsImportView = "application/json"), (Problem = "application/problem+json"))),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn import_metrics(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    found: Result<Query<MetricsQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    let asked = query(found)?;
    let format = format_of(&headers, asked.format.as_deref())?;
    // A key is accepted and changes nothing: the import's command id comes from the file's
    // digest and the stream's version, so the same file again records nothing.
    idempotency_key(&headers)?;
    let suffix = match format {
        Format::Csv => ".csv",
        Format::Jsonl => ".jsonl",
    };
    let file = upload(&api, &headers, body, suffix).await?;
    let file_name = asked.file_name.unwrap_or_else(|| format!("upload{suffix}"));
    let request = build::import_metrics(
        &caller,
        file.path().to_path_buf(),
        file_name,
        format,
        asked.zone,
    );
    let answered = ask(&api, request, Origin::default()).await;
    drop(file);
    answered
}

/// Imports customers: the file is the body.
#[utoipa::path(post, path = "/api/v1/imports/customers", tag = "imports", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The customers file (CSV, or JSON lines as application/x-ndjson)"),
    responses((status = 200, description = "Imported now, or before", body = ImportDone),
        (status = 422, description = "The file was refused whole (nothing was recorded), or the request was",
            content((ImportRefused = "application/json"), (Problem = "application/problem+json"))),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn import_customers(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    found: Result<Query<ImportQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    import(api, caller, ImportKind::Customers, headers, found, body).await
}

/// Imports outcomes: the file is the body.
#[utoipa::path(post, path = "/api/v1/imports/outcomes", tag = "imports", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The outcomes file (CSV, or JSON lines as application/x-ndjson)"),
    responses((status = 200, description = "Imported now, or before", body = ImportDone),
        (status = 422, description = "The file was refused whole (nothing was recorded), or the request was",
            content((ImportRefused = "application/json"), (Problem = "application/problem+json"))),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn import_outcomes(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    found: Result<Query<ImportQuery>, QueryRejection>,
    body: Body,
) -> Answer {
    import(api, caller, ImportKind::Outcomes, headers, found, body).await
}

/// The log as JSON lines, streamed (the same lines as `battleplan export`).
#[utoipa::path(get, path = "/api/v1/export", tag = "audit", params(ExportQuery),
    responses((status = 200, description = "The export, one JSON object a line", content_type = "application/x-ndjson", body = String),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn export(
    State(api): State<Api>,
    found: Result<Query<ExportQuery>, QueryRejection>,
) -> Answer {
    let asked = query(found)?;
    let runtime = api.runtime();
    let id = runtime.ids.next_id(runtime.clock.now());
    let out = api.scratch().join(format!("export-{}.jsonl", id.simple()));
    let answered = ask(
        &api,
        build::export(out.clone(), asked.as_of),
        Origin::default(),
    )
    .await;
    let opened = tokio::fs::File::open(&out).await;
    // Open, the file is streamed from its descriptor; its name goes at once.
    let _ = std::fs::remove_file(&out);
    answered?;
    let file = opened
        .map_err(|error| Problem::internal(format_args!("cannot read the export: {error}")))?;
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 64 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(buffer)),
                    file,
                ))
            }
            Err(error) => Some((Err(error), file)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
