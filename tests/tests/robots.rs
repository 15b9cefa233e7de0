//! Staff reminders to group robots, with the real binary and DingTalk's and WeCom's robots
//! emulated on loopback (`tests/robot_receiver.py`): the plan gives sales a signed DingTalk
//! robot and ops a WeCom one, their addresses and secret read from the daemon's environment;
//! each role's reminders of a hand-over go as one robot message, the boss's (no robot, a mail
//! address) by mail through the plan's mail server. DingTalk's signature is checked the way its documentation computes it, and the
//! robots' limit of messages a minute is kept.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use battleplan_adapters::robot::{dingtalk_sign, RobotChannel, RobotKind, RobotSettings};
use battleplan_core::outreach::port::{Channel, Delivery, Message};
use battleplan_core::plan::model::ChannelKind;
use battleplan_tests::smtp::{header, python, SmtpServer};
use battleplan_tests::webhook::RobotReceiver;
use battleplan_tests::{bp, mutate, ok, run_in, Daemon};

const SECRET: &str = "SEC0123456789abcdef this is secret";
const AT: &str = "2026-08-26T09:00:00+08:00";

#[test]
fn the_signature_is_the_one_dingtalks_documented_example_computes() {
    let Some(python) = python() else { return };
    // DingTalk's documented Python example, with its secret and a fixed timestamp.
    let example = r#"
import hmac, hashlib, base64, urllib.parse
timestamp = "1700000000000"
secret = 'this is secret'
secret_enc = secret.encode('utf-8')
string_to_sign = '{}\n{}'.format(timestamp, secret)
string_to_sign_enc = string_to_sign.encode('utf-8')
hmac_code = hmac.new(secret_enc, string_to_sign_enc, digestmod=hashlib.sha256).digest()
sign = urllib.parse.quote_plus(base64.b64encode(hmac_code))
print(sign)
"#;
    let output = Command::new(&python)
        .args(["-c", example])
        .output()
        .unwrap();
    let documented = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        dingtalk_sign("this is secret", 1_700_000_000_000),
        documented.trim()
    );
}

#[test]
fn each_roles_reminders_go_to_its_robot_or_its_mail_and_the_rest_to_the_staff_outbox() {
    let Some(python) = python() else { return };
    let robots = RobotReceiver::start(&python, SECRET, 0);
    let mail = SmtpServer::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let plan = mutate(
        &example,
        &[
            (
                "members = [\"li.na\"]\n",
                "members = [\"li.na\"]\nrobot = { kind = \"wecom\", url_file = \"ops-robot\" }\n",
            ),
            (
                "members = [\"chen.jie\"]\n",
                "members = [\"chen.jie\"]\nmail = \"boss@shop.example.com\"\n",
            ),
            (
                "accounts = [\"shop-mail\"]\n",
                &format!(
                    "accounts = [\"shop-mail\"]\nsmtp = {{ host = \"127.0.0.1\", port = {}, tls = \"none\", from = \"Shop <shop@example.com>\" }}\n",
                    mail.port
                ),
            ),
            (
                "members = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\n\n[roles.boss]",
                "members = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\nrobot = { kind = \"dingtalk\", url_env = \"SALES_ROBOT_URL\", secret_env = \"SALES_ROBOT_SECRET\" }\n\n[roles.boss]",
            ),
        ],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    std::fs::write(dir.join("ops-robot"), robots.wecom("ops-key") + "\n").unwrap();
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
    let sales_url = robots.dingtalk("sales-token");
    let mut daemon = Daemon::start_with(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            AT,
            "--until",
            AT,
            "--public-url",
            "http://127.0.0.1:1",
        ],
        &[
            ("SALES_ROBOT_URL", sales_url.as_str()),
            ("SALES_ROBOT_SECRET", SECRET),
        ],
    );
    let (code, lines) = daemon.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    let printed = lines.join("\n");
    assert!(!printed.contains("sales-token") && !printed.contains(SECRET));

    let requests = robots.requests();
    assert_eq!(
        requests.len(),
        2,
        "one robot message per role: {requests:#?}"
    );
    let dingtalk = requests.iter().find(|r| r["robot"] == "dingtalk").unwrap();
    assert_eq!(dingtalk["verified"], true, "{dingtalk}");
    assert_eq!(dingtalk["token"], "sales-token");
    assert_eq!(dingtalk["body"]["msgtype"], "markdown");
    let sales_text = dingtalk["body"]["markdown"]["text"].as_str().unwrap();
    assert!(
        sales_text.contains("Review the IM contact list"),
        "{sales_text}"
    );
    let wecom = requests.iter().find(|r| r["robot"] == "wecom").unwrap();
    assert_eq!(wecom["token"], "ops-key");
    let ops_text = wecom["body"]["markdown"]["content"].as_str().unwrap();
    for task in ["Pick hot themes", "Build the warm-up mail template"] {
        assert!(ops_text.contains(task), "{task} in {ops_text}");
    }

    // The boss takes reminders by mail: each one a mail to the boss's address, through the
    // plan's mail server; nothing is left for the staff outbox.
    let mails: Vec<serde_json::Value> = mail
        .arrived()
        .into_iter()
        .filter(|message| message["rcpt_to"][0] == "boss@shop.example.com")
        .collect();
    assert!(!mails.is_empty());
    // The plan's weekly report, due on Monday 09:30 and caught up, went to the boss's address
    // too: one mail.
    let reports = mails
        .iter()
        .filter(|message| {
            header(message, "Subject").is_some_and(|subject| subject.starts_with("Weekly report "))
        })
        .count();
    assert_eq!(reports, 1);
    for message in &mails {
        let subject = header(message, "Subject").unwrap();
        assert!(
            subject.starts_with("Escalation: ") || subject.starts_with("Weekly report 2026-W34: "),
            "{subject}"
        );
        assert!(
            header(message, "List-Unsubscribe").is_none(),
            "staff mail has no unsubscribe"
        );
    }
    let staff = std::fs::read_to_string(dir.join("data/outbox/staff.jsonl")).unwrap_or_default();
    assert_eq!(staff.lines().count(), 0, "{staff}");
    // Every reminder recorded as sent once, wherever it went.
    let export = ok(bp(dir, &["export", "--out", "export.jsonl"]));
    drop(export);
    let log = std::fs::read_to_string(dir.join("export.jsonl")).unwrap();
    assert!(!log.contains("sales-token") && !log.contains(SECRET));
    let sent: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["event_type"] == "MessageSent" && event["payload"]["channel"] == "staff"
        })
        .collect();
    let to = |role: &str| sent.iter().filter(|e| e["payload"]["to"] == role).count();
    assert_eq!(to("ops"), ops_text.matches("\n- **").count());
    assert_eq!(to("sales"), sales_text.matches("\n- **").count());
    assert_eq!(to("boss"), mails.len());
}

fn reminder(n: u32) -> Message {
    Message {
        key: format!("sept/task/t-{n}/remind"),
        campaign: "sept".to_string(),
        channel: "staff".to_string(),
        kind: ChannelKind::Console,
        to: "sales".to_string(),
        address: vec!["wang.wei".to_string()],
        from: None,
        subject: Some(format!("Reminder {n}")),
        body: format!("Task {n} is due"),
        template: None,
        template_version: None,
        reach_out: None,
        attempt: None,
        at: chrono::Utc::now(),
        document: None,
    }
}

#[test]
fn a_robot_gets_no_more_than_its_messages_a_minute_and_a_busy_answer_defers() {
    let Some(python) = python() else { return };
    let robots = RobotReceiver::start(&python, SECRET, 1);
    let robot = RobotChannel::new(RobotSettings {
        kind: RobotKind::DingTalk,
        url: robots.dingtalk("t"),
        secret: Some(SECRET.to_string()),
        timeout: Duration::from_secs(5),
        per_minute: 3,
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers: Vec<Vec<Delivery>> = (0..5)
        .map(|n| {
            runtime
                .block_on(robot.deliver(&[reminder(n), reminder(n + 10)]))
                .unwrap()
        })
        .collect();
    // The first: "sending too fast" from the robot itself.
    assert!(
        matches!(&answers[0][0], Delivery::Deferred { detail, .. } if detail.contains("130101")),
        "{:?}",
        answers[0]
    );
    assert_eq!(answers[1], vec![Delivery::Sent; 2]);
    assert_eq!(answers[2], vec![Delivery::Sent; 2]);
    // Three went this minute: the rest wait for the minute to pass, not sent.
    for later in &answers[3..] {
        assert!(
            matches!(&later[0], Delivery::Deferred { retry_after_ms: Some(wait), .. } if *wait > 50_000),
            "{later:?}"
        );
    }
    assert_eq!(robots.requests().len(), 3);
    assert!(robots.requests().iter().all(|r| r["verified"] == true));
}

#[test]
fn a_hand_over_too_large_for_one_robot_message_goes_as_several() {
    let Some(python) = python() else { return };
    let robots = RobotReceiver::start(&python, SECRET, 0);
    let robot = RobotChannel::new(RobotSettings {
        kind: RobotKind::WeCom,
        url: robots.wecom("k"),
        secret: None,
        timeout: Duration::from_secs(5),
        per_minute: 20,
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batch: Vec<Message> = (0..12)
        .map(|n| Message {
            body: format!("任务 {n} 今天到期：{}", "请检查优惠券。".repeat(20)),
            ..reminder(n)
        })
        .collect();
    let answers = runtime.block_on(robot.deliver(&batch)).unwrap();
    assert_eq!(answers, vec![Delivery::Sent; 12]);
    let requests = robots.requests();
    assert!(requests.len() >= 2, "{} robot messages", requests.len());
    let mut carried = 0;
    for request in &requests {
        let content = request["body"]["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= 4_096, "{} bytes", content.len());
        carried += content.matches("\n- **").count();
    }
    assert_eq!(carried, 12, "each reminder in one robot message");
}

#[test]
fn reminders_a_robot_refuses_go_to_the_staff_outbox() {
    let Some(python) = python() else { return };
    let robots = RobotReceiver::start(&python, SECRET, 0);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    // Signed with the wrong secret: DingTalk refuses every message (errcode 310000).
    let plan = mutate(
        &example,
        &[(
            "members = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\n\n[roles.boss]",
            "members = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\nrobot = { kind = \"dingtalk\", url_env = \"SALES_ROBOT_URL\", secret_env = \"SALES_ROBOT_SECRET\" }\n\n[roles.boss]",
        )],
    );
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
    let sales_url = robots.dingtalk("sales-token");
    let mut daemon = Daemon::start_with(
        dir,
        &["--data", "data", "run", "--clock-at", AT, "--until", AT],
        &[
            ("SALES_ROBOT_URL", sales_url.as_str()),
            ("SALES_ROBOT_SECRET", "SECnot-the-robots-secret"),
        ],
    );
    let (code, lines) = daemon.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("refused") && line.contains("staff outbox")),
        "{}",
        lines.join("\n")
    );
    let requests = robots.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r["errcode"] == 310000));
    let staff = std::fs::read_to_string(dir.join("data/outbox/staff.jsonl")).unwrap();
    let sales = staff
        .lines()
        .filter(|line| line.contains("\"to\":\"sales\""))
        .count();
    assert!(sales >= 1, "{staff}");
}
