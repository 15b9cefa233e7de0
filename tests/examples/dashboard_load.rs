//! The dashboard's speed in a real browser (BENCHMARKS.md, "The dashboard"), against a running
//! daemon: `orchestrator/benches/dashboard.sh` prepares the store and starts it, then runs
//!
//!   dashboard_load ADDRESS MANAGER_TOKEN CAMPAIGN ROUNDS
//!
//! For each round, on loopback: time to first byte and to the last byte of the campaign page,
//! of the weekly report's page and, as the baseline, of the campaign's status from the API
//! (`GET /api/v1/campaigns/ID`, the same daemon and data); the browser's full load of the
//! campaign page and of the report (Navigation Timing: navigation start to the load event),
//! against the full load of a static asset; and the time from an event appended (an outcome
//! POSTed to the API from the page) to the page showing it, against the POST's own answer.
//! Prints the median and the largest of each.

// A benchmark's tool: a failure ends it with the reason.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use battleplan_tests::browser::Browser;
use fantoccini::Locator;
use serde_json::Value;

/// Time to the first byte and to the last, of one GET on its own connection.
fn timed_get(address: &str, path: &str, header: &str) -> (f64, f64, usize) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{header}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).unwrap();
    let ttfb = started.elapsed().as_secs_f64() * 1000.0;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let total = started.elapsed().as_secs_f64() * 1000.0;
    let head = String::from_utf8_lossy(&rest[..rest.len().min(20)]).to_string();
    assert!(head.starts_with("TTP/1.1 200"), "GET {path}: {head}");
    (ttfb, total, rest.len() + 1)
}

fn summary(name: &str, values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let most = values[values.len() - 1];
    format!("| {name} | {median:.1} ms | {most:.1} ms |")
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let [_, address, token, campaign, rounds] = arguments.as_slice() else {
        panic!("usage: dashboard_load ADDRESS MANAGER_TOKEN CAMPAIGN ROUNDS");
    };
    let rounds: usize = rounds.parse().unwrap();
    let browser = Browser::start(1440, 1000).unwrap_or_else(|| panic!("no browser"));
    let base = format!("http://{address}");

    // Log in through the page, then take the session's cookie for the plain GETs.
    browser
        .runtime
        .block_on(browser.client.goto(&format!("{base}/dashboard/login")))
        .unwrap();
    let field = browser
        .runtime
        .block_on(browser.client.find(Locator::Id("token")))
        .unwrap();
    browser.runtime.block_on(field.send_keys(token)).unwrap();
    let button = browser
        .runtime
        .block_on(browser.client.find(Locator::Css(".login button")))
        .unwrap();
    browser.runtime.block_on(button.click()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cookie = browser
        .runtime
        .block_on(browser.client.get_named_cookie("bp_session"))
        .unwrap();
    let cookie = format!("Cookie: bp_session={}", cookie.value());
    let bearer = format!("Authorization: Bearer {token}");
    let page = format!("/dashboard/campaigns/{campaign}");
    let report = format!("{page}/report?week=2026-W38");
    let status = format!("/api/v1/campaigns/{campaign}");

    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    let mut add = |name: &str, value: f64| match series.iter_mut().find(|(known, _)| known == name)
    {
        Some((_, values)) => values.push(value),
        None => series.push((name.to_string(), vec![value])),
    };
    let mut sizes = (0, 0, 0);
    // One round first, not counted: the daemon's kept projections warm up.
    timed_get(address, &page, &cookie);
    timed_get(address, &report, &cookie);
    for _ in 0..rounds {
        let (ttfb, total, size) = timed_get(address, &status, &bearer);
        add("baseline: API status, first byte", ttfb);
        add("baseline: API status, last byte", total);
        sizes.0 = size;
        let (ttfb, total, size) = timed_get(address, &page, &cookie);
        add("campaign page, first byte", ttfb);
        add("campaign page, last byte", total);
        sizes.1 = size;
        let (ttfb, total, size) = timed_get(address, &report, &cookie);
        add("weekly report page, first byte", ttfb);
        add("weekly report page, last byte", total);
        sizes.2 = size;
    }
    let load = |path: &str| -> f64 {
        browser
            .runtime
            .block_on(browser.client.goto(&format!("{base}{path}")))
            .unwrap();
        let timing = browser.runtime.block_on(browser.client.execute(
            "var n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;",
            Vec::new(),
        ))
        .unwrap();
        timing.as_f64().unwrap()
    };
    for _ in 0..rounds {
        add(
            "baseline: browser load of a static file",
            load("/dashboard/assets/app.css"),
        );
        add("campaign page, browser full load", load(&page));
        add("weekly report, browser full load", load(&report));
    }
    // From an event appended to the page showing it.
    browser
        .runtime
        .block_on(browser.client.goto(&format!("{base}{page}")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..rounds {
        let measured = browser
            .runtime
            .block_on(browser.client.execute_async(
                r#"
            var token = arguments[0], id = arguments[1], done = arguments[arguments.length - 1];
            var main = document.getElementById('main');
            var t0 = performance.now(), answered = null;
            var observer = new MutationObserver(function () {
              observer.disconnect();
              done([answered, performance.now() - t0]);
            });
            observer.observe(main, { childList: true });
            fetch('/api/v1/outcomes', {
              method: 'POST',
              headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
              body: JSON.stringify({ outcomes: [{ id: id, customer: 'c-000001', outcome: 'replied',
                at: '2026-09-25T10:00:00+08:00' }] })
            }).then(function (response) { answered = performance.now() - t0; });
            "#,
                vec![
                    Value::String(token.clone()),
                    Value::String(format!("bench-{round}-{}", std::process::id())),
                ],
            ))
            .unwrap();
        let pair = measured.as_array().unwrap();
        add(
            "baseline: the POST's answer",
            pair[0].as_f64().unwrap_or(f64::NAN),
        );
        add(
            "event appended to the page updated",
            pair[1].as_f64().unwrap(),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "bytes: status {} , campaign page {}, report page {}",
        sizes.0, sizes.1, sizes.2
    );
    println!("| measure | median | slowest |");
    println!("|---|---|---|");
    for (name, mut values) in series {
        println!("{}", summary(&name, &mut values));
    }
}
