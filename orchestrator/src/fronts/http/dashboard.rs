//! The live dashboard under `/dashboard`, served by the daemon with the API (`run --http`):
//! people log in with their token, which becomes a session (an `HttpOnly`, `SameSite=Strict`
//! cookie holding a random id; the daemon keeps the token's digest, never the token, and asks
//! the token file again at every request, so a revoked token ends its sessions at once). Every
//! form that changes something carries the session's own anti-forgery token and is refused
//! without it, or from another origin. Each role sees and may do exactly what it may over the
//! API (`auth::MATRIX`). Pages are made by `present::dashboard` from the same use cases the
//! API answers with; `/dashboard/events` sends the log's position whenever it moves
//! (server-sent events, resumed after `Last-Event-ID`), and the page fetches itself again.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::{allowed, Caller, Operation, Refused, Role};
use super::Api;
use crate::app::{self, Request};
use crate::present::dashboard::{self as pages, Viewer};

/// The session cookie's name.
pub const COOKIE: &str = "bp_session";
/// How long a session lasts without a new login.
pub const SESSION_LENGTH: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 10_000;
/// How long an event stream stays open before the browser reconnects (with `Last-Event-ID`).
const STREAM_LENGTH: Duration = Duration::from_secs(300);

/// The sessions the daemon knows, by the blake3 of their id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    /// The token's keyed digest (`auth::Tokens::digest_of`).
    digest: String,
    /// The session's anti-forgery token, in every form.
    csrf: String,
    expires: Instant,
}

fn key_of(id: &str) -> String {
    blake3::hash(id.as_bytes()).to_hex().to_string()
}

/// 32 random bytes in hex; `None` when the system's randomness cannot be read.
fn random_hex() -> Option<String> {
    let bytes = super::auth::random_bytes().ok()?;
    Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for the token of this digest: its id (for the cookie); `None` without
    /// randomness to make one.
    fn open(&self, digest: String) -> Option<String> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, session| session.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(key, _)| key.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            key_of(&id),
            Session {
                digest,
                csrf,
                expires: now + SESSION_LENGTH,
            },
        );
        Some(id)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let map = self.lock();
        map.get(&key_of(id))
            .filter(|session| session.expires > Instant::now())
            .cloned()
    }

    fn close(&self, id: &str) {
        self.lock().remove(&key_of(id));
    }
}

/// The dashboard's routes.
pub fn router() -> Router<Api> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route(
            "/favicon.ico",
            get(|| async { asset(Path("icon.svg".to_string())).await }),
        )
        .route("/dashboard", get(campaigns))
        .route("/dashboard/login", get(login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/events", get(events))
        .route("/dashboard/assets/{name}", get(asset))
        .route("/dashboard/campaigns/{id}", get(campaign))
        .route("/dashboard/campaigns/{id}/screen", get(screen))
        .route("/dashboard/campaigns/{id}/customer", get(customer))
        .route("/dashboard/campaigns/{id}/report", get(report))
        .route(
            "/dashboard/campaigns/{id}/tasks/{occurrence}/done",
            post(task_done),
        )
}

/// Headers every page carries: no framing, no sniffing, scripts and styles from here only.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secured(response)
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Who the request's session belongs to, and the session; `None` without a live session (or
/// when its token was revoked since).
fn session_of(api: &Api, headers: &HeaderMap) -> Option<(Caller, Session)> {
    let id = cookie_of(headers)?;
    let session = api.inner.sessions.get(&id)?;
    match api.inner.tokens.caller_by_digest(&session.digest) {
        Ok(caller) => Some((caller, session)),
        // The token file could not be read: the session stays for when it can.
        Err(Refused::Unreadable(detail)) => {
            tracing::warn!(target: "http", "dashboard session not checked: {detail}");
            None
        }
        Err(_) => {
            api.inner.sessions.close(&id);
            None
        }
    }
}

fn viewer(caller: &Caller, session: &Session) -> Viewer {
    Viewer {
        name: caller.name.clone(),
        role: caller.role.as_str().to_string(),
        csrf: session.csrf.clone(),
        may_numbers: allowed(caller.role, Operation::Funnel),
        may_history: allowed(caller.role, Operation::History),
        may_explain: allowed(caller.role, Operation::Explain),
        may_task_done: allowed(caller.role, Operation::TaskDone),
    }
}

/// Where to go after logging in: a dashboard path of visible ASCII, else the campaigns.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/dashboard") && next.bytes().all(|byte| byte.is_ascii_graphic()) {
        next
    } else {
        "/dashboard"
    }
}

/// To the login page, coming back here after.
fn to_login(next: &str) -> Response {
    let next = safe_next(next);
    secured(Redirect::to(&format!("/dashboard/login?next={}", pages::encode(next))).into_response())
}

/// The page of a refusal or a failure, for a person.
fn refused(viewer: Option<&Viewer>, status: StatusCode, heading: &str, text: &str) -> Response {
    html(
        status,
        pages::message(viewer, heading, text, Some("/dashboard")),
    )
}

fn app_error(viewer: &Viewer, error: &app::AppError) -> Response {
    let problem = super::problem::Problem::from(error);
    let status = problem.status();
    refused(
        Some(viewer),
        status,
        status.canonical_reason().unwrap_or("Refused"),
        &error.to_string(),
    )
}

/// A session and the right to `operation`, or the response to give instead.
#[allow(clippy::result_large_err, reason = "the error is the response itself")]
fn admitted(
    api: &Api,
    headers: &HeaderMap,
    path: &str,
    operation: Operation,
) -> Result<(Caller, Viewer), Response> {
    let Some((caller, session)) = session_of(api, headers) else {
        return Err(to_login(path));
    };
    let viewer = viewer(&caller, &session);
    if !allowed(caller.role, operation) {
        return Err(refused(
            Some(&viewer),
            StatusCode::FORBIDDEN,
            "Not for your role",
            &format!(
                "{} has the role {}, which may not see this",
                caller.name,
                caller.role.as_str()
            ),
        ));
    }
    Ok((caller, viewer))
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

async fn login_page(Query(query): Query<NextQuery>) -> Response {
    html(
        StatusCode::OK,
        pages::login(None, query.next.as_deref().unwrap_or("/dashboard")),
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Whether a form comes from the dashboard's own pages: an `Origin` (or, without one, a
/// `Referer`) naming another host is refused. Browsers send `Origin` with every POST.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|value| value.to_str().ok());
    match from {
        None => true,
        Some(from) => {
            let rest = from
                .strip_prefix("http://")
                .or_else(|| from.strip_prefix("https://"))
                .unwrap_or("");
            let origin_host = rest.split('/').next().unwrap_or("");
            !host.is_empty() && origin_host == host
        }
    }
}

async fn login(State(api): State<Api>, headers: HeaderMap, form: Form<LoginForm>) -> Response {
    let next = form
        .next
        .clone()
        .unwrap_or_else(|| "/dashboard".to_string());
    if !same_origin(&headers) {
        return html(
            StatusCode::FORBIDDEN,
            pages::login(
                Some("This form must be sent from the dashboard itself."),
                &next,
            ),
        );
    }
    let token = form.token.trim();
    let found = api.inner.tokens.digest_of(token);
    let (caller, digest) = match found {
        Ok(found) => found,
        Err(refusal) => {
            let words = match refusal {
                Refused::Revoked(_) => "That token was revoked.",
                Refused::Unreadable(_) => "The tokens cannot be read; ask the operator.",
                Refused::Missing | Refused::Unknown => "That token is not known.",
            };
            return html(StatusCode::UNAUTHORIZED, pages::login(Some(words), &next));
        }
    };
    if caller.role == Role::Calendar {
        return html(
            StatusCode::FORBIDDEN,
            pages::login(
                Some("A calendar token reads calendars and nothing else; log in with your own token."),
                &next,
            ),
        );
    }
    // A login ends the session this browser had, if any.
    if let Some(old) = cookie_of(&headers) {
        api.inner.sessions.close(&old);
    }
    let Some(id) = api.inner.sessions.open(digest) else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::login(Some("The system's randomness cannot be read: no session can be made; ask the operator."), &next),
        );
    };
    tracing::info!(target: "http", token = %caller.name, "dashboard login");
    let mut response = Redirect::to(safe_next(&next)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LENGTH.as_secs()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    secured(response)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Whether the form's anti-forgery token is the session's (compared in constant time).
fn csrf_holds(session: &Session, given: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn logout(State(api): State<Api>, headers: HeaderMap, form: Form<CsrfForm>) -> Response {
    if let (Some(id), Some((_, session))) = (cookie_of(&headers), session_of(&api, &headers)) {
        if !csrf_holds(&session, &form.csrf) || !same_origin(&headers) {
            // Another site cannot log a person out either.
            return secured(Redirect::to("/dashboard").into_response());
        }
        api.inner.sessions.close(&id);
    }
    let mut response = Redirect::to("/dashboard/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("bp_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    secured(response)
}

async fn asset(Path(name): Path<String>) -> Response {
    match pages::asset(&name) {
        Some((kind, bytes)) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            secured(response)
        }
        None => refused(
            None,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such file.",
        ),
    }
}

async fn campaigns(State(api): State<Api>, headers: HeaderMap) -> Response {
    let (_, viewer) = match admitted(&api, &headers, "/dashboard", Operation::ListCampaigns) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let position = app::dashboard::head(api.runtime()).await.unwrap_or(0);
    match app::execute(api.runtime(), Request::Status { campaign: None }).await {
        Ok(app::Response::Status(view)) => {
            let statuses = match view.body {
                app::campaigns::StatusBody::All(all) => all,
                app::campaigns::StatusBody::One(one) => vec![*one],
            };
            html(
                StatusCode::OK,
                pages::campaigns(&viewer, &statuses, position),
            )
        }
        Ok(_) => refused(
            Some(&viewer),
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unexpected answer",
            "the campaigns' status came back as something else",
        ),
        Err(error) => app_error(&viewer, &error),
    }
}

async fn page_view(
    api: &Api,
    caller: &Caller,
    campaign: String,
) -> Result<app::dashboard::CampaignPageView, app::AppError> {
    let question = app::dashboard::PageQuestion {
        campaign,
        numbers: allowed(caller.role, Operation::Funnel),
        history: allowed(caller.role, Operation::History),
    };
    let ctx = app::Ctx::new(api.runtime());
    app::dashboard::campaign_page(&ctx, &question).await
}

/// A page made of the campaign's page view: the page itself, or the big screen.
async fn campaign_view(
    api: &Api,
    headers: &HeaderMap,
    id: String,
    suffix: &str,
    render: fn(&Viewer, &app::dashboard::CampaignPageView) -> String,
) -> Response {
    let path = format!("{}{suffix}", pages::campaign_url(&id));
    let (caller, viewer) = match admitted(api, headers, &path, Operation::Status) {
        Ok(found) => found,
        Err(response) => return response,
    };
    match page_view(api, &caller, id).await {
        Ok(view) => html(StatusCode::OK, render(&viewer, &view)),
        Err(error) => app_error(&viewer, &error),
    }
}

async fn campaign(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    campaign_view(&api, &headers, id, "", pages::campaign).await
}

async fn screen(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    campaign_view(&api, &headers, id, "/screen", pages::screen).await
}

#[derive(Debug, Default, Deserialize)]
pub struct WeekQuery {
    #[serde(default)]
    week: Option<String>,
}

async fn report(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(campaign): Path<String>,
    Query(query): Query<WeekQuery>,
    uri: axum::http::Uri,
) -> Response {
    let path = format!(
        "{}/report{}",
        pages::campaign_url(&campaign),
        uri.query()
            .map(|query| format!("?{query}"))
            .unwrap_or_default()
    );
    let (_, viewer) = match admitted(&api, &headers, &path, Operation::WeeklyReport) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let position = app::dashboard::head(api.runtime()).await.unwrap_or(0);
    let question = app::report::WeeklyQuestion {
        campaign: campaign.clone(),
        week: query.week.clone().filter(|week| !week.trim().is_empty()),
        format: app::report::ReportFormat::Html,
    };
    match app::execute(api.runtime(), Request::WeeklyReport(question)).await {
        Ok(app::Response::WeeklyReport(view)) => {
            let week = view.report.week.clone();
            html(
                StatusCode::OK,
                pages::report(&viewer, &campaign, &week, Some(&view), None, position),
            )
        }
        Ok(_) => refused(
            Some(&viewer),
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unexpected answer",
            "the weekly report came back as something else",
        ),
        Err(error) => {
            let status = super::problem::Problem::from(&error).status();
            let week = query.week.unwrap_or_default();
            html(
                status,
                pages::report(
                    &viewer,
                    &campaign,
                    &week,
                    None,
                    Some(&error.to_string()),
                    position,
                ),
            )
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CustomerQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    as_of: Option<String>,
}

async fn customer(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(campaign): Path<String>,
    Query(query): Query<CustomerQuery>,
    uri: axum::http::Uri,
) -> Response {
    let path = format!(
        "{}/customer{}",
        pages::campaign_url(&campaign),
        uri.query()
            .map(|query| format!("?{query}"))
            .unwrap_or_default()
    );
    let (_, viewer) = match admitted(&api, &headers, &path, Operation::Explain) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let customer = query.id.trim().to_string();
    let written = query.as_of.clone().unwrap_or_default();
    let refused_with = |status: StatusCode, message: &str, position: u64| {
        html(
            status,
            pages::customer(
                &viewer,
                &campaign,
                &customer,
                &written,
                None,
                None,
                Some(message),
                position,
            ),
        )
    };
    let as_of = match written.trim() {
        "" => None,
        text => match crate::fronts::cli::parse_instant(text) {
            Ok(at) => Some(at),
            Err(message) => return refused_with(StatusCode::UNPROCESSABLE_ENTITY, &message, 0),
        },
    };
    let position = app::dashboard::head(api.runtime()).await.unwrap_or(0);
    let explain = if customer.is_empty() {
        None
    } else {
        let question = app::explain::ExplainQuestion {
            campaign: campaign.clone(),
            customer: customer.clone(),
            as_of,
        };
        match app::execute(api.runtime(), Request::Explain(question)).await {
            Ok(app::Response::Explain(view)) => Some(view),
            Ok(_) => None,
            Err(error) => {
                let status = super::problem::Problem::from(&error).status();
                return refused_with(status, &error.to_string(), position);
            }
        }
    };
    let history = match app::execute(
        api.runtime(),
        Request::History {
            campaign: Some(campaign.clone()),
            as_of,
            after: None,
            limit: None,
        },
    )
    .await
    {
        Ok(app::Response::History(view)) => Some(view.body.events().to_vec()),
        _ => None,
    };
    html(
        StatusCode::OK,
        pages::customer(
            &viewer,
            &campaign,
            &customer,
            &written,
            explain.as_ref(),
            history.as_deref(),
            None,
            position,
        ),
    )
}

async fn task_done(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((campaign, occurrence)): Path<(String, String)>,
    form: Form<CsrfForm>,
) -> Response {
    let back = pages::campaign_url(&campaign);
    let Some((caller, session)) = session_of(&api, &headers) else {
        return refused(
            None,
            StatusCode::UNAUTHORIZED,
            "Log in first",
            "This form needs a session: log in again.",
        );
    };
    let viewer = viewer(&caller, &session);
    if !csrf_holds(&session, &form.csrf) || !same_origin(&headers) {
        tracing::warn!(target: "http", token = %caller.name, "dashboard form refused: not from the dashboard's own page");
        return refused(
            Some(&viewer),
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from the dashboard's own page (its anti-forgery token is missing or wrong).",
        );
    }
    if !allowed(caller.role, Operation::TaskDone) {
        return refused(
            Some(&viewer),
            StatusCode::FORBIDDEN,
            "Not for your role",
            &format!(
                "{} has the role {}, which may not mark tasks done",
                caller.name,
                caller.role.as_str()
            ),
        );
    }
    let request = Request::TaskDone(app::tasks::TaskDoneRequest {
        campaign: Some(campaign),
        occurrence,
        actor: caller.name.clone(),
        note: None,
        command_id: None,
    });
    match app::execute(api.runtime(), request).await {
        Ok(_) => secured(Redirect::to(&back).into_response()),
        Err(error) => app_error(&viewer, &error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    after: Option<u64>,
}

/// The log's position, each time it moves: `event: position`, `id` and `data` the position.
/// A reconnect resumes after `Last-Event-ID` (the browser sends it), else after `?after=`.
async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Response {
    if session_of(&api, &headers).is_none() {
        return refused(
            None,
            StatusCode::UNAUTHORIZED,
            "Log in first",
            "The live updates need a session.",
        );
    }
    let resumed = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let after = match resumed.or(query.after) {
        Some(after) => after,
        None => app::dashboard::head(api.runtime()).await.unwrap_or(0),
    };
    let deadline = tokio::time::Instant::now() + STREAM_LENGTH;
    let stream = futures_util::stream::unfold((api, after), move |(api, after)| async move {
        let waited =
            tokio::time::timeout_at(deadline, app::dashboard::wait_beyond(api.runtime(), after))
                .await;
        match waited {
            Ok(Ok(head)) => {
                let event = Event::default()
                    .event("position")
                    .id(head.to_string())
                    .data(head.to_string());
                Some((Ok::<Event, Infallible>(event), (api, head)))
            }
            // The stream's time is up, or the store failed: the browser reconnects.
            _ => None,
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
