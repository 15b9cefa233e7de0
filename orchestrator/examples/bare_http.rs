//! The baseline of the HTTP benchmark (BENCHMARKS.md, "HTTP API"): a bare axum server that
//! answers `GET /<name>` with the bytes of `DIR/<name>.json`, read once at start, and nothing
//! else. Measured beside the daemon in the same run, it shows what the daemon's own work
//! (authentication, the application layer, rendering) costs over axum and the machine.
//!
//! `cargo run --release --example bare_http -- 127.0.0.1:8099 DIR`

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

type Bodies = Arc<HashMap<String, Vec<u8>>>;

async fn answer(State(bodies): State<Bodies>, Path(name): Path<String>) -> impl IntoResponse {
    match bodies.get(&name) {
        Some(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let (Some(address), Some(dir)) = (arguments.next(), arguments.next()) else {
        return Err("usage: bare_http ADDRESS DIR".into());
    };
    let mut bodies = HashMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                bodies.insert(stem.to_string(), std::fs::read(&path)?);
            }
        }
    }
    let app = Router::new()
        .route("/{name}", get(answer))
        .with_state(Arc::new(bodies));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        eprintln!("bare_http on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await
    })?;
    Ok(())
}
