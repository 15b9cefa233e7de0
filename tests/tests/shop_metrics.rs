//! The shop's own numbers from the real binary (docs/metrics.md): `metrics import` refuses a
//! file with any bad row (each located, nothing recorded), records a good one once (the same
//! file twice changes nothing), records a corrected day as a new event that names what it
//! corrects (the history shows both), and the stage targets that were "not measured" are
//! measured after it (insta snapshots of `status` and `metrics show`). Over HTTP the same,
//! with a refused file as a 422 that locates its problems.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use battleplan_tests::http;
use battleplan_tests::{bp, ok, run_in, Daemon};
use serde_json::Value;

const CAMPAIGN: &str = "sept-festival-2026";
const APPLIED_AT: &str = "2026-08-01T00:00:00+08:00";
/// Mid-way through the burst's early stage.
const NOW: &str = "2026-09-05T12:00:00+08:00";

const HEADER: &str = "date,hour,visitors,page_views,inquiries,new_fans,placed_orders,paid_orders,paying_buyers,returning_buyers,gmv,hot_product,hot_keyword,count\n";

/// Three days of the early stage (the third by the hour), with hot products and keywords.
fn good_file() -> String {
    let rows = [
        "2026-09-02,,12480,40210,96,40,150,130,120,30,\"¥36,400.00\",,,",
        "2026-09-02,,,,,,,,,,,保温杯 500ml,,88",
        "2026-09-02,,,,,,,,,,,Steel lunch box,,51",
        "2026-09-02,,,,,,,,,,,,insulated cup,230",
        "2026-09-03,,13020,41800,110,35,160,140,125,33,39200.50,,,",
        "2026-09-03,,,,,,,,,,,,insulated cup,180",
        "2026-09-03,,,,,,,,,,,,lunch box,95",
        "2026-09-04,10,900,2400,8,3,12,10,9,2,2700.00,,,",
        "2026-09-04,11,1100,3100,9,4,14,12,11,3,3300.00,,,",
    ];
    format!("{HEADER}{}\n", rows.join("\n"))
}

fn applied(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
}

/// How many events the log holds (the export's lines: a header, the events, a trailer).
fn events(dir: &Path) -> usize {
    let exported = ok(bp(dir, &["export"])).stdout;
    exported
        .lines()
        .filter(|line| line.contains("\"event_type\""))
        .count()
}

fn import(dir: &Path, file: &str, content: &str) -> battleplan_tests::Run {
    std::fs::write(dir.join(file), content).unwrap();
    bp(
        dir,
        &[
            "metrics",
            "import",
            file,
            "--actor",
            "li.na",
            "--clock-at",
            NOW,
        ],
    )
}

#[test]
fn every_kind_of_bad_row_is_located_and_nothing_is_recorded() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    applied(dir);
    let before = events(dir);
    // Each file, and where its one problem is: (line, column named, words of the reason).
    let corpus: &[(&str, &str, &str, &str)] = &[
        (
            "bad-date",
            "2026-09-31,,100,200,,,,,,,,,,",
            "column 1 (date)",
            "is not a day",
        ),
        (
            "bad-hour",
            "2026-09-03,25,100,200,,,,,,,,,,",
            "column 2 (hour)",
            "not an hour",
        ),
        (
            "negative-count",
            "2026-09-03,,-5,200,,,,,,,,,,",
            "column 3 (visitors)",
            "not a count",
        ),
        (
            "badly-grouped",
            "2026-09-03,,\"1,00\",200,,,,,,,,,,",
            "column 3 (visitors)",
            "not a count",
        ),
        (
            "three-decimals",
            "2026-09-03,,100,200,,,,,,,1.005,,,",
            "column 11 (gmv)",
            "two decimals",
        ),
        (
            "negative-gmv",
            "2026-09-03,,100,200,,,,,,,-3.00,,,",
            "column 11 (gmv)",
            "bad money",
        ),
        (
            "swapped-pv-uv",
            "2026-09-03,,500,200,,,,,,,,,,",
            "column 3 (visitors)",
            "swapped",
        ),
        (
            "buyers-over-orders",
            "2026-09-03,,100,200,,,,4,5,,,,,",
            "column 9 (paying_buyers)",
            "more paying buyers than paid orders",
        ),
        (
            "paid-over-placed",
            "2026-09-03,,100,200,,,3,4,,,,,,",
            "column 8 (paid_orders)",
            "more orders paid than placed",
        ),
        (
            "returning-over-paying",
            "2026-09-03,,100,200,,,,,4,5,,,,",
            "column 10 (returning_buyers)",
            "more returning buyers",
        ),
        (
            "no-figure",
            "2026-09-03,,,,,,,,,,,,,",
            "column 1 (date)",
            "gives no figure",
        ),
        (
            "no-date",
            ",,100,200,,,,,,,,,,",
            "column 1 (date)",
            "missing required value",
        ),
        (
            "hot-without-count",
            "2026-09-03,,,,,,,,,,,cup,,",
            "column 14 (count)",
            "needs its count",
        ),
        (
            "hot-with-figures",
            "2026-09-03,,100,200,,,,,,,,cup,,3",
            "column 3 (visitors)",
            "row of their own",
        ),
        (
            "two-hot-names",
            "2026-09-03,,,,,,,,,,,cup,cups,3",
            "column 13 (hot_keyword)",
            "names one hot product",
        ),
        (
            "count-without-hot",
            "2026-09-03,,100,200,,,,,,,,,,3",
            "column 14 (count)",
            "goes with a hot_product",
        ),
        (
            "not-begun",
            "2026-09-06,,100,200,,,,,,,,,,",
            "column 1 (date)",
            "has not begun",
        ),
        (
            "wrong-field-count",
            "2026-09-03,,100,200",
            "column 5",
            "wrong number of fields",
        ),
    ];
    for (name, row, location, reason) in corpus {
        // A good row first: a bad row anywhere refuses the whole file.
        let content = format!("{HEADER}2026-09-01,,100,300,,,,,,,,,,\n{row}\n");
        let run = import(dir, &format!("{name}.csv"), &content);
        assert_eq!(run.code, 2, "{name}: {}{}", run.stdout, run.stderr);
        let location = format!("line 3, {location}");
        assert!(
            run.stderr.contains(&location) && run.stderr.contains(reason),
            "{name}: expected {location} ... {reason}, got:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("nothing was recorded"),
            "{}",
            run.stderr
        );
        assert_eq!(events(dir), before, "{name} recorded something");
    }

    // Problems of the file as a whole: the header, two rows for one day.
    let unknown = import(dir, "unknown.csv", "date,vistors\n2026-09-03,5\n");
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("line 1, column 2 (vistors)")
            && unknown.stderr.contains("did you mean `visitors`"),
        "{}",
        unknown.stderr
    );
    let twice = import(
        dir,
        "twice.csv",
        "date,visitors,page_views\n2026-09-03,5,9\n2026-09-03,6,9\n",
    );
    assert_eq!(twice.code, 2);
    assert!(
        twice.stderr.contains("line 3") && twice.stderr.contains("figures on line 2 already"),
        "{}",
        twice.stderr
    );
    let empty = import(dir, "empty.csv", "");
    assert_eq!(empty.code, 2);
    assert!(empty.stderr.contains("empty"), "{}", empty.stderr);
    let json_bad = import(
        dir,
        "bad.jsonl",
        "{\"date\": \"2026-09-03\", \"visitors\": 10, \"page_views\": 20}\n{\"date\": \"2026-09-03\", \"hour\": \"x\", \"visitors\": 3, \"page_views\": 4}\n",
    );
    assert_eq!(json_bad.code, 2);
    assert!(
        json_bad.stderr.contains("line 2, hour") && json_bad.stderr.contains("not an hour"),
        "{}",
        json_bad.stderr
    );
    // A zone that is not one.
    std::fs::write(dir.join("zoned.csv"), good_file()).unwrap();
    let zoned = bp(
        dir,
        &[
            "metrics",
            "import",
            "zoned.csv",
            "--zone",
            "Asia/Shanghia",
            "--actor",
            "li.na",
            "--clock-at",
            NOW,
        ],
    );
    assert_eq!(zoned.code, 2);
    assert!(zoned.stderr.contains("Asia/Shanghai"), "{}", zoned.stderr);
    assert_eq!(events(dir), before);
}

#[test]
fn the_same_file_twice_changes_nothing_and_a_correction_is_a_new_event() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    applied(dir);
    let status_before = ok(bp(dir, &["status", CAMPAIGN, "--clock-at", NOW])).stdout;
    insta::assert_snapshot!("status_before_the_shops_numbers", status_before);
    let not_measured = |text: &str, metric: &str| {
        text.lines()
            .find(|line| line.split_whitespace().any(|word| word == metric))
            .is_some_and(|line| line.contains("not measured"))
    };
    assert!(not_measured(&status_before, "inquiries"), "{status_before}");

    let first = ok(import(dir, "shop.csv", &good_file()));
    assert!(
        first
            .stdout
            .contains("recorded the shop's numbers for 4 periods from shop.csv"),
        "{}",
        first.stdout
    );
    let after_first = events(dir);
    let again = ok(import(dir, "shop.csv", &good_file()));
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(
        events(dir),
        after_first,
        "the same file twice recorded again"
    );

    // The same figures in another file (a re-export with the 5th's numbers too) record only
    // the new day; a corrected figure is recorded as a new event naming what it corrects.
    let corrected = good_file()
        .replace("13020,41800,110", "13020,41800,118")
        .replace("\"¥36,400.00\"", "36400.00")
        + "2026-09-05,,6000,18000,50,20,70,60,58,14,18500.00,,,\n";
    std::fs::write(dir.join("shop-v2.csv"), &corrected).unwrap();
    let view: Value = serde_json::from_str(
        &ok(bp(
            dir,
            &[
                "metrics",
                "import",
                "--json",
                "shop-v2.csv",
                "--actor",
                "li.na",
                "--clock-at",
                NOW,
            ],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(view["outcome"], "recorded");
    assert_eq!(view["unchanged"], 3);
    let recorded: Vec<(String, Vec<String>)> = view["recorded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|period| {
            (
                period["period"].as_str().unwrap().to_string(),
                period["corrected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|figure| figure.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("2026-09-03".to_string(), vec!["inquiries".to_string()]),
            ("2026-09-05".to_string(), vec![])
        ]
    );
    assert_eq!(events(dir), after_first + 2);

    // The history shows both figures of the 3rd.
    let history = ok(bp(dir, &["history", CAMPAIGN, "--clock-at", NOW])).stdout;
    let third: Vec<&str> = history
        .lines()
        .filter(|line| line.contains("shop's numbers for 2026-09-03 "))
        .collect();
    assert_eq!(third.len(), 2, "{history}");
    assert!(
        third[0].contains("recorded from shop.csv, line 6: visitors 13,020"),
        "{}",
        third[0]
    );
    assert!(
        third[1].contains("corrected from shop-v2.csv")
            && third[1].contains("inquiries 118 (was 110)")
    );

    // What was not measured is now: from the shop's numbers, with the formulas' inputs.
    let status = ok(bp(dir, &["status", CAMPAIGN, "--clock-at", NOW])).stdout;
    insta::assert_snapshot!("status_with_the_shops_numbers", status);
    let shown = ok(bp(dir, &["metrics", "show", CAMPAIGN, "--clock-at", NOW])).stdout;
    insta::assert_snapshot!("metrics_show", shown);
    let json_status: Value = serde_json::from_str(
        &ok(bp(dir, &["status", CAMPAIGN, "--json", "--clock-at", NOW])).stdout,
    )
    .unwrap();
    let lines = json_status["targets"].clone();
    let inquiries = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["stage"] == "early" && line["metric"] == "inquiries")
        .unwrap();
    // 96 + 118 + 8 + 9 + 50.
    assert_eq!(inquiries["actual"], 281);
    assert_eq!(inquiries["source"], "shop");
    assert_eq!(inquiries["measured"], true);
}

#[test]
fn over_http_a_refused_file_is_a_422_that_locates_its_problems() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    applied(dir);
    let token = ok(bp(
        dir,
        &["token", "create", "--name", "li.na", "--role", "sales"],
    ))
    .stdout
    .trim()
    .to_string();
    let boss = ok(bp(
        dir,
        &["token", "create", "--name", "zhou", "--role", "boss"],
    ))
    .stdout
    .trim()
    .to_string();
    let mut daemon = Daemon::start(
        dir,
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
    let address = http::address_in(&daemon.wait_for("HTTP API on http://"));
    daemon.wait_for("caught up");
    let bearer = format!("Bearer {token}");
    let post = |body: &str, who: &str| {
        http::send(
            &address,
            "POST",
            "/api/v1/imports/metrics?file_name=shop.csv",
            &[("Authorization", who), ("Content-Type", "text/csv")],
            body.as_bytes(),
        )
        .unwrap()
    };
    let refused = post(&format!("{HEADER}2026-09-03,,500,200,,,,,,,,,,\n"), &bearer);
    assert_eq!(refused.status, 422, "{}", refused.text());
    let view = refused.json();
    assert_eq!(view["outcome"], "rejected");
    assert_eq!(view["listed"][0]["line"], 2);
    assert_eq!(view["listed"][0]["column"], "visitors");

    let recorded = post(&good_file(), &bearer);
    assert_eq!(recorded.status, 200, "{}", recorded.text());
    assert_eq!(recorded.json()["outcome"], "recorded");
    assert_eq!(recorded.json()["recorded"][0]["period"], "2026-09-02");
    let again = post(&good_file(), &bearer);
    assert_eq!(again.json()["outcome"], "unchanged");
    // The boss reads; only a manager or sales imports.
    let forbidden = post(&good_file(), &format!("Bearer {boss}"));
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());
    let shown = http::send(
        &address,
        "GET",
        &format!("/api/v1/campaigns/{CAMPAIGN}/metrics"),
        &[("Authorization", &format!("Bearer {boss}"))],
        b"",
    )
    .unwrap();
    assert_eq!(shown.status, 200, "{}", shown.text());
    let view = shown.json();
    assert_eq!(view["days"].as_array().unwrap().len(), 3);
    assert_eq!(view["stages"][0]["figures"]["visitors"], 27_500);
    assert_eq!(
        view["stages"][0]["hot_keywords"][0]["name"],
        "insulated cup"
    );
    assert_eq!(view["stages"][0]["hot_keywords"][0]["count"], 410);
    daemon.terminate();
}
