//! `battleplan init` and `validate` on the example: it validates, it is complete against
//! DOMAIN.md, and `init` never overwrites a plan by accident.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_core::plan::{self, model::PhaseKind, model::TaskSchedule};
use battleplan_tests::run_in;

#[test]
fn init_then_validate_prints_ok() {
    let directory = tempfile::tempdir().unwrap();
    let init = run_in(directory.path(), &["init"]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let written = std::fs::read_to_string(directory.path().join("battleplan.toml")).unwrap();
    assert_eq!(written, plan::EXAMPLE_PLAN);

    let validate = run_in(directory.path(), &["validate", "battleplan.toml"]);
    assert_eq!(validate.code, 0, "{}{}", validate.stdout, validate.stderr);
    insta::assert_snapshot!(validate.stdout);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let directory = tempfile::tempdir().unwrap();
    let target = directory.path().join("battleplan.toml");
    std::fs::write(&target, "my own plan").unwrap();

    let refused = run_in(directory.path(), &["init"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("already exists; use --force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "my own plan");

    let forced = run_in(directory.path(), &["init", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        plan::EXAMPLE_PLAN
    );
    // Nothing but the plan is left behind: the temporary file was moved into place.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "a plan is an ordinary readable document");
    }
    let directory_as_out = run_in(directory.path(), &["init", "--out", ".", "--force"]);
    assert_eq!(directory_as_out.code, 2, "{}", directory_as_out.stderr);
    assert!(
        directory_as_out.stderr.contains("is a directory"),
        "{}",
        directory_as_out.stderr
    );
    let names: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("battleplan.toml")]);
}

#[test]
fn init_writes_where_it_is_told() {
    let directory = tempfile::tempdir().unwrap();
    let run = run_in(directory.path(), &["init", "--out", "plans/festival.toml"]);
    assert_eq!(run.code, 2, "the directory does not exist yet");
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);

    std::fs::create_dir(directory.path().join("plans")).unwrap();
    let run = run_in(directory.path(), &["init", "--out", "plans/festival.toml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let validate = run_in(
        directory.path(),
        &["validate", "plans/festival.toml", "--json"],
    );
    assert_eq!(validate.code, 0);
    let report: serde_json::Value = serde_json::from_str(&validate.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["diagnostics"].as_array().map(Vec::len), Some(0));
}

/// Every workstream and every task DOMAIN.md names, with its role and phase.
#[test]
fn the_example_contains_every_task_and_workstream_of_the_domain() {
    let checked = plan::check(plan::EXAMPLE_PLAN.as_bytes());
    let plan = checked.plan.expect("the example plan is valid");

    let workstreams: Vec<&str> = plan.workstreams.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        workstreams,
        [
            "Old-customer marketing",
            "Communication",
            "Sale marketing",
            "Fan contest",
            "Data"
        ]
    );

    use PhaseKind::*;
    // (workstream, role, phase, words the task's title must contain)
    let expected: &[(&str, &str, PhaseKind, &str)] = &[
        (
            "old-customers",
            "sales",
            Prep,
            "high-potential customers from the shared pool",
        ),
        (
            "old-customers",
            "sales",
            Prep,
            "tier your own customer list",
        ),
        ("old-customers", "ops", Prep, "import offline buyers"),
        ("old-customers", "ops", WarmUp, "warm-up mail template"),
        (
            "old-customers",
            "ops",
            WarmUp,
            "shared pool to recall past inquirers",
        ),
        ("old-customers", "sales", WarmUp, "your own customer list"),
        (
            "old-customers",
            "ops",
            Burst,
            "official stage template to each customer tier",
        ),
        (
            "old-customers",
            "sales",
            Burst,
            "smart batch in-site messages",
        ),
        ("communication", "sales", Prep, "IM contact list"),
        (
            "communication",
            "sales",
            WarmUp,
            "reply templates per product and customer type",
        ),
        ("communication", "sales", Burst, "business cards"),
        (
            "communication",
            "sales",
            Burst,
            "product-recommendation cards",
        ),
        ("communication", "sales", Burst, "orders in chat"),
        ("sale-marketing", "ops", Prep, "sale coupons"),
        ("sale-marketing", "ops", Prep, "visitors who left a card"),
        (
            "sale-marketing",
            "ops",
            WarmUp,
            "product-detail marketing modules",
        ),
        ("sale-marketing", "ops", Burst, "visitor marketing"),
        ("sale-marketing", "ops", Burst, "cards into the CRM"),
        (
            "fan-contest",
            "ops",
            Prep,
            "new products, factory, buyer cases",
        ),
        ("fan-contest", "ops", WarmUp, "fan count"),
        ("fan-contest", "ops", WarmUp, "posters and previews"),
        ("fan-contest", "sales", Burst, "every buyer to follow"),
        ("fan-contest", "ops", Burst, "\"buyer case\""),
        ("fan-contest", "ops", Burst, "\"new arrivals\""),
        ("fan-contest", "ops", Review, "results"),
        ("data", "ops", Prep, "hot themes and paid keywords"),
        ("data", "boss", WarmUp, "three stage targets"),
        (
            "data",
            "boss",
            Burst,
            "weekly report and the live dashboard",
        ),
        (
            "data",
            "ops",
            Burst,
            "traffic sources and adjust paid keywords",
        ),
        ("data", "ops", WarmUp, "Re-optimise paid keywords"),
    ];
    for (workstream, role, phase, words) in expected {
        let found = plan.tasks.iter().any(|task| {
            task.workstream == *workstream
                && task.role == *role
                && task.phase == *phase
                && task.title.contains(words)
        });
        assert!(
            found,
            "no {role} task in {workstream} during {phase:?} about {words:?}"
        );
    }

    // The rhythms DOMAIN.md names: keywords daily in burst, Monday buyer case, Tuesday new arrivals.
    let recurring = |id: &str| {
        let task = plan.tasks.iter().find(|t| t.id == id).unwrap();
        match &task.schedule {
            TaskSchedule::Recurring { recurrence, .. } => format!("{recurrence:?}"),
            TaskSchedule::Once { .. } => "once".to_string(),
        }
    };
    assert_eq!(recurring("adjust-keywords"), "Daily");
    assert_eq!(recurring("post-buyer-case"), "Weekly([Mon])");
    assert_eq!(recurring("post-new-arrivals"), "Weekly([Tue])");

    // Three burst stages with the official themes, mail at 200 free / 2000 cap / 7 days, in-site
    // messages at 20 per account, follow-ups, a coupon and stage targets.
    let themes: Vec<(&str, &str)> = plan
        .stages
        .iter()
        .map(|s| (s.id.as_str(), s.theme.as_str()))
        .collect();
    assert_eq!(
        themes,
        [
            ("early", "The sale has started"),
            ("middle", "More new products have joined the sale"),
            ("late", "Buy before the sale ends"),
        ]
    );
    let mail = plan.channel("mail").unwrap();
    assert_eq!((mail.free_per_day, mail.daily_cap), (Some(200), Some(2000)));
    assert_eq!(mail.fatigue.to_string(), "7d");
    assert_eq!(
        mail.cost_per_1000.map(|c| c.to_string()),
        Some("2.00".into())
    );
    let in_site = plan.channel("in-site").unwrap();
    assert_eq!(in_site.per_account_daily_cap, Some(20));
    let system: Vec<String> = plan
        .segments
        .iter()
        .filter_map(|s| match &s.definition {
            plan::model::SegmentDefinition::System(system) => Some(format!("{system:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        system,
        [
            "Active7d",
            "Active30d",
            "Active90d",
            "L1PlusPotential",
            "MailedReadNotReplied60d"
        ]
    );
    assert!(!plan.follow_ups.is_empty());
    assert!(!plan.offers.coupons.is_empty());
    for stage in ["early", "middle", "late"] {
        assert!(
            plan.targets.iter().any(|t| t.stage == stage),
            "no target for {stage}"
        );
    }
}
