//! The API's OpenAPI document, generated from the handlers' annotations and the request,
//! response and problem types (never written by hand).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "battleplan",
        description = "Promotion campaigns run from a battle plan: status, history, outreach, tasks, imports and the audit trail. See docs/http-api.md."
    ),
    paths(
        routes::list_campaigns,
        routes::apply_plan,
        routes::status,
        routes::history,
        routes::funnel,
        routes::targets,
        routes::outbox,
        routes::tasks,
        routes::audience,
        routes::explain,
        routes::pause,
        routes::resume,
        routes::advance,
        routes::cancel,
        routes::channel_resume,
        routes::task_done,
        routes::import_customers,
        routes::import_outcomes,
        routes::export,
        routes::audit_verify,
    ),
    components(schemas(super::problem::Problem, super::auth::Role)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Response {
    let body = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refs(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    if key == "$ref" {
                        found.push(value.as_str().unwrap_or_default().to_string());
                    }
                    refs(value, found);
                }
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_document_has_every_route_and_no_dangling_reference() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (method, path, operation) in routes::ROUTES {
            if operation.is_none() {
                continue;
            }
            let documented = &document["paths"][format!("{}{path}", super::super::BASE)]
                [method.as_str().to_ascii_lowercase()];
            assert!(documented.is_object(), "{method} {path} is not documented");
        }
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{reference}"));
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{reference} is not in the document"
            );
        }
    }
}
