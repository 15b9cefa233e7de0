//! The HTTP API of `battleplan run --http`: tokens and roles (every route x every role, and no
//! token, a revoked one, a wrong one), the actor of what a token records, idempotency keys, and
//! refusals as problem details. A small HTTP/1.1 client over a loopback socket asks.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use battleplan_tests::http::{self, Answer};
use battleplan_tests::{bp, ok, run_in, Daemon};
use serde_json::Value;

const CAMPAIGN: &str = "sept-festival-2026";
const APPLIED_AT: &str = "2026-08-20T00:00:00+08:00";
const NOW: &str = "2026-08-21T11:00:00+08:00";

/// One request on its own connection.
fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    http::send(address, method, path, headers, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// [`request`], its `Content-Length` saying `declared` bytes whatever the body holds.
fn request_declaring(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    declared: usize,
) -> Answer {
    http::send_declaring(address, method, path, headers, body, declared)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// The example plan applied, the daemon running with the HTTP API on a free port, and a token
/// per role (and one revoked).
struct Setup {
    dir: tempfile::TempDir,
    daemon: Daemon,
    address: String,
    tokens: std::collections::BTreeMap<&'static str, String>,
}

fn token(dir: &Path, name: &str, role: &str) -> String {
    let made = ok(bp(
        dir,
        &["token", "create", "--name", name, "--role", role],
    ));
    assert!(made.stderr.contains("shown this once"), "{}", made.stderr);
    let token = made.stdout.trim().to_string();
    assert!(
        token.starts_with("bpt_") && !token.contains('\n'),
        "{token}"
    );
    token
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    ok(run_in(dir.path(), &["init", "--out", "plan.toml"]));
    ok(bp(
        dir.path(),
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let mut tokens = std::collections::BTreeMap::new();
    for (name, role) in [
        ("mia", "manager"),
        ("bob", "sales"),
        ("zhou", "boss"),
        ("ada", "auditor"),
        ("gone", "manager"),
    ] {
        tokens.insert(role_key(name), token(dir.path(), name, role));
    }
    let mut daemon = Daemon::start(
        dir.path(),
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            NOW,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let line = daemon.wait_for("HTTP API on http://");
    let address = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/api/v1")
        .to_string();
    let written = std::fs::read_to_string(dir.path().join("data/http.addr")).unwrap();
    assert_eq!(written.trim(), address);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/http.addr"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "http.addr is {mode:o}");
    }
    daemon.wait_for("caught up");
    // Revoked while the daemon runs: it sees the change.
    ok(bp(dir.path(), &["token", "revoke", "gone"]));
    Setup {
        dir,
        daemon,
        address,
        tokens,
    }
}

fn role_key(name: &str) -> &'static str {
    match name {
        "mia" => "manager",
        "bob" => "sales",
        "zhou" => "boss",
        "ada" => "auditor",
        _ => "revoked",
    }
}

impl Setup {
    fn ask(&self, who: &str, method: &str, path: &str, body: &[u8], kind: &str) -> Answer {
        let bearer = match who {
            "none" => None,
            "wrong" => Some(format!("Bearer bpt_{}", "0".repeat(64))),
            role => Some(format!("Bearer {}", self.tokens[role])),
        };
        let mut headers = vec![("Content-Type", kind)];
        if let Some(bearer) = bearer.as_deref() {
            headers.push(("Authorization", bearer));
        }
        request(&self.address, method, path, &headers, body)
    }

    fn history(&self) -> Vec<Value> {
        let run = ok(bp(self.dir.path(), &["history", CAMPAIGN, "--json"]));
        serde_json::from_str::<Value>(&run.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let (code, log) = self.daemon.terminate();
        // A clean stop removes the address file.
        if code == 0 {
            assert!(
                !self.dir.path().join("data/http.addr").exists(),
                "{}",
                log.join("\n")
            );
        }
    }
}

/// A route of the matrix: method, path, body, content type, the roles that may.
struct Route {
    method: &'static str,
    path: String,
    body: &'static [u8],
    kind: &'static str,
    allowed: &'static [&'static str],
}

const ALL: &[&str] = &["manager", "sales", "boss", "auditor"];
const READERS: &[&str] = &["manager", "boss", "auditor"];
const AUDIT: &[&str] = &["manager", "auditor"];
const MANAGER: &[&str] = &["manager"];
const SALES: &[&str] = &["manager", "sales"];

fn routes() -> Vec<Route> {
    let c = format!("/api/v1/campaigns/{CAMPAIGN}");
    // Commands aim at a campaign that does not exist (or carry a body that is refused): the
    // role is checked first, and nothing is recorded whoever asks.
    let ghost = "/api/v1/campaigns/ghost";
    let json = "application/json";
    let route = |method, path: String, body, kind, allowed| Route {
        method,
        path,
        body,
        kind,
        allowed,
    };
    vec![
        route("GET", "/api/v1/campaigns".into(), b"", json, ALL),
        route("GET", c.clone(), b"", json, ALL),
        route("GET", format!("{c}/tasks"), b"", json, ALL),
        route("GET", format!("{c}/funnel"), b"", json, READERS),
        route("GET", format!("{c}/targets"), b"", json, READERS),
        route("GET", format!("{c}/outbox"), b"", json, READERS),
        route(
            "GET",
            format!("{c}/audience?reach_out=visitor-coupons"),
            b"",
            json,
            READERS,
        ),
        route("GET", format!("{c}/history"), b"", json, AUDIT),
        route(
            "GET",
            format!("{c}/customers/c-1/explain"),
            b"",
            json,
            AUDIT,
        ),
        route("GET", "/api/v1/export".into(), b"", json, AUDIT),
        route("GET", "/api/v1/audit/verify".into(), b"", json, AUDIT),
        route(
            "POST",
            "/api/v1/campaigns".into(),
            b"not a plan",
            "application/toml",
            MANAGER,
        ),
        route(
            "POST",
            format!("{ghost}/pause"),
            b"{\"reason\":\"r\"}",
            json,
            MANAGER,
        ),
        route(
            "POST",
            format!("{ghost}/resume"),
            b"{\"reason\":\"r\"}",
            json,
            MANAGER,
        ),
        route(
            "POST",
            format!("{ghost}/advance"),
            b"{\"reason\":\"r\"}",
            json,
            MANAGER,
        ),
        route(
            "POST",
            format!("{ghost}/cancel"),
            b"{\"reason\":\"r\"}",
            json,
            MANAGER,
        ),
        route(
            "POST",
            format!("{ghost}/channels/email/resume"),
            b"{\"reason\":\"r\"}",
            json,
            MANAGER,
        ),
        route(
            "POST",
            format!("{ghost}/tasks/create-coupons/done"),
            b"{}",
            json,
            SALES,
        ),
        route(
            "POST",
            "/api/v1/imports/customers".into(),
            b"not,a\nheader\n",
            "text/csv",
            MANAGER,
        ),
        route(
            "POST",
            "/api/v1/imports/outcomes".into(),
            b"not,a\nheader\n",
            "text/csv",
            SALES,
        ),
        route(
            "POST",
            "/api/v1/outcomes".into(),
            b"{\"outcomes\": []}",
            json,
            SALES,
        ),
        route(
            "POST",
            "/api/v1/bounces".into(),
            b"{\"bounces\": []}",
            json,
            SALES,
        ),
    ]
}

#[test]
fn every_route_answers_every_role_as_the_matrix_says() {
    let setup = setup();
    // A customer, for explain.
    let imported = setup.ask(
        "manager",
        "POST",
        "/api/v1/imports/customers",
        b"id,name,email\nc-1,Li Na,li@example.com\n",
        "text/csv",
    );
    assert_eq!(imported.status, 200, "{}", imported.text());
    let before = setup.history().len();
    for route in routes() {
        for who in [
            "manager", "sales", "boss", "auditor", "none", "revoked", "wrong",
        ] {
            let answer = setup.ask(who, route.method, &route.path, route.body, route.kind);
            let what = format!("{who} {} {}: {}", route.method, route.path, answer.text());
            if ["none", "revoked", "wrong"].contains(&who) {
                assert_eq!(answer.status, 401, "{what}");
                assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
                assert_eq!(answer.problem()["code"], "unauthorized", "{what}");
            } else if route.allowed.contains(&who) {
                assert!(
                    ![401, 403].contains(&answer.status) && answer.status < 500,
                    "{what}"
                );
                if route.method == "GET" {
                    assert_eq!(answer.status, 200, "{what}");
                }
            } else {
                assert_eq!(answer.status, 403, "{what}");
                assert_eq!(answer.problem()["code"], "forbidden", "{what}");
            }
        }
    }
    // HEAD runs GET's handler: it needs GET's token and role.
    let head = setup.ask("none", "HEAD", "/api/v1/export", b"", "application/json");
    assert_eq!(head.status, 401, "{head:?}");
    let head = setup.ask("sales", "HEAD", "/api/v1/export", b"", "application/json");
    assert_eq!(head.status, 403, "{head:?}");
    // Every change was refused or aimed at nothing: the campaign's history is as it was.
    assert_eq!(setup.history().len(), before);
    // The tokens need none: health, readiness, metrics, the document.
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let answer = setup.ask("none", "GET", path, b"", "text/plain");
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    }
    let metrics = setup
        .ask("none", "GET", "/metrics", b"", "text/plain")
        .text();
    assert!(
        metrics.contains("battleplan_http_requests_total{method=\"GET\",route=\"/api/v1/campaigns/{id}/history\",status=\"403\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("battleplan_log_position "), "{metrics}");
    let document = setup
        .ask("none", "GET", "/api/v1/openapi.json", b"", "text/plain")
        .json();
    assert!(document["paths"]["/api/v1/campaigns/{id}/history"]["get"].is_object());
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

#[test]
fn the_auditor_reads_the_trail_and_a_sales_token_is_the_actor_of_its_task_done() {
    let setup = setup();
    let c = format!("/api/v1/campaigns/{CAMPAIGN}");
    for path in [format!("{c}/history"), "/api/v1/audit/verify".to_string()] {
        let answer = setup.ask("auditor", "GET", &path, b"", "application/json");
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    }
    let export = setup.ask("auditor", "GET", "/api/v1/export", b"", "application/json");
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = export
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{}", export.text());
    assert_eq!(lines[0]["event_type"], "PlanApplied");
    // The export's scratch file is gone once streamed.
    let scratch = setup.dir.path().join("data/http-scratch");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    let done = setup.ask(
        "sales",
        "POST",
        &format!("{c}/tasks/create-coupons/done"),
        b"{\"note\": \"five coupons live\"}",
        "application/json",
    );
    assert_eq!(done.status, 200, "{}", done.text());
    let history = setup.history();
    let recorded = history
        .iter()
        .find(|event| event["type"] == "TaskDone")
        .unwrap_or_else(|| panic!("no TaskDone in {history:#?}"));
    assert_eq!(recorded["actor"], "bob");
    assert_eq!(recorded["reason"], "five coupons live");
}

#[test]
fn an_idempotency_key_retried_gets_the_first_answer_and_another_body_is_refused() {
    let setup = setup();
    let pause = format!("/api/v1/campaigns/{CAMPAIGN}/pause");
    let ask = |key: &str, body: &[u8]| {
        let bearer = format!("Bearer {}", setup.tokens["manager"]);
        request(
            &setup.address,
            "POST",
            &pause,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            body,
        )
    };
    let first = ask("pause-1", b"{\"reason\": \"stock check\"}");
    assert_eq!(first.status, 200, "{}", first.text());
    let after_first = setup.history();
    let paused: Vec<&Value> = after_first
        .iter()
        .filter(|event| event["type"] == "CampaignPaused")
        .collect();
    assert_eq!(paused.len(), 1, "{after_first:#?}");
    assert_eq!(paused[0]["actor"], "mia");
    let retry = ask("pause-1", b"{\"reason\": \"stock check\"}");
    assert_eq!(retry.status, 200, "{}", retry.text());
    let position = paused[0]["position"].to_string();
    assert!(retry.text().contains(&position), "{}", retry.text());
    assert_eq!(setup.history(), after_first, "the retry recorded something");

    let other = ask("pause-1", b"{\"reason\": \"another reason\"}");
    assert_eq!(other.status, 409, "{}", other.text());
    let problem = other.problem();
    assert_eq!(problem["code"], "conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("used before for a different request"),
        "{problem:#}"
    );
    assert_eq!(setup.history(), after_first);

    // The same for a command recorded on its own stream (a task done).
    let done = format!("/api/v1/campaigns/{CAMPAIGN}/tasks/create-coupons/done");
    let bearer = format!("Bearer {}", setup.tokens["sales"]);
    let task = |key: &str, body: &[u8]| {
        request(
            &setup.address,
            "POST",
            &done,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            body,
        )
    };
    assert_eq!(task("done-1", b"{\"note\": \"live\"}").status, 200);
    let after_task = setup.history();
    let retried = task("done-1", b"{\"note\": \"live\"}");
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(setup.history(), after_task);
    let changed = task("done-1", b"{\"note\": \"not live\"}");
    assert_eq!(changed.status, 409, "{}", changed.text());
    assert_eq!(changed.problem()["code"], "conflict");
    // Another token's same key is another command.
    assert_eq!(setup.history(), after_task);
}

#[test]
fn refusals_are_problem_details_never_500s() {
    let setup = setup();
    let resume = format!("/api/v1/campaigns/{CAMPAIGN}/resume");
    let bad_json = setup.ask(
        "manager",
        "POST",
        &resume,
        b"{\"reason\":",
        "application/json",
    );
    assert_eq!(bad_json.status, 400, "{}", bad_json.text());
    assert!(bad_json.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let wrong_shape = setup.ask(
        "manager",
        "POST",
        &resume,
        b"{\"reasn\":\"x\"}",
        "application/json",
    );
    assert_eq!(wrong_shape.status, 422, "{}", wrong_shape.text());
    wrong_shape.problem();
    let wrong_type = setup.ask(
        "manager",
        "POST",
        &resume,
        b"{\"reason\":\"x\"}",
        "text/plain",
    );
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text());
    wrong_type.problem();
    // Refused on its declared length, before a byte of it is read.
    let bearer = format!("Bearer {}", setup.tokens["manager"]);
    let too_large = request_declaring(
        &setup.address,
        "POST",
        &resume,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        b"",
        2 * 1024 * 1024,
    );
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    assert_eq!(too_large.problem()["code"], "too_large");
    let plan_type = setup.ask(
        "manager",
        "POST",
        "/api/v1/campaigns",
        b"x = 1",
        "application/json",
    );
    assert_eq!(plan_type.status, 415, "{}", plan_type.text());
    plan_type.problem();
    let import_type = setup.ask(
        "manager",
        "POST",
        "/api/v1/imports/customers",
        b"id\n",
        "image/png",
    );
    assert_eq!(import_type.status, 415, "{}", import_type.text());
    import_type.problem();
    let unknown = setup.ask(
        "manager",
        "GET",
        "/api/v1/campaigns/no-such-campaign",
        b"",
        "application/json",
    );
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.problem()["code"], "unknown_campaign");
    let nowhere = setup.ask("manager", "GET", "/api/v1/nowhere", b"", "application/json");
    assert_eq!(nowhere.status, 404, "{}", nowhere.text());
    nowhere.problem();
    let method = setup.ask(
        "manager",
        "DELETE",
        "/api/v1/campaigns",
        b"",
        "application/json",
    );
    assert_eq!(method.status, 405, "{}", method.text());
    method.problem();
    let bad_query = setup.ask(
        "manager",
        "GET",
        &format!("/api/v1/campaigns/{CAMPAIGN}/history?limit=many"),
        b"",
        "application/json",
    );
    assert_eq!(bad_query.status, 400, "{}", bad_query.text());
    bad_query.problem();
    let bad_key = request(
        &setup.address,
        "POST",
        &resume,
        &[
            (
                "Authorization",
                &format!("Bearer {}", setup.tokens["manager"]),
            ),
            ("Content-Type", "application/json"),
            ("Idempotency-Key", ""),
        ],
        b"{}",
    );
    assert_eq!(bad_key.status, 400, "{}", bad_key.text());
    bad_key.problem();
}

#[test]
fn tokens_are_listed_without_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path(), "li.na", "boss");
    let list = ok(bp(dir.path(), &["token", "list"])).stdout;
    assert!(list.contains("li.na") && list.contains("boss"), "{list}");
    let listed = ok(bp(dir.path(), &["token", "list", "--json"])).stdout;
    let kept = std::fs::read_to_string(dir.path().join("data/tokens.json")).unwrap();
    let secret = token.trim_start_matches("bpt_");
    for text in [&list, &listed, &kept] {
        assert!(!text.contains(secret), "{text}");
    }
    use std::os::unix::fs::PermissionsExt;
    for file in ["tokens.json", "token.key", "tokens.lock"] {
        let mode = std::fs::metadata(dir.path().join("data").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
    let again = bp(
        dir.path(),
        &["token", "create", "--name", "li.na", "--role", "sales"],
    );
    assert_eq!(again.code, 2, "{}", again.stderr);
    ok(bp(dir.path(), &["token", "revoke", "li.na"]));
    let list = ok(bp(dir.path(), &["token", "list"])).stdout;
    assert!(list.contains("revoked"), "{list}");
    let unknown = bp(dir.path(), &["token", "revoke", "nobody"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
}

/// A customer's one-click unsubscribe link, as a mail carries it: no token, the link signed for
/// the customer, campaign and channel kind with the daemon's key (`DATA/link.key`). GET shows
/// the page that confirms it; POST records it at once, once; a changed link is refused and
/// records nothing.
#[test]
fn an_unsubscribe_link_works_without_a_token_and_only_as_signed() {
    use battleplan_core::outreach::links;
    use battleplan_core::plan::model::ChannelKind;

    let setup = setup();
    let imported = setup.ask(
        "manager",
        "POST",
        "/api/v1/imports/customers",
        b"id,name,email\nc-1,Li Na,li@example.com\nc-2,Wang Wei,wang@example.com\n",
        "text/csv",
    );
    assert_eq!(imported.status, 200, "{}", imported.text());
    let key: [u8; 32] = std::fs::read(setup.dir.path().join("data/link.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let link = |customer: &str| {
        links::unsubscribe_url("/api/v1", &key, CAMPAIGN, customer, ChannelKind::Mail)
    };
    let events = || {
        setup
            .ask("auditor", "GET", "/api/v1/export", b"", "application/json")
            .text()
            .lines()
            .count()
    };
    let before = events();
    // The page: a form that confirms it, in the customer's language and in English.
    let page = setup.ask("none", "GET", &link("c-1"), b"", "text/plain");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text().contains("<form method=\"post\">"),
        "{}",
        page.text()
    );
    assert!(page.text().contains("退订"), "{}", page.text());
    assert_eq!(events(), before, "a GET records nothing");
    // Changed links: another customer's MAC, a changed MAC, another kind, a kind that is none.
    let mac = link("c-1").rsplit('/').next().unwrap().to_string();
    let mut changed = mac.clone().into_bytes();
    changed[5] = if changed[5] == b'a' { b'b' } else { b'a' };
    let changed = String::from_utf8(changed).unwrap();
    for forged in [
        format!("/api/v1/unsubscribe/{CAMPAIGN}/c-2/mail/{mac}"),
        format!("/api/v1/unsubscribe/{CAMPAIGN}/c-1/mail/{changed}"),
        format!("/api/v1/unsubscribe/{CAMPAIGN}/c-1/in_site/{mac}"),
        format!("/api/v1/unsubscribe/{CAMPAIGN}/c-1/pigeon/{mac}"),
        format!("/api/v1/unsubscribe/ghost/c-1/mail/{mac}"),
    ] {
        for method in ["GET", "POST"] {
            let answer = setup.ask("none", method, &forged, b"", "text/plain");
            assert_eq!(answer.status, 403, "{method} {forged}: {}", answer.text());
            assert_eq!(answer.problem()["code"], "forbidden", "{forged}");
        }
    }
    assert_eq!(events(), before, "a forged link records nothing");
    // One click (RFC 8058's POST): recorded at once, by the customer.
    let done = setup.ask(
        "none",
        "POST",
        &link("c-1"),
        b"List-Unsubscribe=One-Click",
        "application/x-www-form-urlencoded",
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("已退订"), "{}", done.text());
    assert_eq!(events(), before + 1);
    let explained = setup
        .ask(
            "manager",
            "GET",
            &format!("/api/v1/campaigns/{CAMPAIGN}/customers/c-1/explain"),
            b"",
            "application/json",
        )
        .json();
    assert_eq!(
        explained["profile"]["unsubscribed_from"],
        serde_json::json!(["mail"])
    );
    let other = setup
        .ask(
            "manager",
            "GET",
            &format!("/api/v1/campaigns/{CAMPAIGN}/customers/c-2/explain"),
            b"",
            "application/json",
        )
        .json();
    assert_eq!(other["profile"]["unsubscribed_from"], serde_json::json!([]));
    let export = setup
        .ask("auditor", "GET", "/api/v1/export", b"", "application/json")
        .text();
    // The last event before the export's trailer.
    let lines: Vec<&str> = export.lines().collect();
    let last: Value = serde_json::from_str(lines[lines.len() - 2]).unwrap();
    assert_eq!(last["event_type"], "OutcomeRecorded", "{last}");
    assert_eq!(
        last["metadata"]["actor"], "customer c-1 (one-click link)",
        "{last}"
    );
    // Again: the same page says it is done, and nothing more is recorded.
    let again = setup.ask("none", "POST", &link("c-1"), b"", "text/plain");
    assert_eq!(again.status, 200, "{}", again.text());
    let page = setup.ask("none", "GET", &link("c-1"), b"", "text/plain");
    assert!(!page.text().contains("<form"), "{}", page.text());
    assert_eq!(events(), before + 1);
}

#[test]
fn outcomes_and_bounces_sent_by_a_system_are_recorded_once_and_a_bad_batch_records_nothing() {
    let setup = setup();
    let imported = setup.ask(
        "manager",
        "POST",
        "/api/v1/imports/customers",
        b"id,name,email\nc-1,Li Na,li@example.com\nc-2,Wang Wei,wang@example.com\nc-3,Zhou Lei,zhou@example.com\n",
        "text/csv",
    );
    assert_eq!(imported.status, 200, "{}", imported.text());
    let events = || {
        setup
            .ask("auditor", "GET", "/api/v1/export", b"", "application/json")
            .text()
            .lines()
            .filter(|line| line.contains("\"OutcomeRecorded\""))
            .count()
    };
    let profile = |customer: &str| {
        setup
            .ask(
                "manager",
                "GET",
                &format!("/api/v1/campaigns/{CAMPAIGN}/customers/{customer}/explain"),
                b"",
                "application/json",
            )
            .json()["profile"]
            .clone()
    };
    let post = |path: &str, body: &str| {
        setup.ask("sales", "POST", path, body.as_bytes(), "application/json")
    };
    // A batch with problems: every one located, nothing recorded.
    let bad = post(
        "/api/v1/outcomes",
        &format!(
            r#"{{"outcomes": [
                {{"id": "e-1", "customer": "c-1", "outcome": "replied"}},
                {{"id": "e-2", "customer": "c-9", "outcome": "replied"}},
                {{"id": "e-3", "customer": "c-1", "outcome": "opened"}},
                {{"id": "e-1", "customer": "c-2", "outcome": "ordered", "amount": "10.00", "campaign": "{CAMPAIGN}", "reach_out": "nope"}},
                {{"id": "e-5", "customer": "c-2", "outcome": "replied", "amount": "10.00", "at": "2099-01-01T00:00:00Z"}},
                {{"id": "e-6", "message": "{CAMPAIGN}/warm-up-recall/c-1/1", "outcome": "replied"}}
            ]}}"#
        ),
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    let detail = bad.problem()["detail"].as_str().unwrap().to_string();
    for expected in [
        "outcomes[1].customer: no customer `c-9`",
        "outcomes[2].channel: a opened outcome says its channel",
        "outcomes[3].id: `e-1` is also outcomes[0]'s",
        "outcomes[3].reach_out: no reach-out `nope`",
        "outcomes[4].amount: an amount is only for `ordered`",
        "outcomes[4].at: 2099-01-01T00:00:00+00:00 is later than now",
        "outcomes[5].message: no message",
    ] {
        assert!(detail.contains(expected), "{expected} in {detail}");
    }
    assert_eq!(events(), 0, "a refused batch records nothing");

    // A good batch: recorded, then sent again (a retry), recorded once.
    let batch = format!(
        r#"{{"outcomes": [
            {{"id": "e-1", "customer": "c-1", "outcome": "replied", "at": "2026-08-20T10:00:00+08:00"}},
            {{"id": "e-2", "customer": "c-2", "outcome": "ordered", "campaign": "{CAMPAIGN}", "reach_out": "warm-up-recall", "amount": "260.00"}},
            {{"id": "e-3", "customer": "c-3", "outcome": "unsubscribed", "channel": "mail"}}
        ]}}"#
    );
    let first = post("/api/v1/outcomes", &batch);
    assert_eq!(first.status, 200, "{}", first.text());
    let view = first.json();
    assert_eq!(view["recorded"], 3, "{view}");
    assert_eq!(view["answers"][1]["campaign"], CAMPAIGN);
    assert_eq!(events(), 3);
    let again = post("/api/v1/outcomes", &batch).json();
    assert_eq!(again["recorded"], 0, "{again}");
    assert_eq!(again["repeated"], 3, "{again}");
    assert_eq!(events(), 3, "a repeat records nothing");
    assert_eq!(
        profile("c-3")["unsubscribed_from"],
        serde_json::json!(["mail"])
    );

    // Bounces: a hard bounce makes the address bad, a complaint unsubscribes from mail, a soft
    // one records nothing; an address no customer has refuses the batch.
    let unknown = post(
        "/api/v1/bounces",
        r#"{"bounces": [{"id": "b-1", "kind": "hard", "recipient": "nobody@example.com"}]}"#,
    );
    assert_eq!(unknown.status, 422, "{}", unknown.text());
    assert!(
        unknown.problem()["detail"]
            .as_str()
            .unwrap()
            .contains("bounces[0].recipient: no customer has the address"),
        "{}",
        unknown.text()
    );
    assert_eq!(profile("c-1")["email_ok"], true);
    let bounces = post(
        "/api/v1/bounces",
        r#"{"bounces": [
            {"id": "b-1", "kind": "hard", "recipient": "LI@example.com", "detail": "550 5.1.1 user unknown"},
            {"id": "b-2", "kind": "complaint", "recipient": "wang@example.com"},
            {"id": "b-3", "kind": "soft", "recipient": "zhou@example.com"}
        ]}"#,
    );
    assert_eq!(bounces.status, 200, "{}", bounces.text());
    let view = bounces.json();
    assert_eq!(
        (&view["recorded"], &view["ignored"]),
        (&serde_json::json!(2), &serde_json::json!(1)),
        "{view}"
    );
    assert_eq!(view["answers"][0]["customer"], "c-1");
    assert_eq!(view["answers"][0]["outcome"], "bounced");
    assert_eq!(profile("c-1")["email_ok"], false);
    assert_eq!(
        profile("c-2")["unsubscribed_from"],
        serde_json::json!(["mail"])
    );
    assert_eq!(events(), 5);
    // The service's words are not in the log.
    let export = setup
        .ask("auditor", "GET", "/api/v1/export", b"", "application/json")
        .text();
    assert!(!export.contains("user unknown"));
    assert!(
        export.contains("\"actor\":\"bob\""),
        "the sales token is the actor"
    );
    // The boss and the auditor may not send answers.
    for who in ["boss", "auditor"] {
        let refused = setup.ask(
            who,
            "POST",
            "/api/v1/bounces",
            b"{\"bounces\": []}",
            "application/json",
        );
        assert_eq!(refused.status, 403, "{who}");
    }
}

#[test]
fn a_tracked_link_records_one_click_and_leads_only_where_it_was_made_for() {
    use battleplan_core::outreach::links;

    let setup = setup();
    let imported = setup.ask(
        "manager",
        "POST",
        "/api/v1/imports/customers",
        b"id,name,email\nc-1,Li Na,li@example.com\n",
        "text/csv",
    );
    assert_eq!(imported.status, 200, "{}", imported.text());
    let key: [u8; 32] = std::fs::read(setup.dir.path().join("data/link.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let message = format!("{CAMPAIGN}/warm-up-recall/c-1/1");
    let target = "https://shop.example.com/sale?from=mail&id=7";
    let link = links::click_url("/api/v1", &key, &message, target);
    let clicks = || {
        setup
            .ask("auditor", "GET", "/api/v1/export", b"", "application/json")
            .text()
            .lines()
            .filter(|line| line.contains("\"outcome\":\"clicked\""))
            .count()
    };
    // Followed: to the address, and `clicked` recorded for the customer, once however often.
    for _ in 0..2 {
        let followed = setup.ask("none", "GET", &link, b"", "text/plain");
        assert_eq!(followed.status, 302, "{}", followed.text());
        assert_eq!(followed.header("location"), Some(target));
    }
    assert_eq!(clicks(), 1);
    let explained = setup
        .ask(
            "manager",
            "GET",
            &format!("/api/v1/campaigns/{CAMPAIGN}/customers/c-1/explain"),
            b"",
            "application/json",
        )
        .json();
    let entry = &explained["entries"][0];
    assert_eq!(entry["what"], "clicked", "{explained}");
    assert_eq!(
        entry["why"], "recorded as it came back, by customer c-1 (tracked link)",
        "{explained}"
    );
    // Changed to lead elsewhere (an open redirect), or for another message: refused.
    let mac = link.split('/').nth(4).unwrap();
    for forged in [
        format!(
            "/api/v1/click/{mac}/{}/{}",
            links::percent_encoded(&message),
            links::percent_encoded("https://evil.example/")
        ),
        format!(
            "/api/v1/click/{mac}/{}/{}",
            links::percent_encoded(&format!("{CAMPAIGN}/warm-up-recall/c-2/1")),
            links::percent_encoded(target)
        ),
        format!(
            "/api/v1/click/{}/{}/{}",
            "0".repeat(32),
            links::percent_encoded(&message),
            links::percent_encoded(target)
        ),
    ] {
        let refused = setup.ask("none", "GET", &forged, b"", "text/plain");
        assert_eq!(refused.status, 403, "{forged}: {}", refused.text());
        assert!(refused.header("location").is_none());
    }
    assert_eq!(clicks(), 1);
}
