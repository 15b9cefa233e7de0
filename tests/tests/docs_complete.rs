//! The documentation keeps up with the code: every diagnostic code has its entry, and every key
//! the plan format accepts is described. (A tidy test, in the manner of rust-analyzer's.)

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_core::plan::parse::fields_of;
use battleplan_core::plan::raw::*;
use battleplan_core::plan::Code;

fn read(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_default()
}

#[test]
fn every_diagnostic_code_is_documented_with_its_title() {
    let docs = read("docs/diagnostics.md");
    assert!(!docs.is_empty(), "docs/diagnostics.md is missing or empty");
    for code in Code::ALL {
        let heading = format!("## {} — {}", code.as_str(), code.title());
        assert!(
            docs.contains(&heading),
            "docs/diagnostics.md lacks `{heading}`"
        );
    }
}

#[test]
fn every_plan_key_is_documented() {
    let docs = read("docs/plan-format.md");
    assert!(!docs.is_empty(), "docs/plan-format.md is missing or empty");
    let sections: Vec<(&str, &[&str])> = vec![
        ("campaign", fields_of::<RawCampaign>()),
        ("phases", fields_of::<RawPhase>()),
        ("stages", fields_of::<RawStage>()),
        ("roles", fields_of::<RawRole>()),
        ("workstreams", fields_of::<RawWorkstream>()),
        ("tasks", fields_of::<RawTask>()),
        ("segments", fields_of::<RawSegment>()),
        ("conditions", fields_of::<RawCondition>()),
        ("channels", fields_of::<RawChannel>()),
        ("quiet hours", fields_of::<RawQuietHours>()),
        ("bounce guard", fields_of::<RawBounceGuard>()),
        ("smtp", fields_of::<RawSmtp>()),
        ("webhook", fields_of::<RawWebhook>()),
        ("robot", fields_of::<RawRobot>()),
        ("templates", fields_of::<RawTemplate>()),
        ("reach-outs", fields_of::<RawReachOut>()),
        ("follow-ups", fields_of::<RawFollowUp>()),
        ("coupons", fields_of::<RawCoupon>()),
        ("tiered", fields_of::<RawTiered>()),
        ("tiers", fields_of::<RawTier>()),
        ("discounts", fields_of::<RawDiscount>()),
        ("bundles", fields_of::<RawBundle>()),
        ("bundle items", fields_of::<RawBundleItem>()),
        ("reports", fields_of::<RawWeeklyReport>()),
    ];
    for (section, keys) in sections {
        assert!(!keys.is_empty(), "{section}: no fields read");
        for key in keys {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/plan-format.md does not describe `{key}` ({section})"
            );
        }
    }
    for variable in battleplan_core::plan::template::KNOWN_VARIABLES {
        assert!(
            docs.contains(&format!("`{variable}`")),
            "docs/plan-format.md does not list the template variable `{variable}`"
        );
    }
}

#[test]
fn every_import_column_is_documented() {
    use battleplan_core::customer::row::{CUSTOMER_COLUMNS, OUTCOME_COLUMNS};
    let docs = read("docs/customers.md");
    assert!(!docs.is_empty(), "docs/customers.md is missing or empty");
    for column in CUSTOMER_COLUMNS
        .iter()
        .chain(OUTCOME_COLUMNS)
        .chain(&["attr.NAME"])
    {
        assert!(
            docs.contains(&format!("| `{column}` |")),
            "docs/customers.md has no row for the column `{column}`"
        );
    }
}

/// docs/metrics.md has a row for every column of a metrics file, and every metric a stage
/// target may name in its table of where the shop's numbers measure it.
#[test]
fn every_metrics_column_and_target_metric_is_documented() {
    let docs = read("docs/metrics.md");
    assert!(!docs.is_empty(), "docs/metrics.md is missing or empty");
    for column in battleplan_core::metrics::row::column_names() {
        assert!(
            docs.contains(&format!("| `{column}` |")),
            "docs/metrics.md has no row for the column `{column}`"
        );
    }
    for metric in battleplan_core::plan::model::Metric::ALL {
        assert!(
            docs.contains(&format!("| `{}` |", metric.key()))
                || docs.contains(&format!("`{}`, ", metric.key()))
                || docs.contains(&format!(", `{}` |", metric.key())),
            "docs/metrics.md does not say how `{}` is measured",
            metric.key()
        );
    }
}

/// BP0401 lists every metric under the unit its target is written in, and BP0403 names every
/// count: the two sections say what `validate` checks.
#[test]
fn every_target_metric_is_documented_with_its_unit() {
    use battleplan_core::plan::model::{Metric, MetricKind};
    let docs = read("docs/diagnostics.md");
    let section = |code: &str| -> String {
        let start = docs.find(&format!("## {code} ")).unwrap_or(docs.len());
        let rest = &docs[start..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |end| end + 3);
        rest[..end].to_string()
    };
    let unknown_metric = section("BP0401");
    let not_whole = section("BP0403");
    for metric in Metric::ALL {
        let unit = match metric.kind() {
            MetricKind::Money => "| money",
            MetricKind::Count => "| count",
            MetricKind::Rate => "| rate",
        };
        let row = unknown_metric
            .lines()
            .find(|line| line.starts_with(unit))
            .unwrap_or_else(|| panic!("BP0401 has no row for the unit `{unit}`"));
        assert!(
            row.contains(&format!("`{}`", metric.key())),
            "BP0401 does not list `{}` as {unit}",
            metric.key()
        );
        assert_eq!(
            not_whole.contains(&format!("`{}`", metric.key())),
            metric.kind() != MetricKind::Rate,
            "BP0403 and `{}`",
            metric.key()
        );
    }
}
