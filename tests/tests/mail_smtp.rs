//! Mail end to end, with the real binary and a real SMTP server on loopback (aiosmtpd): the
//! plan's mail channel names the server (`[channels.mail.smtp]`), and the daemon's warm-up
//! reach-out of more than 2,000 customers arrives there as one message per customer and per
//! send the log records, each parsed back by Python's `email` package (its key, its Message-ID
//! from the key, its signed one-click link in the header and both parts, the warm-up's
//! template, a customer's name escaped in HTML); the link of a received message, POSTed to the
//! daemon, records the unsubscribe, and the burst's mail, with the early stage's template, then
//! goes to everyone it plans for but that address.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use battleplan_tests::smtp::{header, mail_campaign, mail_campaign_with, python, SmtpServer};
use battleplan_tests::{bp, http, ok, planned, Daemon};

const CAMPAIGN: &str = "sept-festival-2026";
const WARM_UP: &str = "2026-08-26T00:00:00+08:00";
const BEFORE_BURST: &str = "2026-09-01T12:00:00+08:00";
const BURST: &str = "2026-09-02T00:00:00+08:00";

fn campaign(dir: &Path, count: u64, port: u16) {
    mail_campaign(dir, count, port, "10s", "", |csv| csv);
}

/// The daemon at `at`, run until everything due then is done.
fn run_at(dir: &Path, at: &str) {
    let mut daemon = Daemon::start(
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
            "http://127.0.0.1:1",
        ],
    );
    let (code, lines) = daemon.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
}

/// The log's mail `MessageSent` keys.
fn mail_sent(dir: &Path) -> BTreeSet<String> {
    let file = dir.join("export.jsonl");
    let _ = std::fs::remove_file(&file);
    ok(bp(dir, &["export", "--out", "export.jsonl"]));
    let export = std::fs::read_to_string(&file).unwrap();
    export
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event_type"] == "MessageSent")
        .filter(|event| event["payload"]["channel"] == "mail")
        .map(|event| event["payload"]["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_plans_mail_arrives_once_each_and_an_unsubscribe_link_stops_it() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The warm-up's recall widened to every customer, its other mail reach-out taken out: one
    // reach-out of more than 2,000 customers.
    mail_campaign_with(
        dir,
        2_500,
        server.port,
        "10s",
        "",
        &[
            (
                "all = [\n  { source = \"shared_pool\" },\n  { activity = \"inquired\", within = \"180d\" },\n]\nnone = [{ activity = \"ordered\", within = \"30d\" }]\n",
                "all = [{ source = [\"own_list\", \"shared_pool\", \"offline_import\"] }]\n",
            ),
            (
                "[reach_outs.warm-up-own-lists]\nname = \"Warm up the sales reps' own lists\"\nsegment = \"own-lists\"\nchannel = \"mail\"\nwindow = \"warm_up\"\n\n",
                "",
            ),
        ],
        |csv| csv,
    );
    let planned = planned(dir, CAMPAIGN, "warm-up-recall", WARM_UP)
        .into_iter()
        .collect::<BTreeSet<String>>();
    assert!(planned.len() >= 2_000, "{} planned", planned.len());
    // One of them with a name that must be escaped in HTML.
    let odd = planned.iter().next().unwrap().clone();
    std::fs::write(
        dir.join("odd.csv"),
        format!("id,name\n{odd},\"Li <b>&</b> \"\"Na\"\"\"\n"),
    )
    .unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "odd.csv",
            "--clock-at",
            "2026-08-21T00:00:00Z",
        ],
    ));

    // The warm-up's mail, sent to the server.
    run_at(dir, WARM_UP);
    let sent = mail_sent(dir);
    let arrived = server.arrived();
    assert_eq!(arrived.len(), planned.len(), "one message per customer");
    let mut keys = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for message in &arrived {
        let key = header(message, "X-Battleplan-Key").unwrap().to_string();
        assert!(
            keys.insert(key.clone(), message.clone()).is_none(),
            "{key} twice"
        );
        // The Message-ID is the key's: the first 16 bytes of its BLAKE3, in hex.
        let id = header(message, "Message-ID").unwrap();
        let digest = blake3::hash(key.as_bytes());
        let hex: String = digest.as_bytes()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(id, format!("<{hex}@example.com>"), "{key}");
        assert!(ids.insert(id.to_string()), "{id} twice");
        let unsubscribe = header(message, "List-Unsubscribe").unwrap();
        let link = unsubscribe.trim_start_matches('<').trim_end_matches('>');
        assert!(
            link.starts_with(&format!(
                "http://127.0.0.1:1/api/v1/unsubscribe/{CAMPAIGN}/"
            )),
            "{link}"
        );
        assert_eq!(
            header(message, "List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
        let html = message["html"].as_str().unwrap();
        assert!(
            html.contains(link),
            "the body's link is the header's: {html}"
        );
        let text = message["text"].as_str().unwrap();
        assert!(text.contains(link), "{text}");
        // The warm-up's template.
        assert_eq!(
            header(message, "Subject"),
            Some("September Procurement Festival 2026 is coming: an early look for you"),
            "{key}"
        );
        assert_eq!(
            header(message, "X-Battleplan-Campaign"),
            Some(CAMPAIGN),
            "{key}"
        );
        assert_eq!(
            header(message, "X-Battleplan-Reach-Out"),
            Some("warm-up-recall")
        );
        // The customer's fields escaped in HTML, as written in the text.
        if key.split('/').nth(2) == Some(odd.as_str()) {
            assert!(
                html.contains("Dear Li &lt;b&gt;&amp;&lt;&#x2f;b&gt; &quot;Na&quot;,"),
                "{html}"
            );
            assert!(text.contains("Dear Li <b>&</b> \"Na\","), "{text}");
        } else {
            assert!(!html.contains("<b>"), "{html}");
        }
    }
    // One message per send the log records, and no other: every planned customer.
    let arrived_keys: BTreeSet<String> = keys.keys().cloned().collect();
    assert_eq!(arrived_keys, sent);
    let customers: BTreeSet<String> = keys
        .keys()
        .map(|key| key.split('/').nth(2).unwrap().to_string())
        .collect();
    assert_eq!(customers, planned);

    // A customer the burst's mail will plan for, who got a warm-up mail, unsubscribes from it.
    let preview: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "audience",
                "preview",
                CAMPAIGN,
                "--reach-out",
                "early-stage-mail",
                "--at",
                BURST,
                "--clock-at",
                BEFORE_BURST,
                "--json",
                "--customers",
            ],
        ))
        .stdout,
    )
    .unwrap();
    let planned: BTreeSet<String> = preview["customers"]["sends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|send| send["customer"].as_str().unwrap().to_string())
        .collect();
    let (key, message) = keys
        .iter()
        .find(|(key, _)| planned.contains(key.split('/').nth(2).unwrap()))
        .expect("a warm-up recipient the burst plans for");
    let customer = key.split('/').nth(2).unwrap().to_string();
    let address = message["rcpt_to"][0].as_str().unwrap().to_string();
    let link = header(message, "List-Unsubscribe")
        .unwrap()
        .trim_start_matches("<http://127.0.0.1:1")
        .trim_end_matches('>')
        .to_string();
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            BEFORE_BURST,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let line = daemon.wait_for("HTTP API on http://");
    let base = http::address_in(&line);
    daemon.wait_for("caught up");
    let clicked = http::send(
        &base,
        "POST",
        &link,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"List-Unsubscribe=One-Click",
    )
    .unwrap();
    assert_eq!(clicked.status, 200, "{}", clicked.text());
    let (code, lines) = daemon.terminate();
    assert_eq!(code, 0, "{}", lines.join("\n"));

    // The burst's mail goes to everyone it plans for, but not to that address.
    let before = server.arrived().len();
    run_at(dir, BURST);
    let burst: Vec<serde_json::Value> = server.arrived().into_iter().skip(before).collect();
    // The early stage's templates for its reach-out (by the stage's theme), the follow-up's
    // for the warm-up's recall, seven days on.
    let mut early = 0;
    for message in &burst {
        let subject = header(message, "Subject").unwrap();
        match header(message, "X-Battleplan-Reach-Out") {
            Some("early-stage-mail") => {
                early += 1;
                assert!(subject.starts_with("The sale has started"), "{subject}");
            }
            Some("warm-up-recall") => assert_eq!(
                subject,
                "Did you see our September Procurement Festival 2026 offer?"
            ),
            other => panic!("{other:?}: {subject}"),
        }
    }
    assert!(early > 50, "{early} early-stage mails");
    assert!(
        burst
            .iter()
            .all(|message| message["rcpt_to"][0].as_str() != Some(address.as_str())),
        "{customer} unsubscribed and still got mail"
    );
    let outbox: serde_json::Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "outbox",
                CAMPAIGN,
                "--reach-out",
                "early-stage-mail",
                "--json",
                "--customers",
            ],
        ))
        .stdout,
    )
    .unwrap();
    let row = outbox["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["customer"] == customer.as_str())
        .unwrap();
    assert_eq!(row["reason"], "unsubscribed", "{row}");
    assert_eq!(mail_sent(dir).len(), server.arrived().len());
}

#[test]
fn channel_test_sends_one_message_and_says_what_the_server_answered() {
    let Some(python) = python() else { return };
    let server = SmtpServer::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    campaign(dir, 10, server.port);
    let test = |channel: &str, to: &str| {
        bp(
            dir,
            &[
                "channel",
                "test",
                CAMPAIGN,
                channel,
                "--to",
                to,
                "--clock-at",
                WARM_UP,
            ],
        )
    };
    let sent = ok(test("mail", "ops@shop.example.com"));
    assert!(
        sent.stdout.contains(&format!(
            "via SMTP 127.0.0.1:{}: sent: the server took it",
            server.port
        )),
        "{}",
        sent.stdout
    );
    let arrived = server.arrived();
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0]["rcpt_to"][0], "ops@shop.example.com");
    assert!(header(&arrived[0], "Subject")
        .unwrap()
        .starts_with("battleplan: a test of"));
    // Refused by the server: its words, and exit code 1.
    let refused = test("mail", "unknown-ops@shop.example.com");
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(refused.stdout.contains("refused"), "{}", refused.stdout);
    assert!(refused.stdout.contains("550"), "{}", refused.stdout);
    // A channel without a real one: nothing to test.
    let outbox = test("in-site", "c-000001");
    assert_eq!(outbox.code, 2, "{}", outbox.stderr);
    assert!(outbox.stderr.contains("file outbox"), "{}", outbox.stderr);
    // Nothing of it is in the log.
    let export = dir.join("export.jsonl");
    ok(bp(dir, &["export", "--out", "export.jsonl"]));
    let log = std::fs::read_to_string(export).unwrap();
    assert!(!log.contains("channel-test"), "a test message was recorded");
    // The server gone: the channel cannot be reached, exit code 2 and why.
    drop(server);
    let down = test("mail", "ops@shop.example.com");
    assert_eq!(down.code, 2, "{}", down.stdout);
    assert!(down.stderr.contains("cannot connect"), "{}", down.stderr);
}
