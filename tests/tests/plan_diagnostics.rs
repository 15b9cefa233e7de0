//! The corpus of broken plans: one case per validation rule, plus syntax errors, wrong types,
//! unknown keys, an empty file, binary garbage and a 10 MB file. Each runs the real binary and
//! must exit 2, name the rule's code, and print exactly the reviewed output (insta snapshot).
//! Warnings have their own cases: they are printed, and the plan is still accepted.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_core::plan::EXAMPLE_PLAN;
use battleplan_tests::{mutate, run_in};

/// A small valid plan in a zone with daylight saving, for cases the example cannot show.
/// Daylight saving starts in New York on 2026-03-08 at 02:00 and ends on 2026-11-01 at 02:00.
const SMALL: &str = r#"
[campaign]
id = "spring-sale"
name = "Spring sale"
time_zone = "America/New_York"
currency = "USD"

[phases.prep]
start = 2026-03-01
end = 2026-03-05

[phases.warm_up]
start = 2026-03-06
end = 2026-03-10

[phases.burst]
start = 2026-03-11
end = 2026-03-20

[stages.main]
theme = "The sale is on"
start = "burst.start"
end = "burst.end"

[roles.ops]
members = ["sam"]

[workstreams.data]
name = "Data"

[tasks.check-numbers]
workstream = "data"
role = "ops"
phase = "warm_up"
title = "Check the numbers"
due = 2026-03-08T10:00:00

[segments.active]
system = "active_30d"

[channels.mail]
kind = "mail"
free_per_day = 200
daily_cap = 2000
cost_per_1000 = 2.00
accounts = ["shop"]

[templates.any-mail]
channel = "mail"
subject = "{{ campaign.name }}"
body = "Hello {{ customer.name | default('there') }}. Unsubscribe: {{ unsubscribe_url }}"

[reach_outs.announce]
name = "Announce the sale"
segment = "active"
channel = "mail"
window = "main"
"#;

struct Case {
    name: &'static str,
    /// Extreme inputs print thousands of lines: they are checked for their codes, not snapshot.
    snapshot: bool,
    /// The codes the case exists to show; each must be in the output.
    expect: &'static [&'static str],
    plan: Vec<u8>,
}

fn case(name: &'static str, expect: &'static [&'static str], plan: String) -> Case {
    Case {
        name,
        snapshot: true,
        expect,
        plan: plan.into_bytes(),
    }
}

fn example(replacements: &[(&str, &str)]) -> String {
    mutate(EXAMPLE_PLAN, replacements)
}

fn small(replacements: &[(&str, &str)]) -> String {
    mutate(SMALL, replacements)
}

fn broken_plans() -> Vec<Case> {
    let mut cases = vec![
        // ----- the file itself -----
        case("syntax-unclosed-table", &["BP0001"], example(&[("[phases.warm_up]", "[phases.warm_up")])),
        case(
            "syntax-duplicate-key",
            &["BP0001"],
            example(&[("currency = \"CNY\"", "currency = \"CNY\"\ncurrency = \"USD\"")]),
        ),
        case("syntax-unclosed-string", &["BP0001"], small(&[("name = \"Spring sale\"", "name = \"Spring sale")])),
        case("empty-file", &["BP0003"], "  \n\n".to_string()),
        case("format-newer", &["BP0009"], example(&[("format = 1", "format = 2")])),
        // ----- shapes, keys and types -----
        case("unknown-top-level-key", &["BP0005"], small(&[("[campaign]", "budget = 5000\n\n[campaign]")])),
        case(
            "unknown-key-typo",
            &["BP0005", "BP0007"],
            example(&[("time_zone = \"Asia/Shanghai\"", "timezone = \"Asia/Shanghai\"")]),
        ),
        case("unknown-phase", &["BP0005", "BP0201"], small(&[("[phases.warm_up]", "[phases.warmup]")])),
        case("unknown-nested-key", &["BP0005"], example(&[("policy = \"hold\" }", "polcy = \"hold\" }")])),
        case("wrong-type-string-for-number", &["BP0006"], example(&[("daily_cap = 2000 ", "daily_cap = \"2000\" ")])),
        case("wrong-type-negative-cap", &["BP0006"], example(&[("daily_cap = 2000 ", "daily_cap = -5 ")])),
        case("wrong-type-number-for-date", &["BP0006"], small(&[("due = 2026-03-08T10:00:00", "due = 8")])),
        case("unknown-enum-value", &["BP0006"], example(&[("kind = \"mail\"", "kind = \"mial\"")])),
        case("bad-duration", &["BP0006"], example(&[("after = \"7d\"", "after = \"7 days\"")])),
        case("money-with-three-decimals", &["BP0006"], example(&[("cost_per_1000 = 2.00", "cost_per_1000 = 2.005")])),
        case("missing-campaign", &["BP0005", "BP0007"], small(&[("[campaign]", "[campaing]")])),
        case(
            "section-not-a-table",
            &["BP0008"],
            small(&[("[campaign]", "roles = [\"ops\"]\n\n[campaign]"), ("[roles.ops]\nmembers = [\"sam\"]\n", "")]),
        ),
        case("invalid-id", &["BP0011"], example(&[("[tasks.gather-content]", "[tasks.Gather_Content]")])),
        // ----- campaign -----
        case("bad-campaign-id", &["BP0101"], example(&[("id = \"sept-festival-2026\"", "id = \"Sept Festival\"")])),
        case(
            "bad-time-zone",
            &["BP0102"],
            example(&[("time_zone = \"Asia/Shanghai\"", "time_zone = \"Asia/Shanghia\"")]),
        ),
        case(
            "time-zone-named-after-the-capital",
            &["BP0102"],
            example(&[("time_zone = \"Asia/Shanghai\"", "time_zone = \"Asia/Beijing\"")]),
        ),
        case("bad-currency", &["BP0103"], example(&[("currency = \"CNY\"", "currency = \"yuan\"")])),
        // ----- phases and stages -----
        case(
            "missing-phase",
            &["BP0201"],
            small(&[("[phases.prep]\nstart = 2026-03-01\nend = 2026-03-05\n", "")]),
        ),
        case("phase-ends-before-it-starts", &["BP0202"], example(&[("start = 2026-08-19\nend = 2026-08-25", "start = 2026-08-19\nend = 2026-08-18")])),
        case("phases-overlap", &["BP0203"], example(&[("start = 2026-08-26", "start = 2026-08-25")])),
        case("phases-gap", &["BP0204"], example(&[("start = 2026-08-19\nend = 2026-08-25", "start = 2026-08-19\nend = 2026-08-24")])),
        case(
            "stage-outside-burst",
            &["BP0205"],
            example(&[("start = 2026-09-21\nend = 2026-09-30", "start = 2026-09-21\nend = 2026-10-02")]),
        ),
        case("stages-overlap", &["BP0206"], example(&[("start = 2026-09-11", "start = 2026-09-10")])),
        case("stages-gap", &["BP0207"], example(&[("end = 2026-09-20", "end = 2026-09-19")])),
        case(
            "no-stages",
            &["BP0208"],
            small(&[
                ("[stages.main]\ntheme = \"The sale is on\"\nstart = \"burst.start\"\nend = \"burst.end\"\n", ""),
                ("window = \"main\"", "window = \"burst\""),
            ]),
        ),
        case(
            "local-time-skipped-by-daylight-saving",
            &["BP0209"],
            small(&[("due = 2026-03-08T10:00:00", "due = 2026-03-08T02:30:00")]),
        ),
        case("stage-named-like-a-phase", &["BP0211"], small(&[("[stages.main]", "[stages.burst]")])),
        case(
            "boundaries-in-a-cycle",
            &["BP0212"],
            small(&[("start = 2026-03-01\nend = 2026-03-05", "start = \"prep.end - 5d\"\nend = \"prep.start + 5d\"")]),
        ),
        // ----- people and work -----
        case("unknown-role", &["BP0010"], example(&[("role = \"boss\"\nphase = \"review\"", "role = \"bos\"\nphase = \"review\"")])),
        case(
            "unknown-anchor",
            &["BP0010"],
            example(&[("due = \"prep.start + 2d\"", "due = \"preparation.start + 2d\"")]),
        ),
        case(
            "task-due-outside-phase",
            &["BP0301"],
            example(&[("due = \"prep.end - 2d\"\nremind = [\"1d\", \"2h\"]", "due = \"warm_up.end\"\nremind = [\"1d\", \"2h\"]")]),
        ),
        case(
            "task-due-and-repeat",
            &["BP0302"],
            example(&[("repeat = \"daily\"\nat = \"09:00\"", "repeat = \"daily\"\nat = \"09:00\"\ndue = \"burst.end\"")]),
        ),
        case("task-weekly-without-weekdays", &["BP0302"], example(&[("on = [\"fri\"]\n", "")])),
        case("task-without-schedule", &["BP0302"], example(&[("due = \"review.start + 2d\"\n", "")])),
        case("reminder-of-zero", &["BP0303"], example(&[("remind = [\"2d\", \"4h\"]", "remind = [\"2d\", \"0h\"]")])),
        case(
            "stage-on-a-prep-task",
            &["BP0307"],
            example(&[("title = \"Create the sale coupons\"", "title = \"Create the sale coupons\"\nstage = \"early\"")]),
        ),
        // ----- targets -----
        case("target-unknown-metric", &["BP0401"], example(&[("gmv = 300000.00", "gvm = 300000.00")])),
        case("target-for-unknown-stage", &["BP0010"], example(&[("[targets.late]", "[targets.last]")])),
        case("target-zero", &["BP0402"], example(&[("inquiries = 400", "inquiries = 0")])),
        case("target-count-with-decimals", &["BP0403"], example(&[("orders = 120", "orders = 120.5")])),
        case("target-rate-over-a-hundred-percent", &["BP0404"], example(&[("conversion_rate = \"3.5%\"", "conversion_rate = \"135%\"")])),
        case("budget-of-zero", &["BP0912"], example(&[("monthly_budget = 100.00", "monthly_budget = 0")])),
        case(
            "owner-sender-without-accounts",
            &["BP0603"],
            small(&[("name = \"Announce the sale\"", "name = \"Announce the sale\"\nsender = \"owner\""), ("accounts = [\"shop\"]\n", "")]),
        ),
        // ----- segments -----
        case(
            "segment-of-two-kinds",
            &["BP0501"],
            example(&[("system = \"l1_plus_potential\"", "system = \"l1_plus_potential\"\ncustomers = [\"c-1\"]")]),
        ),
        case(
            "condition-with-two-selectors",
            &["BP0502"],
            example(&[("{ tag = \"left-card\" },", "{ tag = \"left-card\", tier = \"L1+\" },")]),
        ),
        case(
            "condition-option-that-does-not-fit",
            &["BP0503"],
            example(&[("{ tag = \"left-card\" },", "{ tag = \"left-card\", within = \"30d\" },")]),
        ),
        case("empty-customer-list", &["BP0504"], example(&[("customers = [\"c-000417\", \"c-002291\"]", "customers = []")])),
        case(
            "segments-including-each-other",
            &["BP0505"],
            small(&[(
                "[segments.active]\nsystem = \"active_30d\"",
                "[segments.active]\nall = [{ in_segment = \"vip\" }]\n\n[segments.vip]\nall = [{ in_segment = \"active\" }]",
            )]),
        ),
        // ----- channels -----
        case("free-quota-above-cap", &["BP0601"], example(&[("daily_cap = 2000 ", "daily_cap = 100 ")])),
        case("cap-of-zero", &["BP0602"], example(&[("per_account_daily_cap = 20 ", "per_account_daily_cap = 0 ")])),
        case(
            "per-account-cap-without-accounts",
            &["BP0603"],
            example(&[("accounts = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\nfatigue", "fatigue")]),
        ),
        case(
            "quiet-hours-of-no-length",
            &["BP0606"],
            example(&[("start = \"22:00\", end = \"08:00\"", "start = \"22:00\", end = \"22:00\"")]),
        ),
        case("bounce-rate-over-one", &["BP0607"], example(&[("max_bounce_rate = \"5%\"", "max_bounce_rate = \"150%\"")])),
        case("duplicate-account", &["BP0609"], small(&[("accounts = [\"shop\"]", "accounts = [\"shop\", \"shop\"]")])),
        // ----- templates -----
        case(
            "template-syntax",
            &["BP0701"],
            example(&[("Thanks for visiting, {{ customer.name | default('friend') }}!", "Thanks for visiting, {{ customer.name | default('friend') }!")]),
        ),
        case(
            "template-unknown-variable",
            &["BP0702"],
            example(&[("subject = \"{{ stage.theme }}\"", "subject = \"{{ stage.thema }}\"")]),
        ),
        case(
            "template-coupon-variable-without-coupon",
            &["BP0703"],
            example(&[("{{ stage.theme }}: see what is new", "{{ coupon.code }}: see what is new")]),
        ),
        case(
            "mail-template-without-subject",
            &["BP0704"],
            example(&[("subject = \"Did you see our {{ campaign.name }} offer?\"\n", "")]),
        ),
        case("template-empty-body", &["BP0706"], small(&[("body = \"Hello {{ customer.name | default('there') }}. Unsubscribe: {{ unsubscribe_url }}\"", "body = \"  \"")])),
        case("template-version-zero", &["BP0707"], example(&[("version = 1\n", "version = 0\n")])),
        // ----- reach-outs and follow-ups -----
        case(
            "no-template-for-a-stage",
            &["BP0801"],
            example(&[("channel = \"mail\"\nstage = \"middle\"", "channel = \"mail\"\nstage = \"late\"")]),
        ),
        case(
            "two-templates-fit-equally",
            &["BP0802"],
            example(&[("tiers = [\"L1+\"]\n", "")]),
        ),
        case(
            "template-for-another-channel",
            &["BP0803"],
            example(&[("template = \"in-site-visitor-coupon\"", "template = \"early-mail\"")]),
        ),
        case(
            "follow-up-template-for-first-messages",
            &["BP0808"],
            example(&[("stop_on = [\"reply\", \"order\", \"unsubscribe\"]", "stop_on = [\"reply\", \"order\", \"unsubscribe\"]\ntemplate = \"late-mail\"")]),
        ),
        case(
            "reach-out-window-outside-campaign",
            &["BP0805"],
            example(&[("window = { start = \"prep.start\", end = \"burst.end\" }", "window = { start = \"prep.start - 3d\", end = \"burst.end\" }")]),
        ),
        case(
            "reach-out-account-not-on-channel",
            &["BP0806"],
            example(&[("accounts = [\"wang.wei\", \"zhang.min\", \"liu.yang\"]\n\n[reach_outs.own-customers-in-site]", "accounts = [\"wang.wei\", \"zhang.ming\", \"liu.yang\"]\n\n[reach_outs.own-customers-in-site]")]),
        ),
        case("reach-out-unknown-segment", &["BP0010"], example(&[("segment = \"active-30d\"", "segment = \"active-31d\"")])),
        case("follow-up-without-attempts", &["BP0807"], example(&[("max_attempts = 2", "max_attempts = 0")])),
        // ----- offers -----
        case(
            "too-many-tiers",
            &["BP0901"],
            example(&[("{ spend = 1000.00, off = 100.00 },", "{ spend = 1000.00, off = 100.00 },\n  { spend = 2000.00, off = 250.00 },")]),
        ),
        case("tiers-not-increasing", &["BP0902"], example(&[("{ spend = 600.00, off = 50.00 }", "{ spend = 600.00, off = 10.00 }")])),
        case("discount-below-one-percent", &["BP0904"], example(&[("price = 99.00", "price = 0.99")])),
        case("discount-not-below-list-price", &["BP0905"], example(&[("price = 99.00", "price = 129.00")])),
        case("item-listed-after-discount-starts", &["BP0906"], example(&[("listed_from = 2026-08-01", "listed_from = 2026-09-05")])),
        case(
            "bundle-of-six",
            &["BP0907"],
            example(&[(
                "{ sku = \"SKU-3002\", price = 35.00 },",
                "{ sku = \"SKU-3002\", price = 35.00 },\n  { sku = \"SKU-3003\", price = 5.00 },\n  { sku = \"SKU-3004\", price = 5.00 },\n  { sku = \"SKU-3005\", price = 5.00 },",
            )]),
        ),
        case("bundle-not-cheaper", &["BP0908"], example(&[("price = 189.00", "price = 223.00")])),
        case("coupon-worth-its-threshold", &["BP0910"], example(&[("value = 50.00", "value = 500.00")])),
        case(
            "threshold-coupon-without-threshold",
            &["BP0911"],
            example(&[("min_spend = 200.00\nissue = \"crm_push\"", "issue = \"spend_threshold\"")]),
        ),
        // ----- the weekly report's schedule -----
        case("report-schedule-not-a-weekday-and-time", &["BP1001"], example(&[("every = \"monday 09:30\"", "every = \"mondays at 9:30\"")])),
        case("report-to-no-role", &["BP1002"], example(&[("to = [\"boss\"]", "to = []")])),
        case("report-to-an-undeclared-role", &["BP0010"], example(&[("to = [\"boss\"]", "to = [\"bos\"]")])),
        case(
            "reach-out-window-in-a-declared-gap",
            &["BP0810"],
            small(&[
                ("[phases.burst]\nstart = 2026-03-11", "[phases.burst]\nallow_gap_before = true\nstart = 2026-03-12"),
                ("window = \"main\"", "window = { start = \"warm_up.start\", end = \"burst.end\" }"),
            ]),
        ),
        case("negative-cost", &["BP0912"], example(&[("cost_per_1000 = 2.00", "cost_per_1000 = -2.00")])),
        case("template-called-auto", &["BP0011"], small(&[("[templates.any-mail]", "[templates.auto]")])),
        case(
            "phase-on-a-day-the-zone-skipped",
            &["BP0209"],
            small(&[
                ("time_zone = \"America/New_York\"", "time_zone = \"Pacific/Apia\""),
                ("start = 2026-03-01\nend = 2026-03-05", "start = 2011-12-01\nend = 2011-12-29"),
                ("start = 2026-03-06\nend = 2026-03-10", "start = 2011-12-30\nend = 2012-01-10"),
                ("start = 2026-03-11\nend = 2026-03-20", "start = 2012-01-11\nend = 2012-01-20"),
                ("due = 2026-03-08T10:00:00", "due = 2012-01-05T10:00:00"),
            ]),
        ),
        case(
            "template-filter-not-offered",
            &["BP0701"],
            small(&[("Hello {{ customer.name | default('there') }}.", "Hello {{ customer.name|indent(9999999999999) }}.")]),
        ),
        case(
            "template-rendering-megabytes",
            &["BP0701"],
            small(&[("Hello {{ customer.name | default('there') }}.", "{% set s = 'x' * 100000 %}{% for i in range(100000) %}{{ s }}{% endfor %}")]),
        ),
        case("date-past-year-9999", &["BP0006"], small(&[("due = 2026-03-08T10:00:00", "due = \"+262142-12-30\"")])),
        // ----- many problems at once: all are listed, in file order -----
        case(
            "many-problems-at-once",
            &["BP0102", "BP0005", "BP0601", "BP0702", "BP0902", "BP0010"],
            example(&[
                ("time_zone = \"Asia/Shanghai\"", "time_zone = \"Asia/Shangai\""),
                ("title = \"Take orders in chat\"", "titel = \"Take orders in chat\""),
                ("daily_cap = 2000 ", "daily_cap = 100 "),
                ("subject = \"{{ stage.theme }}\"", "subject = \"{{ stage.thema }}\""),
                ("{ spend = 600.00, off = 50.00 }", "{ spend = 600.00, off = 10.00 }"),
                ("segment = \"active-30d\"", "segment = \"active-31d\""),
            ]),
        ),
    ];
    // Binary garbage: a deterministic pseudo-random byte stream that is not UTF-8.
    let mut state: u32 = 0x9e37_79b9;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8 | 0x80
        })
        .collect();
    cases.push(Case {
        name: "binary-garbage",
        snapshot: true,
        expect: &["BP0002"],
        plan: garbage,
    });
    // Ten megabytes of a plan that keeps going: refused before it is parsed.
    let mut huge = EXAMPLE_PLAN.to_string();
    let mut position = 0;
    while huge.len() < 10 * 1024 * 1024 {
        huge.push_str(&format!(
            "\n[offers.coupons.extra-{position}]\nvalue = 1.00\n"
        ));
        position += 1;
    }
    cases.push(case("ten-megabytes", &["BP0004"], huge));
    // Fifty-one bundles: one more than a shop may have.
    let mut bundles = EXAMPLE_PLAN.to_string();
    for number in 0..50 {
        bundles.push_str(&format!(
            "\n[offers.bundles.kit-{number}]\nitems = [{{ sku = \"A\", price = 10.00 }}, {{ sku = \"B\", price = 10.00 }}]\nprice = 15.00\n"
        ));
    }
    cases.push(case("more-than-fifty-bundles", &["BP0909"], bundles));
    cases.extend(extreme_plans());
    cases
}

/// Inputs that once crashed or stalled the validator: huge numbers, long chains, long lists.
/// Each must be rejected promptly with its diagnostic.
fn extreme_plans() -> Vec<Case> {
    let mut cases = vec![
        case(
            "follow-up-attempts-past-the-calendar",
            &["BP0807"],
            example(&[
                ("max_attempts = 2", "max_attempts = 4000000000"),
                ("after = \"7d\"", "after = \"36600d\""),
            ]),
        ),
        case(
            "bundle-prices-past-any-sum",
            &["BP0907"],
            example(&[(
                "{ sku = \"SKU-3002\", price = 35.00 },",
                &"{ sku = \"SKU-X\", price = 999999999999.99 },\n".repeat(2_000),
            )]),
        ),
    ];
    // Ten thousand stages, each anchored on the next one declared, the last on the burst phase:
    // resolving the first walks the whole chain.
    let mut chain = SMALL.replace("window = \"main\"", "window = \"burst\"");
    chain = chain.replace(
        "[stages.main]\ntheme = \"The sale is on\"\nstart = \"burst.start\"\nend = \"burst.end\"\n",
        "",
    );
    for stage in 0..10_000 {
        let anchor = if stage == 9_999 {
            "burst".to_string()
        } else {
            format!("s{}", stage + 1)
        };
        chain.push_str(&format!(
            "\n[stages.s{stage}]\ntheme = \"t\"\nstart = \"{anchor}.start\"\nend = \"{anchor}.end\"\n"
        ));
    }
    cases.push(case("ten-thousand-chained-anchors", &["BP0212"], chain));
    // Two thousand segments each including the next, the last including the first.
    let mut segments = SMALL.to_string();
    for segment in 0..2_000 {
        segments.push_str(&format!(
            "\n[segments.g{segment}]\nall = [{{ in_segment = \"g{}\" }}]\n",
            (segment + 1) % 2_000
        ));
    }
    cases.push(case(
        "two-thousand-segments-in-a-cycle",
        &["BP0505"],
        segments,
    ));
    // A hundred thousand sending accounts, the last one twice.
    let accounts: Vec<String> = (0..100_000)
        .map(|n| format!("\"a{n}\""))
        .chain(["\"a7\"".to_string()])
        .collect();
    cases.push(case(
        "a-hundred-thousand-accounts",
        &["BP0609"],
        small(&[(
            "accounts = [\"shop\"]",
            &format!("accounts = [{}]", accounts.join(", ")),
        )]),
    ));
    // Twenty thousand templates, each for a tier of its own, and one on an unknown channel.
    let mut templates = SMALL.to_string();
    for tier in 0..20_000 {
        templates.push_str(&format!(
            "\n[templates.t{tier}]\nchannel = \"mail\"\ntiers = [\"T{tier}\"]\nsubject = \"s\"\nbody = \"b {{{{ unsubscribe_url }}}}\"\n"
        ));
    }
    templates.push_str("\n[templates.lost]\nchannel = \"fax\"\nbody = \"b\"\n");
    cases.push(case(
        "twenty-thousand-tier-templates",
        &["BP0010"],
        templates,
    ));
    for case in &mut cases {
        case.snapshot = false;
    }
    cases
}

#[test]
fn the_corpus_is_large_enough_and_names_are_unique() {
    let cases = broken_plans();
    assert!(cases.len() >= 30, "only {} broken plans", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "two cases share a name");
}

#[test]
fn every_broken_plan_is_rejected_with_its_diagnostics() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.toml");
    for case in broken_plans() {
        std::fs::write(&path, &case.plan).unwrap();
        let run = run_in(directory.path(), &["validate", "plan.toml"]);
        assert_eq!(
            run.code, 2,
            "{}: exit {}\n{}{}",
            case.name, run.code, run.stdout, run.stderr
        );
        assert!(
            run.stderr.is_empty(),
            "{}: unexpected stderr {}",
            case.name,
            run.stderr
        );
        for code in case.expect {
            assert!(
                run.stdout.contains(&format!("[{code}]")),
                "{}: expected {code} in\n{}",
                case.name,
                run.stdout
            );
        }
        if case.snapshot {
            insta::assert_snapshot!(case.name, run.stdout);
        }
    }
}

/// The same corpus through `--json`: one object, every diagnostic with a line and column where
/// the file has them, and the counts matching the text output.
#[test]
fn broken_plans_report_the_same_problems_as_json() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.toml");
    for case in broken_plans() {
        std::fs::write(&path, &case.plan).unwrap();
        let text = run_in(directory.path(), &["validate", "plan.toml"]);
        let json = run_in(directory.path(), &["validate", "plan.toml", "--json"]);
        assert_eq!(json.code, 2, "{}", case.name);
        let report: serde_json::Value = serde_json::from_str(&json.stdout)
            .unwrap_or_else(|error| panic!("{}: not JSON ({error}): {}", case.name, json.stdout));
        assert_eq!(report["ok"], false);
        let diagnostics = report["diagnostics"].as_array().unwrap();
        let errors = diagnostics
            .iter()
            .filter(|d| d["severity"] == "error")
            .count();
        assert!(errors >= 1, "{}", case.name);
        assert_eq!(report["errors"], errors, "{}", case.name);
        let text_lines = text
            .stdout
            .lines()
            .filter(|line| line.starts_with("plan.toml"))
            .count();
        // One text line per diagnostic, plus the closing count line.
        assert_eq!(text_lines, diagnostics.len() + 1, "{}", case.name);
        for code in case.expect {
            assert!(
                diagnostics.iter().any(|d| d["code"] == *code),
                "{}: {code}",
                case.name
            );
        }
    }
}

/// Advice, not rules: a plan with only warnings is accepted (exit 0) and the warnings printed.
#[test]
fn warnings_are_printed_and_the_plan_accepted() {
    let cases = vec![
        case(
            "warning-tier-threshold-far-from-average-order",
            &["BP0903"],
            example(&[("average_order_value = 260.00", "average_order_value = 500.00")]),
        ),
        case(
            "warning-mail-without-unsubscribe-link",
            &["BP0705"],
            small(&[("Hello {{ customer.name | default('there') }}. Unsubscribe: {{ unsubscribe_url }}", "Hello {{ customer.name | default('there') }}.")]),
        ),
        case(
            "warning-name-printed-without-a-fallback",
            &["BP0708"],
            small(&[("Hello {{ customer.name | default('there') }}.", "Hello {{ customer.name }}.")]),
        ),
        case(
            "warning-channel-without-cap-or-fatigue",
            &["BP0604", "BP0605", "BP0608"],
            small(&[("daily_cap = 2000\ncost_per_1000 = 2.00\n", "fatigue = \"0d\"\n")]),
        ),
        case(
            "warning-unused-workstream-and-memberless-role",
            &["BP0304", "BP0305"],
            small(&[
                ("[roles.ops]\nmembers = [\"sam\"]\n", ""),
                ("[workstreams.data]\nname = \"Data\"", "[workstreams.data]\nname = \"Data\"\n\n[workstreams.fans]\nname = \"Fan contest\""),
            ]),
        ),
        case(
            "warning-recurring-time-skipped-by-daylight-saving",
            &["BP0213"],
            small(&[("due = 2026-03-08T10:00:00", "repeat = \"daily\"\nat = \"02:30\"")]),
        ),
        case(
            "warning-recurring-time-that-happens-twice",
            &["BP0210"],
            small(&[
                ("2026-03-01\nend = 2026-03-05", "2026-10-26\nend = 2026-10-30"),
                ("2026-03-06\nend = 2026-03-10", "2026-10-31\nend = 2026-11-04"),
                ("2026-03-11\nend = 2026-03-20", "2026-11-05\nend = 2026-11-14"),
                ("due = 2026-03-08T10:00:00", "repeat = \"daily\"\nat = \"01:30\""),
            ]),
        ),
        case(
            "warning-follow-up-inside-the-fatigue-window",
            &["BP0809"],
            example(&[("after = \"7d\"", "after = \"3d\"")]),
        ),
        case(
            "warning-reach-out-window-in-quiet-hours",
            &["BP0811"],
            example(&[(
                "segment = \"active-90d\"\nchannel = \"mail\"\nwindow = \"early\"",
                "segment = \"active-90d\"\nchannel = \"mail\"\nwindow = { start = \"early.start\", end = \"early.start + 1h\" }",
            )]),
        ),
        case(
            "warning-role-outside-its-workstream",
            &["BP0306"],
            example(&[("roles = [\"boss\", \"ops\"]", "roles = [\"boss\"]")]),
        ),
        case(
            "warning-reminder-twice",
            &["BP0308"],
            example(&[("remind = [\"2d\", \"4h\"]", "remind = [\"2d\", \"4h\", \"2d\"]")]),
        ),
        case(
            "warning-customer-listed-twice",
            &["BP0506"],
            example(&[("customers = [\"c-000417\", \"c-002291\"]", "customers = [\"c-000417\", \"c-002291\", \"c-000417\"]")]),
        ),
        case(
            "warning-price-never-used",
            &["BP0610"],
            example(&[("free_per_day = 200 ", "free_per_day = 2000 ")]),
        ),
        case(
            "warning-fixed-template-for-another-stage",
            &["BP0804"],
            example(&[("name = \"Buy before the sale ends\"\nsegment = \"l1-plus\"\nchannel = \"mail\"\nwindow = \"late\"", "name = \"Buy before the sale ends\"\nsegment = \"l1-plus\"\nchannel = \"mail\"\nwindow = \"late\"\ntemplate = \"middle-mail\"")]),
        ),
        case(
            "warning-local-time-that-happens-twice",
            &["BP0210"],
            small(&[
                ("2026-03-01\nend = 2026-03-05", "2026-10-26\nend = 2026-10-30"),
                ("2026-03-06\nend = 2026-03-10", "2026-10-31\nend = 2026-11-04"),
                ("2026-03-11\nend = 2026-03-20", "2026-11-05\nend = 2026-11-14"),
                ("due = 2026-03-08T10:00:00", "due = 2026-11-01T01:30:00"),
            ]),
        ),
    ];
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.toml");
    for case in cases {
        std::fs::write(&path, &case.plan).unwrap();
        let run = run_in(directory.path(), &["validate", "plan.toml"]);
        assert_eq!(
            run.code, 0,
            "{}: exit {}\n{}{}",
            case.name, run.code, run.stdout, run.stderr
        );
        for code in case.expect {
            assert!(
                run.stdout.contains(&format!("warning[{code}]")),
                "{}: expected {code} in\n{}",
                case.name,
                run.stdout
            );
        }
        assert!(
            run.stdout
                .lines()
                .last()
                .is_some_and(|line| line.starts_with("ok (")),
            "{}",
            run.stdout
        );
        insta::assert_snapshot!(case.name, run.stdout);
    }
}

#[test]
fn the_small_plan_is_valid() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("plan.toml"), SMALL).unwrap();
    let run = run_in(directory.path(), &["validate", "plan.toml"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.starts_with("ok: Spring sale"), "{}", run.stdout);
}

/// The review phase is optional: a plan without it that still uses it is told so, and nothing
/// that uses it is dropped silently.
#[test]
fn uses_of_an_undeclared_review_phase_are_reported() {
    let without_review = mutate(
        EXAMPLE_PLAN,
        &[(
            "[phases.review]\nstart = 2026-10-01\nend = 2026-10-07\ndescription = \"Summarise results, care for new members, second-touch marketing.\"\n",
            "",
        )],
    );
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("plan.toml"), without_review).unwrap();
    let run = run_in(directory.path(), &["validate", "plan.toml"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    insta::assert_snapshot!(run.stdout);
}
