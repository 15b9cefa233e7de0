//! The HTTP API (`battleplan run --http ADDR`): `/api/v1/...` served from the daemon's runtime,
//! the one the scheduler and the control socket use. Each route maps to an `app::Request`,
//! calls `app::execute_with` and sends the view's JSON (`present::view_json`, the very bytes
//! `--json` prints) or a problem detail (`problem`). Tokens and roles: `auth`. The document
//! of the API: `openapi`. Counters and `/metrics`: `metrics`.
//!
//! Bounded everywhere: at most [`MAX_IN_FLIGHT`] requests at once (more are refused `busy`,
//! 503 with `Retry-After`), bodies within each route's limit (413), [`REQUEST_TIMEOUT`] for a
//! request (uploads and exports instead have [`IDLE_TIMEOUT`] between two pieces), and a
//! stopping daemon drains the requests under way for at most [`SHUTDOWN_GRACE`].

pub mod auth;
pub mod dashboard;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request as HttpRequest, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::{watch, Semaphore};

use crate::kernel::runtime::Runtime;
use auth::{Operation, Refused, Role, Tokens};
use problem::Problem;

/// The prefix of every resource.
pub const BASE: &str = "/api/v1";
/// The file naming the address the API listens on, while it does.
pub const ADDRESS_FILE: &str = "http.addr";
/// Uploads and exports on their way, in the data directory (emptied when the daemon starts).
pub const SCRATCH: &str = "http-scratch";
/// The most requests served at once; more are refused as busy.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long a client may take to send a JSON or plan body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a body (an upload too) may pause between two pieces.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping daemon lets the requests under way finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The most connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a connection may take to send a request's head (or stay idle between two).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest JSON body.
pub const MAX_JSON_BYTES: u64 = 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    data: PathBuf,
    tokens: Tokens,
    metrics: metrics::Metrics,
    permits: Arc<Semaphore>,
    /// The dashboard's sessions.
    sessions: dashboard::Sessions,
}

impl Api {
    pub fn new(runtime: Runtime, data: &Path) -> Api {
        Api {
            inner: Arc::new(Inner {
                runtime,
                data: data.to_path_buf(),
                tokens: Tokens::new(data),
                metrics: metrics::Metrics::default(),
                permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                sessions: dashboard::Sessions::default(),
            }),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn data(&self) -> &Path {
        &self.inner.data
    }

    /// Where uploads and exports are written on their way.
    pub fn scratch(&self) -> PathBuf {
        self.inner.data.join(SCRATCH)
    }
}

/// What the routing layer learned of a request, handed to the logging layer with the response.
#[derive(Debug, Clone)]
struct Observed {
    route: String,
    caller: Option<String>,
}

/// The route's operation in the role matrix, by method and route template.
pub fn operation_of(method: &Method, route: &str) -> Option<Operation> {
    // axum answers HEAD with the GET handler: it needs what GET needs.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    routes::ROUTES
        .iter()
        .find(|(listed_method, listed_route, _)| {
            listed_method == method && format!("{BASE}{listed_route}") == route
        })
        .and_then(|(_, _, operation)| *operation)
}

/// The token a calendar's URL carries in its query string (`?token=`): calendar apps subscribe
/// to a URL and send no header. Only [`Operation::Calendar`] looks there.
fn token_in_query(operation: Operation, uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    if operation != Operation::Calendar {
        return None;
    }
    axum::extract::Query::<TokenQuery>::try_from_uri(uri)
        .ok()
        .and_then(|query| query.0.token)
}

/// The routing layer: the token and the role, for a route that needs them; the route template
/// and the token's name for the log (never the URI: a calendar's carries its token).
async fn authorize(State(api): State<Api>, mut request: HttpRequest, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_default();
    let mut observed = Observed {
        route: route.clone(),
        caller: None,
    };
    let response = match operation_of(request.method(), &route) {
        None => next.run(request).await,
        Some(operation) => {
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok());
            let in_query = token_in_query(operation, request.uri());
            let found = match &in_query {
                Some(token) => api.inner.tokens.caller_of(token),
                None => api.inner.tokens.caller(authorization),
            };
            match found {
                Err(Refused::Missing) if operation == Operation::Calendar => {
                    Problem::unauthorized(
                        "a calendar needs a token: `?token=` with a calendar token (`battleplan token create --name NAME --role calendar`), or `Authorization: Bearer TOKEN`",
                    )
                    .into_response()
                }
                Err(refused) => refusal(refused).into_response(),
                Ok(caller) if in_query.is_some() && caller.role != Role::Calendar => {
                    observed.caller = Some(caller.name.clone());
                    // A URL is seen by everything it passes through (calendar apps, proxies,
                    // browser histories): a token that can do more must never sit in one.
                    Problem::forbidden(format_args!(
                        "the token {} has the role {}: only a calendar token may be sent in a URL; create one with `battleplan token create --name NAME --role calendar` (it reads calendars and nothing else), send this one in the Authorization header instead, and revoke it (`battleplan token revoke {}`) if this URL was shared",
                        caller.name,
                        caller.role.as_str(),
                        caller.name
                    ))
                    .into_response()
                }
                Ok(caller) => {
                    observed.caller = Some(caller.name.clone());
                    if auth::allowed(caller.role, operation) {
                        request.extensions_mut().insert(caller);
                        next.run(request).await
                    } else {
                        Problem::forbidden(format_args!(
                            "the token {} has the role {}, which may not do this",
                            caller.name,
                            caller.role.as_str()
                        ))
                        .into_response()
                    }
                }
            }
        }
    };
    let mut response = response;
    response.extensions_mut().insert(observed);
    response
}

fn refusal(refused: Refused) -> Problem {
    match refused {
        Refused::Missing => Problem::unauthorized(
            "this route needs a token: send `Authorization: Bearer TOKEN` (`battleplan token create` makes one)",
        ),
        Refused::Unknown => Problem::unauthorized("the token is not known"),
        Refused::Revoked(name) => {
            Problem::unauthorized(format_args!("the token {name} was revoked"))
        }
        Refused::Unreadable(detail) => Problem::internal(detail),
    }
}

/// The outer layer: the bound on requests at once, one log line per request and the counters.
async fn observe(State(api): State<Api>, request: HttpRequest, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = match api.inner.permits.clone().try_acquire_owned() {
        Err(_) => Problem::busy(format_args!(
            "{MAX_IN_FLIGHT} requests are under way; try again shortly"
        ))
        .into_response(),
        // The work itself is not cut short (an audit of millions of events takes minutes):
        // the time limits are on the client, reading its body (`routes::read_body`).
        Ok(_permit) => next.run(request).await,
    };
    let observed = response.extensions().get::<Observed>().cloned();
    let route = observed
        .as_ref()
        .map(|observed| observed.route.as_str())
        .filter(|route| !route.is_empty())
        .unwrap_or("unmatched");
    let caller = observed
        .as_ref()
        .and_then(|observed| observed.caller.as_deref())
        .unwrap_or("-");
    let status = response.status();
    let latency = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "http",
        method = %method,
        route,
        status = status.as_u16(),
        latency_ms = format_args!("{latency:.1}"),
        token = caller,
        "http request"
    );
    api.inner.metrics.count(&method, route, status.as_u16());
    response
}

/// The application, with every layer.
pub fn router(api: Api) -> Router {
    routes::router(api.clone())
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(api.clone(), observe))
        .with_state(api)
}

async fn not_found(request: HttpRequest) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format_args!(
            "there is no resource at {}; {BASE}/openapi.json lists them",
            battleplan_core::text::printable(request.uri().path())
        ),
    )
}

async fn method_not_allowed(request: HttpRequest) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format_args!(
            "{} is not allowed on {}; {BASE}/openapi.json lists the methods",
            request.method(),
            battleplan_core::text::printable(request.uri().path())
        ),
    )
}

/// Listens on `address` (in the runtime: tokio's listener).
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen for HTTP on {address}: {error}"))
}

/// Says where the API listens: one line on standard error and the file `DATA/http.addr`
/// (0600), for the scripts and tests that asked for port 0.
pub fn announce(data: &Path, address: SocketAddr) -> Result<(), String> {
    let path = data.join(ADDRESS_FILE);
    let describe = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    let mut temporary = tempfile::Builder::new()
        .prefix(".http-addr-")
        .tempfile_in(data)
        .map_err(describe)?;
    std::io::Write::write_all(&mut temporary, format!("{address}\n").as_bytes())
        .map_err(describe)?;
    temporary
        .persist(&path)
        .map_err(|error| describe(error.error))?;
    // Said once the file is there: a reader of the line finds it.
    eprintln!("battleplan: HTTP API on http://{address}{BASE}");
    Ok(())
}

/// Empties the scratch directory (a daemon killed mid-upload leaves its file there) and makes
/// it, private.
pub fn prepare_scratch(data: &Path) -> Result<(), String> {
    let scratch = data.join(SCRATCH);
    match std::fs::remove_dir_all(&scratch) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot empty {}: {error}", scratch.display())),
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch)
            .map_err(|error| format!("cannot create {}: {error}", scratch.display()))?;
    }
    Ok(())
}

/// Returns once the daemon is stopping.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves until `shutdown`, then drains the requests under way for at most
/// [`SHUTDOWN_GRACE`]; removes `DATA/http.addr` on the way out. At most [`MAX_CONNECTIONS`]
/// connections at once (the next wait in the listener's queue), each given
/// [`HEADER_TIMEOUT`] to send a request's head, idle ones included.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    mut shutdown: watch::Receiver<bool>,
) {
    let data = api.data().to_path_buf();
    let app = router(api);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, or another failure: pause rather than spin.
                    tracing::warn!("cannot accept an HTTP connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = stopped(&mut shutdown) => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stopping = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                () = stopped(&mut stopping) => {
                    // Finish the request under way, take no other.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            "stopping: {} HTTP connection(s) still under way after {} s are dropped",
            connections.len(),
            SHUTDOWN_GRACE.as_secs()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    let _ = std::fs::remove_file(data.join(ADDRESS_FILE));
    let _ = std::fs::remove_dir_all(data.join(SCRATCH));
}
