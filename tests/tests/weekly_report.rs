//! The boss's weekly business report from the real binary (docs/reports.md), on the September
//! festival run under a virtual clock from its prep to after its review with 2,000 generated
//! customers: outcomes imported as the weeks go by (some orders naming the offer they used),
//! the shop's numbers for the warm-up and the first half of the burst, tasks marked done by the
//! team along the way, and a task title with markup in it.
//!
//! Every week of the campaign as text and as Markdown (insta snapshots), each asked twice and
//! compared byte for byte; the week the clock is in by default; a week that is not one, not the
//! campaign's or not started refused with exit 2; `--json` naming the log position it was
//! computed at; the HTML read by Python's own parser (tags that nest, the charset declared,
//! nothing fetched, the title's markup escaped); over HTTP the same bytes, with each format's
//! content type and the role matrix.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use battleplan_scenarios::customers::{write_customers, write_outcomes, FileFormat, Options};
use battleplan_tests::{bp, http, instant, mutate, ok, Daemon};
use serde_json::Value;

const CAMPAIGN: &str = "sept-festival-2026";
const APPLIED_AT: &str = "2026-08-01T00:00:00+08:00";
const IMPORTED_AT: &str = "2026-08-20T00:00:00+08:00";
/// After the review phase: every week of the campaign has ended.
const END: &str = "2026-10-12T00:00:00+08:00";
/// Every ISO week the campaign overlaps (Aug 19 to Oct 7).
const WEEKS: [&str; 8] = [
    "2026-W34", "2026-W35", "2026-W36", "2026-W37", "2026-W38", "2026-W39", "2026-W40", "2026-W41",
];
/// A task title with markup in it: shown as written, escaped in HTML and Markdown.
const TITLE: &str = "Take orders in chat <b>& reply</b>";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn options(seed: u64, as_of: &str) -> Options {
    Options {
        count: 2_000,
        seed,
        as_of: instant(as_of),
        format: FileFormat::Csv,
    }
}

fn simulate(dir: &Path, from: &str, until: &str) {
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            from,
            "--until",
            until,
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
}

/// The generated outcomes of the days before `as_of`, with an `offer` column: the orders tied to
/// the campaign name a coupon's code, the tiered offer, the bundle or nothing, in turn; one in
/// three of the others names the discount (an order naming no campaign may name any
/// campaign's offer).
fn outcomes_with_offers(seed: u64, as_of: &str) -> String {
    let mut generated = Vec::new();
    write_outcomes(&mut generated, options(seed, as_of)).unwrap();
    let generated = String::from_utf8(generated).unwrap();
    let mut out = String::new();
    let mut orders = 0usize;
    for (index, line) in generated.lines().enumerate() {
        out.push_str(line);
        if index == 0 {
            out.push_str(",offer\n");
            continue;
        }
        // customer,outcome,at,campaign,reach_out,channel,amount,message
        let cells: Vec<&str> = line.split(',').collect();
        let offer = if cells[1] == "ordered" {
            orders += 1;
            let amount: f64 = cells[6].parse().unwrap_or(0.0);
            match (cells[3].is_empty(), orders % 4) {
                (false, 0) if amount >= 500.0 => "SEPT50",
                (false, 0 | 1) => "spend-more",
                (false, 2) => "starter-kit",
                (true, turn) if turn % 3 == 0 => "hero-sku",
                _ => "",
            }
        } else {
            ""
        };
        out.push(',');
        out.push_str(offer);
        out.push('\n');
    }
    out
}

fn import_outcomes(dir: &Path, seed: u64, at: &str) {
    let file = format!("outcomes-{seed}.csv");
    std::fs::write(dir.join(&file), outcomes_with_offers(seed, at)).unwrap();
    let imported = ok(bp(
        dir,
        &[
            "outcomes",
            "import",
            &file,
            "--actor",
            "li.na",
            "--clock-at",
            at,
        ],
    ));
    assert!(imported.stdout.contains("imported"), "{}", imported.stdout);
}

/// The shop's numbers: the warm-up's visitors, inquiries and fans, then every figure of the
/// burst's first days (to `last`), with hot products and keywords on some.
fn shop_numbers(last: u32) -> String {
    let mut file = String::from(
        "date,visitors,page_views,inquiries,new_fans,placed_orders,paid_orders,paying_buyers,returning_buyers,gmv,hot_product,hot_keyword,count\n",
    );
    for day in 26..=31u32 {
        let n = u64::from(day - 25);
        file.push_str(&format!(
            "2026-08-{day:02},{},,{},{},,,,,,,,\n",
            2_000 + 150 * n,
            40 + 3 * n,
            10 + 2 * n
        ));
    }
    file.push_str("2026-09-01,3100,,62,18,,,,,,,,\n");
    for day in 2..=last {
        let n = u64::from(day);
        let buyers = 100 + 7 * n;
        file.push_str(&format!(
            "2026-09-{day:02},{},{},{},{},{},{},{buyers},{},{}.{:02},,,\n",
            6_000 + 211 * n,
            19_000 + 577 * n,
            80 + 5 * n,
            25 + n,
            buyers + 20,
            buyers + 8,
            buyers / 4,
            (buyers + 8) * 287 + 13 * n,
            (17 * n) % 100
        ));
        if day % 3 == 0 {
            for (product, count) in [("保温杯 500ml", 40 + n), ("Steel lunch box <XL>", 25 + n)]
            {
                file.push_str(&format!("2026-09-{day:02},,,,,,,,,,{product},,{count}\n"));
            }
            file.push_str(&format!(
                "2026-09-{day:02},,,,,,,,,,,insulated cup,{}\n",
                100 + 3 * n
            ));
        }
    }
    file
}

fn done(dir: &Path, occurrence: &str, by: &str, at: &str) {
    ok(bp(
        dir,
        &[
            "task",
            "done",
            occurrence,
            "--campaign",
            CAMPAIGN,
            "--actor",
            by,
            "--clock-at",
            at,
        ],
    ));
}

/// The festival, from its plan to after its review (see the module's documentation).
fn festival(dir: &Path) {
    let plan = mutate(
        battleplan_core::plan::EXAMPLE_PLAN,
        &[(
            "title = \"Take orders in chat\"",
            &format!("title = \"{}\"", TITLE.replace('"', "\\\"")),
        )],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let mut customers = Vec::new();
    write_customers(&mut customers, options(11, IMPORTED_AT)).unwrap();
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--actor",
            "li.na",
            "--clock-at",
            IMPORTED_AT,
        ],
    ));

    let prep = "2026-08-24T12:00:00+08:00";
    simulate(dir, IMPORTED_AT, prep);
    done(dir, "create-coupons", "li.na", prep);
    done(dir, "pick-hot-themes", "li.na", prep);
    done(dir, "pick-high-potential", "wang.wei", prep);
    done(dir, "tag-own-list", "zhang.min", prep);

    let early = "2026-09-03T12:00:00+08:00";
    simulate(dir, prep, early);
    import_outcomes(dir, 21, early);
    done(dir, "official-stage-templates", "li.na", early);
    done(dir, "set-stage-targets", "chen.jie", early);
    done(dir, "take-orders-in-chat@2026-09-03", "wang.wei", early);
    done(
        dir,
        "send-recommendation-cards@2026-09-03",
        "zhang.min",
        early,
    );
    done(dir, "ask-buyers-to-follow@2026-09-03", "liu.yang", early);
    done(dir, "visitor-marketing@2026-09-03", "li.na", early);

    let middle = "2026-09-16T09:00:00+08:00";
    simulate(dir, early, middle);
    import_outcomes(dir, 22, middle);
    std::fs::write(dir.join("shop.csv"), shop_numbers(15)).unwrap();
    ok(bp(
        dir,
        &[
            "metrics",
            "import",
            "shop.csv",
            "--actor",
            "li.na",
            "--clock-at",
            middle,
        ],
    ));
    done(dir, "take-orders-in-chat@2026-09-16", "wang.wei", middle);
    done(dir, "import-cards-to-crm@2026-09-11", "li.na", middle);
    done(dir, "read-weekly-report@2026-09-14", "chen.jie", middle);

    let late = "2026-09-29T12:00:00+08:00";
    simulate(dir, middle, late);
    import_outcomes(dir, 23, late);
    done(dir, "take-orders-in-chat@2026-09-29", "wang.wei", late);
    done(dir, "post-buyer-case@2026-09-28", "li.na", late);
    done(dir, "ask-buyers-to-follow@2026-09-29", "liu.yang", late);

    simulate(dir, late, END);
    import_outcomes(dir, 24, END);
}

fn report(dir: &Path, extra: &[&str]) -> battleplan_tests::Run {
    let mut arguments = vec!["report", "weekly", CAMPAIGN];
    arguments.extend_from_slice(extra);
    bp(dir, &arguments)
}

/// A report asked twice: the same bytes both times.
fn twice(dir: &Path, extra: &[&str]) -> String {
    let first = ok(report(dir, extra)).stdout;
    let second = ok(report(dir, extra)).stdout;
    assert_eq!(first, second, "{extra:?}: two runs differ");
    first
}

/// A Python for tests/html_check.py (its standard library is enough), or `None` (said loudly)
/// where the test may go without; under `CI=true` its absence fails the test.
fn python() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let candidates = [
        std::env::var_os("BATTLEPLAN_SMTP_PYTHON").map(PathBuf::from),
        Some(target.join("smtp-venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    for candidate in candidates.into_iter().flatten() {
        let works = Command::new(&candidate)
            .args(["-c", "import html.parser"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if works {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var("CI").map_or(true, |ci| ci != "true"),
        "CI=true and no Python to read the HTML with"
    );
    eprintln!("\n!!! SKIPPED: reading the HTML needs a Python 3 (none found)\n");
    None
}

/// The HTML as Python's html.parser reads it (tests/html_check.py).
fn parsed(python: &Path, file: &Path) -> Value {
    let output = Command::new(python)
        .arg(workspace().join("tests/html_check.py"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "html_check: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn token(dir: &Path, name: &str, role: &str) -> String {
    ok(bp(
        dir,
        &["token", "create", "--name", name, "--role", role],
    ))
    .stdout
    .trim()
    .to_string()
}

#[test]
fn the_weekly_report_of_every_week_of_the_festival() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    festival(dir);

    // Every week, as text and as Markdown, each asked twice.
    let mut texts = Vec::new();
    let mut markdowns = Vec::new();
    for week in WEEKS {
        texts.push(twice(dir, &["--week", week, "--clock-at", END]));
        markdowns.push(twice(
            dir,
            &["--week", week, "--format", "markdown", "--clock-at", END],
        ));
    }
    insta::assert_snapshot!("weekly_text", texts.join("\n\n"));
    insta::assert_snapshot!("weekly_markdown", markdowns.join("\n\n"));
    let text = &texts[3];
    // The task title as written in text, escaped in Markdown.
    assert!(text.contains(TITLE), "{text}");
    assert!(markdowns[3].contains("Take orders in chat \\<b\\>& reply\\</b\\>"));

    // The week the clock is in, by default.
    let in_w41 = "2026-10-08T00:00:00+08:00";
    assert_eq!(
        twice(dir, &["--clock-at", in_w41]),
        twice(dir, &["--week", "2026-W41", "--clock-at", in_w41])
    );

    // The data, naming the log position every number comes from: the log's last.
    let json: Value = serde_json::from_str(&twice(
        dir,
        &["--week", "2026-W37", "--json", "--clock-at", END],
    ))
    .unwrap();
    let exported = ok(bp(dir, &["export"])).stdout;
    let events = exported
        .lines()
        .filter(|line| line.contains("\"event_type\""))
        .count() as u64;
    assert_eq!(json["as_of_position"], events);
    assert_eq!(json["week"], "2026-W37");
    assert_eq!(json["complete"], true);
    assert!(
        text.contains(&format!("up to position {}", grouped(events))),
        "{text}"
    );
    // Orders named offers: the discount (by orders naming no campaign) this week, the coupon
    // by its code and the tiered offer by its id the week before.
    let offers = json["offers"].as_array().unwrap();
    let offer = |id: &str, field: &str| {
        offers
            .iter()
            .find(|offer| offer["id"] == id)
            .map(|offer| offer[field].as_u64().unwrap())
            .unwrap()
    };
    assert!(offer("hero-sku", "orders") > 0, "{offers:?}");
    assert!(offer("sept-50", "week_before_orders") > 0, "{offers:?}");
    assert!(offer("spend-more", "week_before_orders") > 0, "{offers:?}");
    let headline = json["headline"].as_array().unwrap();
    assert_eq!(headline[0]["metric"], "gmv");
    assert_eq!(headline[0]["source"], "shop");

    // Weeks that cannot be reported: exit 2, saying why.
    for (week, words) in [
        ("2026-W30", "2026-W30 is outside the campaign"),
        ("2026-W99", "2026 has no week 99"),
        ("36", "write a week as YEAR-Wnn"),
    ] {
        let refused = report(dir, &["--week", week, "--clock-at", END]);
        assert_eq!(refused.code, 2, "{week}: {}", refused.stderr);
        assert!(refused.stderr.contains(words), "{week}: {}", refused.stderr);
        assert!(refused.stdout.is_empty());
    }
    let refused = report(dir, &["--clock-at", END]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("name a week with --week"),
        "{}",
        refused.stderr
    );
    let refused = report(
        dir,
        &[
            "--week",
            "2026-W38",
            "--clock-at",
            "2026-09-10T00:00:00+08:00",
        ],
    );
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("has not started yet"),
        "{}",
        refused.stderr
    );
    let unknown = bp(
        dir,
        &["report", "weekly", "no-such-campaign", "--clock-at", END],
    );
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);

    // HTML, to a file: a document Python's parser reads whole.
    let wrote = ok(report(
        dir,
        &[
            "--week",
            "2026-W37",
            "--format",
            "html",
            "--out",
            "w37.html",
            "--clock-at",
            END,
        ],
    ));
    assert!(
        wrote.stdout.starts_with("wrote w37.html"),
        "{}",
        wrote.stdout
    );
    let html = std::fs::read_to_string(dir.join("w37.html")).unwrap();
    assert_eq!(
        html,
        twice(
            dir,
            &["--week", "2026-W37", "--format", "html", "--clock-at", END]
        )
    );
    assert!(html.contains("Take orders in chat &lt;b&gt;&amp; reply&lt;&#x2f;b&gt;"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("w37.html"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    if let Some(python) = python() {
        let read = parsed(&python, &dir.join("w37.html"));
        assert_eq!(read["problems"], Value::Array(Vec::new()), "{read}");
        assert_eq!(read["unclosed"], Value::Array(Vec::new()), "{read}");
        assert_eq!(read["doctype"], "DOCTYPE html");
        assert_eq!(read["charset"], "utf-8");
        let tags = read["tags"].as_object().unwrap();
        for tag in ["html", "head", "body", "main", "style", "table", "h1", "h2"] {
            assert!(tags.contains_key(tag), "no <{tag}>: {read}");
        }
        // The title's markup is text, not tags; nothing is fetched from anywhere.
        for tag in ["b", "script", "link", "img", "iframe"] {
            assert!(!tags.contains_key(tag), "<{tag}> in the report: {read}");
        }
        let shown = read["text"].as_str().unwrap();
        assert!(shown.contains(TITLE), "{shown}");
        assert!(shown.contains("保温杯 500ml"), "{shown}");
    }

    // Over HTTP, from the daemon: the same bytes, each format with its content type.
    let boss = token(dir, "chen.jie", "boss");
    let sales = token(dir, "wang.wei", "sales");
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--clock-at",
            END,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let address = http::address_in(&daemon.wait_for("HTTP API on http://"));
    daemon.wait_for("caught up");
    let get = |query: &str, token: &str| {
        let path = format!("/api/v1/campaigns/{CAMPAIGN}/reports/weekly{query}");
        http::send(
            &address,
            "GET",
            &path,
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    };
    for (format, media, cli) in [
        ("text", "text/plain; charset=utf-8", &texts[3]),
        ("markdown", "text/markdown; charset=utf-8", &markdowns[3]),
        ("html", "text/html; charset=utf-8", &html),
    ] {
        let answer = get(&format!("?week=2026-W37&format={format}"), &boss);
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("content-type"), Some(media));
        assert_eq!(&answer.text(), cli, "{format}");
    }
    let answer = get("?week=2026-W37", &boss);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json(), json);
    // Sales read tasks, not the boss's report; a format or week that is not one is refused.
    assert_eq!(get("?week=2026-W37", &sales).status, 403);
    let wrong = get("?week=2026-W37&format=pdf", &boss);
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    let outside = get("?week=2026-W30", &boss);
    assert_eq!(outside.status, 422, "{}", outside.text());
    assert!(outside.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("outside the campaign"));

    // An order reported by a merchant's system names its offer; the week's uptake counts it.
    let uptake = |answer: &http::Answer| {
        answer.json()["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|offer| offer["id"] == "sept-50")
            .map(|offer| offer["orders"].as_u64().unwrap())
            .unwrap()
    };
    let before = uptake(&get("?week=2026-W41", &boss));
    let post = |body: &str| {
        http::send(
            &address,
            "POST",
            "/api/v1/outcomes",
            &[
                ("Authorization", &format!("Bearer {sales}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    let order = |id: &str, outcome: &str, offer: &str| {
        format!(
            r#"{{"outcomes": [{{"id": "{id}", "customer": "c-000417", "outcome": "{outcome}", "at": "2026-10-05T10:00:00+08:00", "campaign": "{CAMPAIGN}", "reach_out": "warm-up-recall", "offer": "{offer}"{}}}]}}"#,
            if outcome == "ordered" {
                r#", "amount": "688.00""#
            } else {
                ""
            }
        )
    };
    let refused = post(&order("o-1", "ordered", "SEPT5O"));
    assert_eq!(refused.status, 422, "{}", refused.text());
    let detail = refused.problem()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("outcomes[0].offer: no offer `SEPT5O`"),
        "{detail}"
    );
    let refused = post(&order("o-2", "replied", "SEPT50"));
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(refused.problem()["detail"]
        .as_str()
        .unwrap()
        .contains("an offer is only for `ordered`"));
    let recorded = post(&order("o-3", "ordered", "sept50"));
    assert_eq!(recorded.status, 200, "{}", recorded.text());
    assert_eq!(recorded.json()["recorded"], 1);
    assert_eq!(uptake(&get("?week=2026-W41", &boss)), before + 1);
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{}", log.join("\n"));
}

fn grouped(value: u64) -> String {
    battleplan_core::plan::values::grouped(value)
}

/// The boss's robot gets the weekly report every Monday at 09:30 as the plan schedules it (the
/// example plan's `[reports.weekly]`), as its own Markdown message; a daemon restarted at once
/// sends nothing twice; after a downtime across two Mondays the report is caught up once, for
/// the latest week, saying it stands for the one it missed.
#[test]
fn the_plan_sends_the_weekly_report_to_the_boss_robot() {
    let Some(python) = battleplan_tests::smtp::python() else {
        return;
    };
    let secret = "SEC0123456789abcdef boss";
    let robots = battleplan_tests::webhook::RobotReceiver::start(&python, secret, 0);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let plan = mutate(
        battleplan_core::plan::EXAMPLE_PLAN,
        &[(
            "members = [\"chen.jie\"]\n",
            "members = [\"chen.jie\"]\nrobot = { kind = \"dingtalk\", url_env = \"BOSS_ROBOT_URL\", secret_env = \"BOSS_ROBOT_SECRET\" }\n",
        )],
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 200,
            ..options(11, IMPORTED_AT)
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
            "--actor",
            "li.na",
            "--clock-at",
            IMPORTED_AT,
        ],
    ));
    let url = robots.dingtalk("boss-token");
    let run = |from: &str, until: &str| {
        let mut daemon = Daemon::start_with(
            dir,
            &[
                "--data",
                "data",
                "run",
                "--simulate",
                "--clock-at",
                from,
                "--until",
                until,
            ],
            &[
                ("BOSS_ROBOT_URL", url.as_str()),
                ("BOSS_ROBOT_SECRET", secret),
            ],
        );
        let (code, log) = daemon.finish();
        assert_eq!(code, 0, "{}", log.join("\n"));
        log.join("\n")
    };
    let reports = || -> Vec<String> {
        robots
            .requests()
            .into_iter()
            .filter_map(|request| {
                assert_eq!(request["token"], "boss-token");
                assert_eq!(request["verified"], true, "{request}");
                let text = request["body"]["markdown"]["text"].as_str()?.to_string();
                text.starts_with("# Weekly report").then_some(text)
            })
            .collect()
    };

    // Through two Mondays: the prep week's report, then the warm-up's, each on its Monday.
    let log = run(IMPORTED_AT, "2026-09-01T00:00:00+08:00");
    assert!(log.contains("weekly report 2026-W34 to boss"), "{log}");
    let sent = reports();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(sent[0].starts_with("# Weekly report 2026-W34: September Procurement Festival 2026\n"));
    assert!(sent[1].starts_with("# Weekly report 2026-W35"));
    assert!(sent[1].contains("The whole week: it has ended."));
    assert!(sent[1].contains("## The week's numbers"));
    // Restarted at once: nothing sent again.
    run("2026-09-01T00:00:00+08:00", "2026-09-01T00:00:00+08:00");
    assert_eq!(reports().len(), 2);

    // Down from Sep 1 to Sep 15 12:00: two Mondays passed; the latest week is reported once.
    let log = run("2026-09-15T12:00:00+08:00", "2026-09-15T13:00:00+08:00");
    assert!(
        log.contains("weekly report 2026-W37 to boss, 1 d 2 h late"),
        "{log}"
    );
    let sent = reports();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert!(sent[2].starts_with("# Weekly report 2026-W37"));
    let exported = ok(bp(dir, &["export"])).stdout;
    let planned: Vec<Value> = exported
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event_type"] == "ReportPlanned")
        .collect();
    let weeks: Vec<&str> = planned
        .iter()
        .map(|event| event["payload"]["week"].as_str().unwrap())
        .collect();
    assert_eq!(weeks, ["2026-W34", "2026-W35", "2026-W37"]);
    assert_eq!(planned[2]["payload"]["superseded"], 1);
    assert_eq!(planned[2]["payload"]["to"][0]["members"][0], "chen.jie");
    assert_eq!(planned[2]["stream"], format!("reports-{CAMPAIGN}"));
    // Every message to the boss's robot is recorded as sent, once; none is left for the staff
    // outbox; and the log checks out with the new events in it.
    let staff = std::fs::read_to_string(dir.join("data/outbox/staff.jsonl")).unwrap_or_default();
    assert!(!staff.contains("report/weekly"), "{staff}");
    let verified = ok(bp(dir, &["audit", "verify"])).stdout;
    assert!(
        verified.contains("every payload reads as its type"),
        "{verified}"
    );
}
