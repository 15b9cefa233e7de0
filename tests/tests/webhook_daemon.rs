//! Webhooks end to end, with the real binary and a real receiver on loopback
//! (`tests/webhook_receiver.py`, verifying each signature with the Python `standardwebhooks`
//! package): the plan's in-site channel names the receiver (`[channels.in-site.webhook]`, the
//! secret in the daemon's environment), and the daemon's in-site messages arrive there, signed,
//! once each. The receiver answers some customers 500 twice, 429 with `Retry-After` once, 410,
//! holds one request past the timeout, and answers one customer 500 always: each is handed over
//! again at its `retry_at` as the clock moves, every attempt is an event in the log, the 410 is
//! refused as gone, and the customer always answered 500 is given up as `undelivered` after the
//! plan's three attempts. The channel tracks its links: each goes through the daemon's signed
//! redirect.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::smtp::python;
use battleplan_tests::webhook::{WebhookReceiver, SECRET};
use battleplan_tests::{bp, instant, mutate, ok, planned, run_in, Daemon};

const CAMPAIGN: &str = "sept-festival-2026";
const REACH_OUT: &str = "visitor-coupons";
const WARM_UP: &str = "2026-08-26T10:00:00+08:00";
/// Later instants the daemon is run at: each retry falls due by the next.
const LATER: [&str; 3] = [
    "2026-08-26T10:10:00+08:00",
    "2026-08-26T11:00:00+08:00",
    "2026-08-26T13:00:00+08:00",
];

/// The example plan, its in-site channel without caps or fatigue and POSTing to `url`, applied,
/// and `count` generated customers imported.
fn campaign(dir: &Path, count: u64, url: &str) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let webhook = format!(
        "fatigue = \"0d\"\ntrack_links = true\nwebhook = {{ url = \"{url}\", secret_env = \"SHOP_WEBHOOK_SECRET\", timeout = \"2s\", attempts = 3 }}\n"
    );
    let plan = mutate(
        &example,
        &[
            (
                "per_account_daily_cap = 20  # 20 buyers per account per day\n",
                "",
            ),
            (
                "off your first order: {{ coupon.code }}\"",
                "off your first order: {{ coupon.code }} https://shop.example.com/coupons?from=in-site\"",
            ),
            (
                "accounts = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\nfatigue = \"7d\"\n",
                &format!("accounts = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\n{webhook}"),
            ),
        ],
    );
    assert!(plan.contains("secret_env"), "the plan was not changed");
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count,
            seed: 11,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    ));
}

/// The daemon at `at`, with the secret in its environment, run until everything due then is
/// done.
fn run_at(dir: &Path, at: &str) {
    let mut daemon = Daemon::start_with(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            at,
            "--until",
            at,
            "--public-url",
            "https://bp.shop.example.com",
        ],
        &[("SHOP_WEBHOOK_SECRET", SECRET)],
    );
    let (code, lines) = daemon.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    assert!(
        lines.iter().all(|line| !line.contains("MfKQ9r8")),
        "the secret in the daemon's output"
    );
}

/// The log's events of the in-site channel, by type.
fn events(dir: &Path) -> Vec<serde_json::Value> {
    let file = dir.join("export.jsonl");
    let _ = std::fs::remove_file(&file);
    ok(bp(dir, &["export", "--out", "export.jsonl"]));
    let export = std::fs::read_to_string(&file).unwrap();
    assert!(!export.contains("MfKQ9r8"), "the secret in the log");
    export
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["payload"]["channel"] == "in-site")
        .collect()
}

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|event| event["event_type"] == kind)
        .collect()
}

#[test]
fn in_site_messages_go_to_the_webhook_and_each_fault_is_handled_with_every_attempt_in_the_log() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The receiver's port is known before the plan: started once with no faults to learn who
    // is planned, then again with the faults on those customers.
    let probe = WebhookReceiver::start(&python, &BTreeMap::new());
    campaign(dir, 600, &probe.url());
    let customers = planned(dir, CAMPAIGN, REACH_OUT, WARM_UP);
    assert!(customers.len() >= 8, "{} planned", customers.len());
    let faults: BTreeMap<String, String> = customers
        .iter()
        .zip(["500x2", "429x1", "410", "hangx1", "500"])
        .map(|(customer, fault)| (customer.clone(), fault.to_string()))
        .collect();
    drop(probe);
    let receiver = WebhookReceiver::start(&python, &faults);
    let plan = std::fs::read_to_string(dir.join("plan.toml"))
        .unwrap()
        .replace(
            &format!("http://127.0.0.1:{}/hooks/battleplan", plan_port(dir)),
            &receiver.url(),
        );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    ));

    run_at(dir, WARM_UP);
    let first = of_type(&events(dir), "MessageSent").len();
    assert_eq!(
        first,
        customers.len() - faults.len(),
        "all but the faulty ones at once"
    );
    // `status` says the channel is retrying, since when, and what the receiver last said.
    let status = |json: bool| {
        let mut arguments = vec!["status", CAMPAIGN, "--clock-at", LATER[2]];
        if json {
            arguments.push("--json");
        }
        ok(bp(dir, &arguments)).stdout
    };
    let in_site = |status: &str| {
        let status: serde_json::Value = serde_json::from_str(status).unwrap();
        status["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|channel| channel["id"] == "in-site")
            .cloned()
            .unwrap()
    };
    let retrying = in_site(&status(true));
    assert_eq!(retrying["state"], "retrying", "{retrying}");
    assert_eq!(retrying["via"], format!("webhook {}", receiver.url()));
    assert_eq!(retrying["retrying"], 4, "{retrying}");
    assert_eq!(retrying["retrying_since"], "2026-08-26T10:00:00+08:00");
    assert!(retrying["last_deferral"].as_str().is_some(), "{retrying}");
    let text = status(false);
    assert!(
        text.contains("channel in-site is RETRYING 4 send(s)"),
        "{text}"
    );
    assert!(
        text.contains("channel mail sending via file outbox"),
        "{text}"
    );
    for at in LATER {
        run_at(dir, at);
    }
    assert_eq!(in_site(&status(true))["state"], "sending");

    let events = events(dir);
    let sent: BTreeSet<String> = of_type(&events, "MessageSent")
        .iter()
        .map(|event| event["payload"]["to"].as_str().unwrap().to_string())
        .collect();
    // Those the receiver's answers ended (not those left out before any hand-over).
    let not_sent: BTreeMap<String, &serde_json::Value> = of_type(&events, "NotSent")
        .into_iter()
        .filter(|event| {
            ["refused", "undelivered"].contains(&event["payload"]["reason"].as_str().unwrap())
        })
        .map(|event| {
            (
                event["payload"]["customer"].as_str().unwrap().to_string(),
                event,
            )
        })
        .collect();
    let deferred = of_type(&events, "DeliveryDeferred");
    let tries = |customer: &str| {
        deferred
            .iter()
            .filter(|event| event["payload"]["customer"] == customer)
            .count()
    };
    let [twice, busy, gone, hang, always] = [0, 1, 2, 3, 4].map(|i| customers[i].as_str());
    // Deferred, then sent on a later attempt: each failed attempt one event.
    assert!(sent.contains(twice) && tries(twice) == 2, "{twice}");
    assert!(sent.contains(busy) && tries(busy) == 1, "{busy}");
    assert!(sent.contains(hang) && tries(hang) == 1, "{hang}");
    let busy_retry = deferred
        .iter()
        .find(|event| event["payload"]["customer"] == busy)
        .unwrap();
    assert!(
        busy_retry["payload"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("429"),
        "{busy_retry}"
    );
    // Refused as gone, never tried again.
    assert!(!sent.contains(gone));
    assert_eq!(not_sent[gone]["payload"]["reason"], "refused");
    assert!(
        not_sent[gone]["payload"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("gone: 410"),
        "{}",
        not_sent[gone]
    );
    // Given up after the plan's three attempts: two deferrals, then undelivered.
    assert!(!sent.contains(always));
    assert_eq!(tries(always), 2);
    assert_eq!(not_sent[always]["payload"]["reason"], "undelivered");
    assert!(
        not_sent[always]["payload"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("after 3 attempt(s): 500"),
        "{}",
        not_sent[always]
    );
    // Everyone else sent, once, and the receiver took exactly what the log says was sent.
    assert_eq!(sent.len(), customers.len() - 2);
    let attempts = receiver.attempts();
    assert!(attempts.iter().all(|attempt| attempt["verified"] == true));
    // The plan tracks the channel's links: each goes through the daemon's signed redirect.
    let body = attempts[0]["body"]["data"]["body"].as_str().unwrap();
    let key = attempts[0]["id"].as_str().unwrap();
    assert!(
        body.contains(&format!(" https://bp.shop.example.com/api/v1/click/{}", ""))
            && body.ends_with(&format!(
                "/{}/{}",
                battleplan_core::outreach::links::percent_encoded(key),
                "https%3A%2F%2Fshop.example.com%2Fcoupons%3Ffrom%3Din-site"
            )),
        "{body}"
    );
    let taken: Vec<String> = receiver.taken();
    let taken_customers: BTreeSet<String> = attempts
        .iter()
        .filter(|attempt| attempt["status"] == 200)
        .map(|attempt| attempt["customer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(taken.len(), taken_customers.len(), "a message taken twice");
    assert_eq!(taken_customers, sent);
    // Every attempt the receiver saw is in the log: a deferral, a refusal, or the send.
    let failed_attempts = attempts
        .iter()
        .filter(|attempt| attempt["status"] != 200)
        .count();
    assert_eq!(
        failed_attempts,
        deferred.len() + not_sent.len(),
        "{not_sent:?}"
    );
}

/// The port of the receiver the applied plan names.
fn plan_port(dir: &Path) -> u16 {
    let plan = std::fs::read_to_string(dir.join("plan.toml")).unwrap();
    let start = plan.find("http://127.0.0.1:").unwrap() + "http://127.0.0.1:".len();
    plan[start..].split('/').next().unwrap().parse().unwrap()
}
