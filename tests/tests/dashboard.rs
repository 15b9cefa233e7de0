//! The live dashboard in a real browser (Debian's chromium through chromedriver, driven from
//! Rust with fantoccini), on the festival run into its burst with 2,000 customers: each role
//! logs in with its token; the campaign page shows the numbers `status --json` and `funnel
//! --json` give; outcomes posted to the API change the GMV and funnel cells with no reload; a
//! sales user marks a task done and the board and the history show it with their name; an
//! auditor sees no button that changes anything, and a forged POST is refused. Screenshots of
//! the campaign page and the big screen go to `target/dashboard-screenshots`; any console
//! error or failed request fails the test.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};
use battleplan_tests::browser::{screenshots, Browser};
use battleplan_tests::{bp, http, instant, ok, run_in, Daemon};
use fantoccini::Locator;
use serde_json::Value;

const CAMPAIGN: &str = "sept-festival-2026";
const APPLIED_AT: &str = "2026-08-01T00:00:00Z";
const IMPORTED_AT: &str = "2026-08-20T00:00:00+08:00";
/// Mid-way through the burst's early stage.
const NOW: &str = "2026-09-05T12:00:00+08:00";

/// The shop's numbers without GMV or orders: the campaign's own reaches measure those, so an
/// order posted to the API moves the GMV target's cell.
const SHOP: &str = "date,visitors,page_views,inquiries,new_fans,hot_product,hot_keyword,count\n2026-09-02,12480,40210,96,40,,,\n2026-09-03,13020,41800,110,35,,,\n2026-09-04,9000,30000,80,22,,,\n2026-09-03,,,,,保温杯 500ml,,88\n2026-09-03,,,,,不锈钢饭盒,,51\n2026-09-04,,,,,,保温杯,230\n";

fn festival(dir: &Path) {
    ok(run_in(dir, &["init", "--out", "plan.toml"]));
    ok(bp(
        dir,
        &["plan", "apply", "plan.toml", "--clock-at", APPLIED_AT],
    ));
    let mut customers = Vec::new();
    write_customers(
        &mut customers,
        Options {
            count: 2_000,
            seed: 11,
            as_of: instant(IMPORTED_AT),
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
            "--actor",
            "li.na",
            "--clock-at",
            IMPORTED_AT,
        ],
    ));
    let mut daemon = Daemon::start(
        dir,
        &[
            "--data",
            "data",
            "run",
            "--simulate",
            "--clock-at",
            IMPORTED_AT,
            "--until",
            NOW,
        ],
    );
    let (code, log) = daemon.finish();
    assert_eq!(code, 0, "{}", log.join("\n"));
    std::fs::write(dir.join("shop.csv"), SHOP).unwrap();
    ok(bp(
        dir,
        &[
            "metrics",
            "import",
            "shop.csv",
            "--actor",
            "li.na",
            "--clock-at",
            NOW,
        ],
    ));
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

struct Site<'a> {
    browser: &'a Browser,
    base: String,
}

impl Site<'_> {
    fn block<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.browser.runtime.block_on(future)
    }

    fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.block(self.browser.client.goto(&url))
            .unwrap_or_else(|error| panic!("{url}: {error}"));
    }

    fn path(&self) -> String {
        let url = self.block(self.browser.client.current_url()).unwrap();
        url.path().to_string()
    }

    fn login(&self, token: &str) {
        self.block(self.browser.client.delete_all_cookies())
            .unwrap();
        self.goto("/dashboard");
        assert_eq!(self.path(), "/dashboard/login", "not asked to log in");
        let field = self
            .block(self.browser.client.find(Locator::Id("token")))
            .unwrap();
        self.block(field.send_keys(token)).unwrap();
        let button = self
            .block(self.browser.client.find(Locator::Css(".login button")))
            .unwrap();
        self.block(button.click()).unwrap();
        eventually(
            "the login leads to the campaigns",
            Duration::from_secs(10),
            || self.path() == "/dashboard",
        );
    }

    /// A cell's text and `data-value`, read in one script (the page may swap its content
    /// between two WebDriver calls).
    fn cell(&self, name: &str) -> (String, Option<String>) {
        let found = self.block(self.browser.client.execute(
            "var e = document.querySelector('[data-cell=\"' + arguments[0] + '\"]');\
             return e ? [e.textContent.trim(), e.getAttribute('data-value')] : null;",
            vec![Value::String(name.to_string())],
        ));
        match found.unwrap_or_else(|error| panic!("cell {name}: {error}")) {
            Value::Array(parts) => (
                parts[0].as_str().unwrap_or_default().to_string(),
                parts[1].as_str().map(str::to_string),
            ),
            _ => panic!("no cell {name}"),
        }
    }

    fn count(&self, selector: &str) -> usize {
        self.block(self.browser.client.find_all(Locator::Css(selector)))
            .unwrap()
            .len()
    }

    fn script(&self, source: &str) -> Value {
        self.block(self.browser.client.execute(source, Vec::new()))
            .unwrap_or_else(|error| panic!("{source}: {error}"))
    }

    fn cookie(&self) -> String {
        let cookie = self
            .block(self.browser.client.get_named_cookie("bp_session"))
            .unwrap();
        format!("bp_session={}", cookie.value())
    }
}

/// `status --json` and `funnel --json` as the command line says, through the daemon.
fn json_of(dir: &Path, arguments: &[&str]) -> Value {
    let mut all = arguments.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(bp(dir, &all)).stdout).unwrap()
}

fn money_or_count(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Every target cell holds the actual `status --json` gives, every funnel cell the count
/// `funnel --json` gives.
fn same_numbers_as_the_command_line(site: &Site<'_>, dir: &Path) -> (Value, Value) {
    let status = json_of(dir, &["status", CAMPAIGN]);
    for row in status["targets"].as_array().unwrap() {
        let name = format!(
            "target:{}:{}",
            row["stage"].as_str().unwrap(),
            row["metric"].as_str().unwrap()
        );
        let (text, value) = site.cell(&name);
        assert_eq!(
            value.unwrap_or_default(),
            money_or_count(&row["actual"]),
            "{name} shows {text}"
        );
        if row["measured"] == false {
            assert_eq!(text, "not measured", "{name}");
        }
    }
    let funnel = json_of(dir, &["funnel", CAMPAIGN]);
    let mut blocks: Vec<(String, &Value)> = funnel["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| {
            (
                phase["phase"].as_str().unwrap().to_string(),
                &phase["stages"],
            )
        })
        .collect();
    blocks.push(("overall".to_string(), &funnel["overall"]));
    for (block, stages) in blocks {
        for step in stages.as_array().unwrap() {
            let name = format!("funnel:{block}:{}", step["stage"].as_str().unwrap());
            let (_, value) = site.cell(&name);
            assert_eq!(
                value.unwrap_or_default(),
                step["customers"].to_string(),
                "{name}"
            );
        }
    }
    // Every message sent, per day and channel, adds up to what the channels say they sent.
    let sent: u64 = status["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|channel| channel["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(
        site.cell("sends:sent").1.unwrap_or_default(),
        sent.to_string()
    );
    (status, funnel)
}

/// Polls (bounded) until `check` holds.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_role_sees_and_does_what_it_may_and_the_page_follows_the_log() {
    let Some(browser) = Browser::start(1440, 1000) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    festival(dir);
    let tokens = [
        ("mia", "manager"),
        ("bo.sales", "sales"),
        ("zhou", "boss"),
        ("ada", "auditor"),
    ]
    .map(|(name, role)| (role, name, token(dir, name, role)));
    let token_of = |role: &str| {
        tokens
            .iter()
            .find(|(known, _, _)| *known == role)
            .map(|(_, name, token)| (name.to_string(), token.clone()))
            .unwrap()
    };
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
    let site = Site {
        browser: &browser,
        base: format!("http://{address}"),
    };
    let page = format!("/dashboard/campaigns/{CAMPAIGN}");
    let shots = screenshots();

    // Every role logs in, and sees the campaign in the list.
    for role in ["manager", "sales", "boss", "auditor"] {
        let (name, token) = token_of(role);
        site.login(&token);
        assert_eq!(
            site.count(&format!("[data-campaign=\"{CAMPAIGN}\"]")),
            1,
            "{role}"
        );
        assert_eq!(
            site.count(&format!("[data-viewer=\"{name}\"]")),
            1,
            "{role}"
        );
        browser.assert_clean(&format!("the campaigns as {role}"));
    }
    // A wrong token is refused, with no session.
    site.block(browser.client.delete_all_cookies()).unwrap();
    site.goto("/dashboard/login");
    let field = site
        .block(browser.client.find(Locator::Id("token")))
        .unwrap();
    site.block(field.send_keys("bpt_not-a-token")).unwrap();
    let button = site
        .block(browser.client.find(Locator::Css(".login button")))
        .unwrap();
    site.block(button.click()).unwrap();
    eventually("the refusal is said", Duration::from_secs(10), || {
        site.count(".login .error") == 1
    });
    // The refusal is a 401: the browser logs it as a failed request, which is expected here.
    let _ = browser.log();

    // The boss: the page's numbers are the command line's.
    site.login(&token_of("boss").1);
    site.goto(&page);
    same_numbers_as_the_command_line(&site, dir);
    assert!(site.count(".timeline") == 1 && site.count("svg.bars") == 1);
    assert_eq!(site.count("form.change"), 0, "the boss changes nothing");
    assert_eq!(
        site.count(".recent"),
        0,
        "nothing was done yet, and the boss reads no audit trail"
    );
    browser.assert_clean("the campaign page as the boss");
    // The whole page, in a window as tall as it is.
    site.block(browser.client.set_window_size(1440, 4200))
        .unwrap();
    let shot = browser.screenshot(&shots, "campaign-page");
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
    site.block(browser.client.set_window_size(1920, 1080))
        .unwrap();
    // The weekly report says the same as `report weekly`: its funnel is the page's (the week
    // is under way, so both are as of now), and its page names the log position.
    let weekly = json_of(dir, &["report", "weekly", CAMPAIGN]);
    let overall = weekly["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|block| block["phase"] == "overall")
        .unwrap_or_else(|| panic!("no overall funnel in {weekly:#}"));
    for step in overall["stages"].as_array().unwrap() {
        let name = format!("funnel:overall:{}", step["stage"].as_str().unwrap());
        assert_eq!(
            site.cell(&name).1.unwrap_or_default(),
            step["customers"].to_string(),
            "{name}: the page and the weekly report differ"
        );
    }
    site.goto(&format!("{page}/report"));
    let position = weekly["as_of_position"].as_u64().unwrap();
    let shown = site
        .script("return document.getElementById('main').textContent;")
        .as_str()
        .unwrap()
        .to_string();
    let grouped = battleplan_core::plan::values::grouped(position);
    assert!(shown.contains(&format!("position {grouped}")), "{shown}");
    browser.assert_clean("the weekly report's page");
    site.block(browser.client.set_window_size(1280, 3600))
        .unwrap();
    browser.screenshot(&shots, "weekly-report");
    site.block(browser.client.set_window_size(1920, 1080))
        .unwrap();
    site.goto(&format!("{page}/screen"));
    let (gmv, _) = site.cell("kpi:inquiries");
    assert_eq!(
        gmv, "286",
        "96 + 110 + 80 inquiries from the shop's numbers"
    );
    let products = site
        .script("return document.querySelector('.screen-grid ol').textContent;")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        products.contains("保温杯 500ml") && products.contains("不锈钢饭盒"),
        "{products}"
    );
    browser.assert_clean("the big screen");
    browser.screenshot(&shots, "big-screen");
    site.block(browser.client.set_window_size(1440, 1000))
        .unwrap();

    // Live: outcomes posted to the API move the GMV and funnel cells, with no reload.
    site.goto(&page);
    site.script("window.__not_reloaded = true; return true;");
    let (_, gmv_before) = site.cell("target:early:gmv");
    let sent: Value = json_of(dir, &["outbox", CAMPAIGN, "--customers"]);
    let reached: Vec<String> = sent["customers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|send| send["status"] == "sent")
        .map(|send| send["customer"].as_str().unwrap().to_string())
        .take(40)
        .collect();
    assert!(reached.len() >= 20);
    let outcomes: Vec<Value> = reached
        .iter()
        .enumerate()
        .map(|(index, customer)| {
            serde_json::json!({
                "id": format!("order-{index}"),
                "customer": customer,
                "outcome": "ordered",
                "at": "2026-09-05T11:00:00+08:00",
                "amount": "500.00",
            })
        })
        .collect();
    let (_, manager) = token_of("manager");
    let answer = http::send(
        &address,
        "POST",
        "/api/v1/outcomes",
        &[
            ("Authorization", &format!("Bearer {manager}")),
            ("Content-Type", "application/json"),
        ],
        serde_json::json!({"outcomes": outcomes})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let status = json_of(dir, &["status", CAMPAIGN]);
    let gmv_now = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["stage"] == "early" && row["metric"] == "gmv")
        .map(|row| money_or_count(&row["actual"]))
        .unwrap();
    assert_ne!(
        Some(gmv_now.clone()),
        gmv_before,
        "the orders changed nothing"
    );
    eventually(
        "the GMV cell follows the log",
        Duration::from_secs(10),
        || site.cell("target:early:gmv").1.as_deref() == Some(gmv_now.as_str()),
    );
    same_numbers_as_the_command_line(&site, dir);
    assert_eq!(
        site.script("return window.__not_reloaded === true;"),
        Value::Bool(true),
        "the page was reloaded"
    );
    browser.assert_clean("the campaign page after the live update");

    // Sales: marks a task done from the page; the board and the history name them.
    let (sales_name, sales_token) = token_of("sales");
    site.login(&sales_token);
    site.goto(&page);
    assert_eq!(site.count("svg.bars"), 0, "sales see no funnel");
    assert_eq!(
        site.count("[data-cell^=\"target:\"]"),
        0,
        "sales see no targets (the shop's and the campaign's numbers)"
    );
    let form = site
        .block(browser.client.find(Locator::Css("form.change")))
        .unwrap_or_else(|error| panic!("sales see no task to mark done: {error}"));
    let action = site.block(form.attr("action")).unwrap().unwrap();
    let occurrence = action
        .trim_end_matches("/done")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let button = site.block(form.find(Locator::Css("button"))).unwrap();
    site.block(button.click()).unwrap();
    eventually(
        "the form leads back to the page",
        Duration::from_secs(10),
        || site.path() == page,
    );
    eventually(
        "the board shows who did it",
        Duration::from_secs(10),
        || {
            site.count(&format!("[data-cell=\"task:{occurrence}:by\"]")) == 1
                && site
                    .cell(&format!("task:{occurrence}:by"))
                    .0
                    .starts_with(&sales_name)
        },
    );
    browser.assert_clean("the board after marking a task done");
    let history = ok(bp(dir, &["history", CAMPAIGN])).stdout;
    assert!(
        history
            .lines()
            .any(|line| line.contains(&sales_name)
                && line.contains(&format!("task {occurrence} done"))),
        "{history}"
    );
    let sales_cookie = site.cookie();
    let sales_csrf = site
        .script("return document.querySelector('form.session input[name=csrf]').value;")
        .as_str()
        .unwrap()
        .to_string();

    // The auditor: no button that changes anything, and a forged POST is refused.
    site.login(&token_of("auditor").1);
    site.goto(&page);
    assert_eq!(site.count("form.change"), 0);
    assert_eq!(
        site.count("main button, main input[type=submit]"),
        1,
        "the auditor's only button is the customer lookup"
    );
    assert_eq!(
        site.count(".recent li"),
        12,
        "the auditor reads the history"
    );
    browser.assert_clean("the campaign page as the auditor");
    let auditor_cookie = site.cookie();
    let csrf = site
        .script("return document.querySelector('form.session input[name=csrf]').value;")
        .as_str()
        .unwrap()
        .to_string();
    let open: Vec<String> = json_of(dir, &["tasks", "--campaign", CAMPAIGN])["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["status"] == "overdue" || row["status"] == "open")
        .map(|row| row["occurrence"].as_str().unwrap().to_string())
        .collect();
    let target = open.first().unwrap();
    let post = |cookie: &str, body: &str| {
        http::send(
            &address,
            "POST",
            &format!("/dashboard/campaigns/{CAMPAIGN}/tasks/{target}/done"),
            &[
                ("Cookie", cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    // The auditor's own session and anti-forgery token: the role may not.
    assert_eq!(post(&auditor_cookie, &format!("csrf={csrf}")).status, 403);
    // No anti-forgery token (a form from elsewhere): refused, whoever's session.
    assert_eq!(post(&auditor_cookie, "").status, 403);
    assert_eq!(post(&sales_cookie, "csrf=forged").status, 403);
    // The right token, sent from another site's page: refused by its origin.
    let cross_site = http::send(
        &address,
        "POST",
        &format!("/dashboard/campaigns/{CAMPAIGN}/tasks/{target}/done"),
        &[
            ("Cookie", sales_cookie.as_str()),
            ("Origin", "http://attacker.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={sales_csrf}").as_bytes(),
    )
    .unwrap();
    assert_eq!(cross_site.status, 403);
    let still: Value = json_of(dir, &["tasks", "--campaign", CAMPAIGN]);
    let row = still["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["occurrence"] == target.as_str())
        .unwrap();
    assert_ne!(row["status"], "done", "a refused form recorded something");

    // A customer's page: explain and the history as of an instant.
    let customer = &reached[0];
    site.goto(&format!(
        "{page}/customer?id={customer}&as_of=2026-09-05T11%3A30%3A00%2B08%3A00"
    ));
    let explain = site
        .block(browser.client.find(Locator::Css("pre.explain")))
        .unwrap();
    let words = site.block(explain.text()).unwrap();
    assert!(words.contains(customer.as_str()), "{words}");
    browser.assert_clean("a customer's page");

    daemon.terminate();
}
