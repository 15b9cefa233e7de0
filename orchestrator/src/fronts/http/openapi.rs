//! The API's OpenAPI document, generated from the handlers' annotations and the request,
//! response and problem types (never written by hand).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::problem::PROBLEM_JSON;
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
        routes::metrics,
        routes::weekly_report,
        routes::import_metrics,
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
        routes::unsubscribe_page,
        routes::unsubscribe,
        routes::click,
        routes::import_customers,
        routes::import_outcomes,
        routes::report_outcomes,
        routes::report_bounces,
        routes::export,
        routes::audit_verify,
        routes::calendar,
    ),
    components(schemas(super::problem::Problem, super::auth::Role)),
    modifiers(&Bearer, &Refusals)
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
        // Calendar apps send no header: a calendar token (and only one) may be in the query.
        components.add_security_scheme(
            "calendar_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A token of the role `calendar` (`battleplan token create --name NAME --role calendar`), for the calendar only",
            ))),
        );
    }
}

/// Every refusal is a problem detail (`application/problem+json`), and every route says each
/// status it can refuse with: the ones a route's annotation names, and those any route of its
/// kind can answer (no token, a role that may not, too many requests at once, an internal
/// failure; a query, path or header that cannot be read; a body of the wrong type, too large
/// or too slow; a campaign or other resource that is not there).
struct Refusals;

impl Refusals {
    fn common(operation: &Operation, path: &str) -> Vec<(&'static str, &'static str)> {
        let mut common = Vec::new();
        let has_body = operation.request_body.is_some();
        let has_parameters = operation
            .parameters
            .as_ref()
            .is_some_and(|parameters| !parameters.is_empty());
        if has_body || has_parameters {
            common.push((
                "400",
                "The query, the path, a header or the body cannot be read",
            ));
        }
        if operation.security.is_some() {
            common.push(("401", "No token, or one that is not known or was revoked"));
            common.push(("403", "The token's role may not do this"));
        }
        if path.contains('{') {
            common.push(("404", "No such campaign (or task, channel, customer)"));
        }
        if has_body {
            common.push(("408", "The body was not sent in time"));
            common.push(("413", "The body is larger than this route takes"));
            common.push(("415", "The body's content type is not one this route takes"));
        }
        common.push(("500", "The server failed"));
        common.push((
            "503",
            "Too many requests at once, or the store cannot be used (with Retry-After)",
        ));
        common
    }
}

impl Modify for Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let common = Refusals::common(operation, path);
                let responses = &mut operation.responses.responses;
                // A refusal the annotation names (`body = Problem`) has the problem's media type.
                for response in responses.values_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let named_problem =
                        response
                            .content
                            .get("application/json")
                            .is_some_and(|content| {
                                matches!(&content.schema, Some(RefOr::Ref(reference))
                                if reference.ref_location == "#/components/schemas/Problem")
                            });
                    if named_problem {
                        response.content.shift_remove("application/json");
                        response.content.insert(PROBLEM_JSON.to_string(), problem());
                    }
                }
                for (status, description) in common {
                    responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(PROBLEM_JSON, problem())
                                .build(),
                        )
                    });
                }
            }
        }
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
