//! Property tests of the validator: plans mutated the ways people break them (a required key
//! deleted, a key written twice, a value of the wrong type, timeline dates swapped) always give at
//! least one error, and no input at all — however damaged — makes it panic.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use battleplan_core::plan::{check, EXAMPLE_PLAN};
use proptest::prelude::*;
use proptest::sample::Index;

/// Keys an entry of each section cannot do without: deleting one makes the plan invalid.
fn required(section: &str, key: &str) -> bool {
    let keys: &[&str] = match section {
        "campaign" => &["id", "name", "time_zone", "currency"],
        "phases" => &["start", "end"],
        "stages" => &["start", "end", "theme"],
        "workstreams" => &["name"],
        "tasks" => &[
            "title",
            "workstream",
            "role",
            "phase",
            "due",
            "repeat",
            "on",
        ],
        "segments" => &["system", "customers"],
        "channels" => &["kind"],
        "templates" => &["channel", "body", "subject"],
        "reach_outs" => &["name", "segment", "channel", "window"],
        "follow_ups" => &["if_no", "after", "max_attempts"],
        "offers.coupons" => &["value"],
        "offers.tiered" => &["tiers"],
        "offers.discounts" => &["item", "list_price", "price", "window"],
        "offers.bundles" => &["items", "price"],
        _ => &[],
    };
    keys.contains(&key)
}

/// One line of the example that sets a key directly in a table (not inside an inline table or
/// array), with the section it belongs to.
#[derive(Debug, Clone)]
struct KeyLine {
    number: usize,
    section: String,
    key: String,
    value: String,
}

fn key_lines(text: &str) -> Vec<KeyLine> {
    let mut section = String::new();
    let mut lines = Vec::new();
    let mut in_multiline_string = false;
    for (number, line) in text.lines().enumerate() {
        if in_multiline_string {
            in_multiline_string = !line.contains("\"\"\"");
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_end_matches(']');
            let parts: Vec<&str> = name.split('.').collect();
            section = if parts[0] == "offers" && parts.len() > 1 {
                format!("offers.{}", parts[1])
            } else {
                parts[0].to_string()
            };
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        if key.starts_with(' ') || key.starts_with('#') || key.contains(' ') {
            continue;
        }
        let value = value.split(" #").next().unwrap_or(value).trim().to_string();
        if value == "\"\"\"" {
            in_multiline_string = true;
        }
        lines.push(KeyLine {
            number,
            section: section.clone(),
            key: key.to_string(),
            value,
        });
    }
    lines
}

fn replace_line(text: &str, number: usize, replacement: Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (index, line) in text.lines().enumerate() {
        if index == number {
            if let Some(replacement) = &replacement {
                out.push_str(replacement);
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn is_complete_value(value: &str) -> bool {
    !(value.ends_with('[') || value.ends_with('{') || value == "\"\"\"")
}

fn assert_rejected(text: &str, what: &str) -> Result<(), TestCaseError> {
    let checked = check(text.as_bytes());
    prop_assert!(checked.has_errors(), "{what}: no error reported");
    prop_assert!(
        checked.plan.is_none(),
        "{what}: a plan was produced despite errors"
    );
    Ok(())
}

fn any_line(filter: impl Fn(&KeyLine) -> bool) -> Vec<KeyLine> {
    key_lines(EXAMPLE_PLAN).into_iter().filter(filter).collect()
}

#[test]
fn the_mutation_pools_are_not_empty() {
    assert!(any_line(|l| required(&l.section, &l.key)).len() > 100);
    assert!(
        any_line(|l| l.value.starts_with('"') && l.value.ends_with('"') && l.value.len() > 1).len()
            > 100
    );
    assert!(timeline_dates().len() >= 14);
}

fn timeline_dates() -> Vec<KeyLine> {
    any_line(|l| {
        (l.section == "phases" || l.section == "stages")
            && (l.key == "start" || l.key == "end")
            && l.value.len() == 10
            && l.value.starts_with("20")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn deleting_a_required_key_is_reported(choice in any::<Index>()) {
        let pool = any_line(|l| required(&l.section, &l.key));
        let line = choice.get(&pool);
        let text = replace_line(EXAMPLE_PLAN, line.number, None);
        assert_rejected(&text, &format!("deleted {line:?}"))?;
    }

    #[test]
    fn writing_a_key_twice_is_reported(choice in any::<Index>()) {
        let pool = any_line(|l| is_complete_value(&l.value));
        let line = choice.get(&pool);
        let doubled = format!("{} = {}\n{} = {}", line.key, line.value, line.key, line.value);
        let text = replace_line(EXAMPLE_PLAN, line.number, Some(doubled));
        assert_rejected(&text, &format!("duplicated {line:?}"))?;
    }

    #[test]
    fn a_value_of_the_wrong_type_is_reported(choice in any::<Index>(), as_number in any::<bool>()) {
        // Text becomes a number; a number becomes a boolean. No key accepts either swap.
        let pool = any_line(|l| {
            let text = l.value.starts_with('"') && l.value.ends_with('"') && l.value.len() > 1 && l.value != "\"\"\"";
            let number = l.value.parse::<f64>().is_ok();
            text || number
        });
        let line = choice.get(&pool);
        let retyped = if line.value.starts_with('"') {
            if as_number { "42" } else { "4.5" }
        } else {
            "true"
        };
        let text = replace_line(EXAMPLE_PLAN, line.number, Some(format!("{} = {retyped}", line.key)));
        assert_rejected(&text, &format!("retyped {line:?} as {retyped}"))?;
    }

    #[test]
    fn swapping_two_timeline_dates_is_reported(first in any::<Index>(), second in any::<Index>()) {
        let pool = timeline_dates();
        let (a, b) = (first.get(&pool), second.get(&pool));
        prop_assume!(a.value != b.value);
        let text = replace_line(EXAMPLE_PLAN, a.number, Some(format!("{} = {}", a.key, b.value)));
        let text = replace_line(&text, b.number, Some(format!("{} = {}", b.key, a.value)));
        assert_rejected(&text, &format!("swapped {a:?} and {b:?}"))?;
    }

    #[test]
    fn extreme_values_never_panic(choices in prop::collection::vec((any::<Index>(), any::<Index>()), 1..4)) {
        // Numbers and durations at and past every limit: the validator answers, it never
        // panics, and a plan comes out only without errors.
        const EXTREMES: &[&str] = &[
            "0", "-1", "4294967295", "4294967296", "9223372036854775807", "-9223372036854775808",
            "1e308", "-0.0", "0.001", "999999999999999.99", "\"0s\"", "\"36600d\"", "\"36601d\"",
            "\"99999999999999999999d\"", "\"1w1d1h1m1s\"", "9999-12-31", "0001-01-01",
            "\"prep.end - 36600d\"", "\"prep.end + 36600d\"", "\"100%\"", "\"-5%\"",
        ];
        let pool = any_line(|l| {
            let number = l.value.parse::<f64>().is_ok();
            let duration_or_time = l.value.starts_with('"') && l.value.len() < 24 && l.value.chars().any(|c| c.is_ascii_digit());
            let date = l.value.len() == 10 && l.value.starts_with("20");
            number || duration_or_time || date
        });
        let mut text = EXAMPLE_PLAN.to_string();
        for (line, value) in choices {
            let line = line.get(&pool);
            let value = value.get(EXTREMES);
            text = replace_line(&text, line.number, Some(format!("{} = {value}", line.key)));
        }
        let checked = check(text.as_bytes());
        prop_assert_eq!(checked.plan.is_some(), !checked.has_errors());
    }

    #[test]
    fn damaged_bytes_never_panic(
        edits in prop::collection::vec((any::<Index>(), any::<Index>(), any::<u8>(), 0u8..3), 1..6)
    ) {
        let mut bytes = EXAMPLE_PLAN.as_bytes().to_vec();
        for (at, length, byte, kind) in edits {
            let start = at.index(bytes.len().max(1)).min(bytes.len());
            let end = (start + length.index(64)).min(bytes.len());
            match kind {
                0 => { bytes.drain(start..end); }
                1 => bytes.insert(start, byte),
                _ => {
                    let copy = bytes[start..end].to_vec();
                    bytes.splice(start..start, copy);
                }
            }
        }
        let checked = check(&bytes);
        // A plan is produced exactly when there is no error.
        prop_assert_eq!(checked.plan.is_some(), !checked.has_errors());
        for diagnostic in &checked.diagnostics {
            if let Some(span) = &diagnostic.span {
                let (line, column) = checked.line_index.line_column(span.start);
                prop_assert!(line >= 1 && column >= 1);
            }
        }
    }
}
