//! `/healthz`, `/readyz` and `/metrics` (the Prometheus text format), which need no token.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Api;
use crate::app::observe;

/// The HTTP requests answered, by method, route template and status.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Metrics {
    pub fn count(&self, method: &Method, route: &str, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(String, String, u16), u64> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Liveness: the process serves.
pub async fn healthz() -> Response {
    text(
        StatusCode::OK,
        "ok\n".to_string(),
        "text/plain; charset=utf-8",
    )
}

/// The log's head and how far the stored campaigns projection is behind it.
async fn positions(api: &Api) -> Result<(u64, u64), String> {
    observe::positions(api.runtime())
        .await
        .map(|positions| (positions.head, positions.lag))
        .map_err(|error| error.to_string())
}

/// Readiness: the store answers and the campaigns projection has caught up with the log.
pub async fn readyz(State(api): State<Api>) -> Response {
    match positions(&api).await {
        Ok((_, 0)) => text(
            StatusCode::OK,
            "ready\n".to_string(),
            "text/plain; charset=utf-8",
        ),
        Ok((_, lag)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("catching up: the campaigns projection is {lag} event(s) behind the log\n"),
            "text/plain; charset=utf-8",
        ),
        Err(error) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {error}\n"),
            "text/plain; charset=utf-8",
        ),
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics, in the Prometheus text format.
pub async fn metrics(State(api): State<Api>) -> Response {
    let mut out = String::new();
    match positions(&api).await {
        Ok((head, lag)) => {
            let _ = writeln!(
                out,
                "# HELP battleplan_events_appended_total Events in the log."
            );
            let _ = writeln!(out, "# TYPE battleplan_events_appended_total counter");
            let _ = writeln!(out, "battleplan_events_appended_total {head}");
            let _ = writeln!(
                out,
                "# HELP battleplan_log_position The log's head position."
            );
            let _ = writeln!(out, "# TYPE battleplan_log_position gauge");
            let _ = writeln!(out, "battleplan_log_position {head}");
            let _ = writeln!(
                out,
                "# HELP battleplan_projection_lag_events Events of the log a stored projection has not applied yet."
            );
            let _ = writeln!(out, "# TYPE battleplan_projection_lag_events gauge");
            let _ = writeln!(
                out,
                "battleplan_projection_lag_events{{projection=\"{}\"}} {lag}",
                observe::PROJECTION
            );
        }
        Err(error) => {
            tracing::warn!("metrics: the store does not answer: {error}");
        }
    }
    // Sends as the outbox projection holds them now (caught up by the requests and the
    // scheduler; not caught up here, to keep a scrape cheap).
    match observe::sends(api.runtime()).await {
        Ok(counts) => {
            let _ = writeln!(
                out,
                "# HELP battleplan_sends Customer messages by campaign, channel and status (pending, sent, not_sent), as the outbox holds them."
            );
            let _ = writeln!(out, "# TYPE battleplan_sends gauge");
            for count in counts {
                for (status, number) in [
                    ("pending", count.pending),
                    ("sent", count.sent),
                    ("not_sent", count.not_sent),
                ] {
                    let _ = writeln!(
                        out,
                        "battleplan_sends{{campaign=\"{}\",channel=\"{}\",status=\"{status}\"}} {number}",
                        escape(&count.campaign),
                        escape(&count.channel)
                    );
                }
            }
        }
        Err(error) => tracing::warn!("metrics: the store does not answer: {error}"),
    }
    let _ = writeln!(
        out,
        "# HELP battleplan_http_requests_total HTTP requests answered, by method, route and status."
    );
    let _ = writeln!(out, "# TYPE battleplan_http_requests_total counter");
    for ((method, route, status), count) in api.inner.metrics.snapshot() {
        let _ = writeln!(
            out,
            "battleplan_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
            escape(&method),
            escape(&route)
        );
    }
    text(
        StatusCode::OK,
        out,
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

fn text(status: StatusCode, body: String, kind: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}
