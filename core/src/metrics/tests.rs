use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::row::{bounds, Gives, MetricsRow, MetricsSchema};
use super::*;
use crate::customer::row::{Cell, FieldError, RowColumns, Schema};

fn schema(zone: Tz) -> MetricsSchema {
    MetricsSchema {
        zone,
        now: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    }
}

fn parse(names: &[&str], cells: &[&str]) -> Result<MetricsRow, Vec<FieldError>> {
    let columns = schema(chrono_tz::Asia::Shanghai)
        .columns(names.iter().copied())
        .unwrap();
    let cells: Vec<Cell<'_>> = cells.iter().map(|cell| Cell::Text(cell)).collect();
    columns.parse(7, &cells)
}

fn reasons(result: Result<MetricsRow, Vec<FieldError>>) -> Vec<(String, String)> {
    result
        .unwrap_err()
        .into_iter()
        .map(|error| (error.column, error.reason))
        .collect()
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

#[test]
fn a_day_of_figures_in_english_and_in_the_exports_chinese() {
    let names = [
        "date",
        "visitors",
        "page_views",
        "paid_orders",
        "paying_buyers",
        "gmv",
    ];
    let row = parse(
        &names,
        &["2026-09-03", "12,480", "40210", "160", "150", "¥86,400.50"],
    )
    .unwrap();
    assert_eq!(row.line, 7);
    assert_eq!(row.period.to_string(), "2026-09-03");
    // Midnight in Shanghai is 16:00 UTC the day before.
    assert_eq!(
        row.start,
        Utc.with_ymd_and_hms(2026, 9, 2, 16, 0, 0).unwrap()
    );
    assert_eq!(row.end, Utc.with_ymd_and_hms(2026, 9, 3, 16, 0, 0).unwrap());
    let Gives::Figures(figures) = row.gives else {
        panic!("figures expected")
    };
    assert_eq!(figures.visitors, Some(12_480));
    assert_eq!(figures.gmv, Some(Money::from_minor(8_640_050)));
    assert_eq!(figures.inquiries, None);

    let chinese = ["日期", "小时", "访客数", "询盘数", "支付金额"];
    let row = parse(&chinese, &["2026/09/03", "14:00", "300", "12", "1200"]).unwrap();
    assert_eq!(row.period.to_string(), "2026-09-03 14:00");
    assert_eq!(row.end - row.start, chrono::Duration::hours(1));
}

#[test]
fn hot_rows_name_one_thing_and_its_count() {
    let names = ["date", "visitors", "hot_product", "hot_keyword", "count"];
    let row = parse(&names, &["2026-09-03", "", "保温杯 500ml", "", "88"]).unwrap();
    assert_eq!(
        row.gives,
        Gives::Hot {
            kind: HotKind::Product,
            name: "保温杯 500ml".to_string(),
            count: 88
        }
    );
    let both = reasons(parse(&names, &["2026-09-03", "", "cup", "cups", "3"]));
    assert_eq!(both.len(), 1);
    assert!(both[0].1.contains("one hot product or keyword"), "{both:?}");
    let mixed = reasons(parse(&names, &["2026-09-03", "12", "cup", "", "3"]));
    assert_eq!(mixed[0].0, "visitors");
    assert!(mixed[0].1.contains("row of their own"), "{mixed:?}");
    let no_count = reasons(parse(&names, &["2026-09-03", "", "cup", "", ""]));
    assert_eq!(no_count[0].0, "count");
    let stray_count = reasons(parse(&names, &["2026-09-03", "12", "", "", "3"]));
    assert_eq!(stray_count[0].0, "count");
}

#[test]
fn every_bad_cell_is_located() {
    let names = [
        "date",
        "hour",
        "visitors",
        "page_views",
        "placed_orders",
        "paid_orders",
        "paying_buyers",
        "gmv",
    ];
    let bad = reasons(parse(
        &names,
        &["2026-09-31", "24", "-3", "1,00", "x", "1.5", "", "12.345"],
    ));
    let columns: Vec<&str> = bad.iter().map(|(column, _)| column.as_str()).collect();
    assert_eq!(
        columns,
        [
            "date",
            "hour",
            "visitors",
            "page_views",
            "placed_orders",
            "paid_orders",
            "gmv"
        ]
    );
    assert!(bad[0].1.contains("2026-09-31"), "{bad:?}");
    assert!(bad[6].1.contains("two decimals"), "{bad:?}");

    let empty = reasons(parse(&names, &["2026-09-03", "", "", "", "", "", "", ""]));
    assert_eq!(
        empty,
        [(
            "date".to_string(),
            "the row gives no figure and no hot product or keyword".to_string()
        )]
    );
    let no_date = reasons(parse(&names, &["", "", "5", "9", "", "", "", ""]));
    assert_eq!(no_date[0].0, "date");
    assert!(no_date[0].1.starts_with("missing required value"));
}

#[test]
fn figures_that_cannot_all_be_true_are_refused() {
    let names = [
        "date",
        "visitors",
        "page_views",
        "placed_orders",
        "paid_orders",
        "paying_buyers",
        "returning_buyers",
    ];
    let bad = reasons(parse(
        &names,
        &["2026-09-03", "500", "400", "10", "12", "13", "14"],
    ));
    let columns: Vec<&str> = bad.iter().map(|(column, _)| column.as_str()).collect();
    assert_eq!(
        columns,
        [
            "paying_buyers",
            "paid_orders",
            "returning_buyers",
            "visitors"
        ]
    );
    assert!(bad[0].1.contains("swapped"), "{bad:?}");
}

#[test]
fn a_period_that_has_not_begun_is_refused() {
    let names = ["date", "visitors"];
    let bad = reasons(parse(&names, &["2026-12-02", "5"]));
    assert!(bad[0].1.contains("has not begun"), "{bad:?}");
    assert!(parse(&names, &["2026-12-01", "5"]).is_ok());
}

#[test]
fn headers_refuse_unknown_repeated_and_empty_column_sets() {
    let errors = schema(chrono_tz::UTC)
        .columns(["date", "vistors", "访客数", "visitors"])
        .unwrap_err();
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].reason.contains("did you mean `visitors`"),
        "{errors:?}"
    );
    assert!(errors[1].reason.contains("appears twice"), "{errors:?}");
    let columns = schema(chrono_tz::UTC).columns(["hour"]).unwrap();
    let missing: Vec<String> = columns
        .missing_required()
        .into_iter()
        .map(|error| error.column)
        .collect();
    assert_eq!(missing, ["date", "visitors"]);
    let columns = schema(chrono_tz::UTC)
        .columns(["date", "hot_keyword"])
        .unwrap();
    assert_eq!(columns.missing_required()[0].column, "count");
}

#[test]
fn hours_follow_daylight_saving() {
    let york = chrono_tz::America::New_York;
    // Clocks go forward at 02:00 on 2026-03-08: that hour does not exist.
    assert!(bounds(york, day("2026-03-08"), Some(2))
        .unwrap_err()
        .contains("does not exist"));
    // They go back at 02:00 on 2026-11-01: the day has 25 hours, 01:00 is its first.
    let (start, end) = bounds(york, day("2026-11-01"), None).unwrap();
    assert_eq!(end - start, chrono::Duration::hours(25));
    let (one, _) = bounds(york, day("2026-11-01"), Some(1)).unwrap();
    assert_eq!(one, Utc.with_ymd_and_hms(2026, 11, 1, 5, 0, 0).unwrap());
}

fn figures_row(line: u64, date: &str, hour: Option<u8>, figures: Figures) -> MetricsRow {
    let (start, end) = bounds(chrono_tz::Asia::Shanghai, day(date), hour).unwrap();
    MetricsRow {
        line,
        period: Period {
            date: day(date),
            hour,
        },
        start,
        end,
        gives: Gives::Figures(figures),
    }
}

fn hot_row(line: u64, date: &str, kind: HotKind, name: &str, count: u64) -> MetricsRow {
    let (start, end) = bounds(chrono_tz::Asia::Shanghai, day(date), None).unwrap();
    MetricsRow {
        line,
        period: Period {
            date: day(date),
            hour: None,
        },
        start,
        end,
        gives: Gives::Hot {
            kind,
            name: name.to_string(),
            count,
        },
    }
}

fn visitors(count: u64, inquiries: Option<u64>) -> Figures {
    Figures {
        visitors: Some(count),
        inquiries,
        ..Figures::default()
    }
}

fn record(metrics: &mut ShopMetrics, events: &[MetricsRecorded]) {
    for event in events {
        metrics.apply(event, event.end);
    }
}

#[test]
fn the_same_rows_again_record_nothing_and_a_correction_names_what_it_corrects() {
    let mut metrics = ShopMetrics::new();
    let rows = || {
        vec![
            figures_row(2, "2026-09-03", None, visitors(100, Some(4))),
            figures_row(3, "2026-09-04", None, visitors(120, None)),
            hot_row(4, "2026-09-03", HotKind::Product, "cup", 9),
            hot_row(5, "2026-09-03", HotKind::Product, "lid", 12),
        ]
    };
    let first = plan_import(&metrics, rows(), "Asia/Shanghai", "a.csv", "d1").unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].line, 2);
    let products: Vec<&str> = first[0]
        .hot_products
        .as_ref()
        .unwrap()
        .iter()
        .map(|hot| hot.name.as_str())
        .collect();
    assert_eq!(products, ["lid", "cup"], "most first");
    assert!(first[0].corrects.is_empty());
    record(&mut metrics, &first);
    assert!(
        plan_import(&metrics, rows(), "Asia/Shanghai", "a.csv", "d1")
            .unwrap()
            .is_empty()
    );

    // The 3rd's inquiries corrected; its visitors repeated; the 4th gains inquiries.
    let corrected = plan_import(
        &metrics,
        vec![
            figures_row(2, "2026-09-03", None, visitors(100, Some(6))),
            figures_row(
                3,
                "2026-09-04",
                None,
                Figures {
                    inquiries: Some(2),
                    ..Figures::default()
                },
            ),
        ],
        "Asia/Shanghai",
        "b.csv",
        "d2",
    )
    .unwrap();
    assert_eq!(corrected.len(), 2);
    assert_eq!(
        corrected[0].corrects,
        Figures {
            inquiries: Some(4),
            ..Figures::default()
        }
    );
    assert!(corrected[1].corrects.is_empty(), "nothing was given before");
    record(&mut metrics, &corrected);
    let third = metrics
        .get(&Period {
            date: day("2026-09-03"),
            hour: None,
        })
        .unwrap();
    assert_eq!(third.figures, visitors(100, Some(6)));
    assert_eq!(
        third.hot_products.len(),
        2,
        "lists stay when a file gives none"
    );
    let fourth = metrics
        .get(&Period {
            date: day("2026-09-04"),
            hour: None,
        })
        .unwrap();
    assert_eq!(
        fourth.figures,
        visitors(120, Some(2)),
        "a figure not given stays"
    );
}

#[test]
fn rows_of_one_file_that_clash_are_located() {
    let clashes = plan_import(
        &ShopMetrics::new(),
        vec![
            figures_row(2, "2026-09-03", None, visitors(1, None)),
            hot_row(3, "2026-09-03", HotKind::Keyword, "cup", 1),
            figures_row(4, "2026-09-03", None, visitors(2, None)),
            hot_row(5, "2026-09-03", HotKind::Keyword, "cup", 2),
            hot_row(6, "2026-09-03", HotKind::Product, "cup", 2),
        ],
        "Asia/Shanghai",
        "a.csv",
        "d",
    )
    .unwrap_err();
    let lines: Vec<u64> = clashes.iter().map(|clash| clash.line).collect();
    assert_eq!(lines, [4, 5]);
    assert!(clashes[0].reason.contains("line 2"), "{clashes:?}");
    assert!(clashes[1].reason.contains("line 3"), "{clashes:?}");
}

#[test]
fn a_window_takes_each_days_own_row_or_else_its_hours() {
    let mut metrics = ShopMetrics::new();
    let events = plan_import(
        &metrics,
        vec![
            // The 3rd: hours only.
            figures_row(2, "2026-09-03", Some(10), visitors(10, Some(1))),
            figures_row(3, "2026-09-03", Some(11), visitors(20, None)),
            // The 4th: hours, then its day's row, which stands.
            figures_row(4, "2026-09-04", Some(10), visitors(7, None)),
            figures_row(5, "2026-09-04", None, visitors(300, Some(5))),
            // The 5th: outside the window.
            figures_row(6, "2026-09-05", None, visitors(1000, None)),
            hot_row(7, "2026-09-03", HotKind::Keyword, "cup", 3),
            hot_row(8, "2026-09-04", HotKind::Keyword, "cup", 4),
            hot_row(9, "2026-09-04", HotKind::Keyword, "bag", 5),
        ],
        "Asia/Shanghai",
        "a.csv",
        "d",
    )
    .unwrap();
    record(&mut metrics, &events);
    let zone = chrono_tz::Asia::Shanghai;
    let from = crate::customer::quota::day_start(zone, day("2026-09-03"));
    let to = crate::customer::quota::day_start(zone, day("2026-09-05"));
    let numbers = metrics.window(from, to);
    assert_eq!(numbers.figures.visitors, Some(330));
    assert_eq!(numbers.figures.inquiries, Some(6));
    assert_eq!(
        numbers.figures.gmv, None,
        "never given: not measured, not zero"
    );
    assert_eq!(numbers.periods, 3);
    assert_eq!(
        numbers.hot_keywords,
        [
            Hot {
                name: "cup".to_string(),
                count: 7
            },
            Hot {
                name: "bag".to_string(),
                count: 5
            }
        ]
    );
    let days = metrics.days(from, to);
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].1.visitors, Some(30));
    assert_eq!(days[1].1.visitors, Some(300));
    // A window cut at 10:30 on the 3rd holds its 10:00 hour only.
    let cut = metrics.window(from, from + chrono::Duration::minutes(150 + 8 * 60));
    assert_eq!(cut.figures.visitors, Some(10));
}

#[test]
fn targets_and_formulas_from_the_shops_figures() {
    let figures = Figures {
        visitors: Some(10_000),
        page_views: Some(30_000),
        placed_orders: Some(400),
        paid_orders: Some(320),
        paying_buyers: Some(250),
        returning_buyers: Some(50),
        gmv: Some(Money::from_minor(10_000_000)),
        ..Figures::default()
    };
    assert_eq!(
        shop_actual(&figures, Metric::AverageOrderValue),
        Some(TargetValue::Money(Money::from_minor(40_000)))
    );
    assert_eq!(
        shop_actual(&figures, Metric::ConversionRate),
        Some(TargetValue::Rate(0.025))
    );
    assert_eq!(
        shop_actual(&figures, Metric::PaymentRate),
        Some(TargetValue::Rate(0.8))
    );
    assert_eq!(
        shop_actual(&figures, Metric::NewCustomers),
        Some(TargetValue::Count(200))
    );
    assert_eq!(shop_actual(&figures, Metric::Inquiries), None);
    assert_eq!(shop_actual(&figures, Metric::Reached), None);
    let formulas = formulas(&figures);
    let sales = &formulas[0];
    assert_eq!(sales.key, "sales");
    // 10,000 visitors x 2.5% x 400.00 = 100,000.00: the paid amount again.
    assert_eq!(
        sales.value,
        Some(TargetValue::Money(Money::from_minor(10_000_000)))
    );
    assert_eq!(
        sales.inputs[0],
        ("visitors", Some(TargetValue::Count(10_000)))
    );
    let none = formulas_of_nothing();
    assert!(none.iter().all(|formula| formula.value.is_none()));
}

fn formulas_of_nothing() -> Vec<Formula> {
    formulas(&Figures {
        visitors: Some(0),
        ..Figures::default()
    })
}

#[test]
fn events_round_trip_through_their_payload() {
    let event = plan_import(
        &ShopMetrics::new(),
        vec![figures_row(2, "2026-09-03", Some(9), visitors(5, Some(1)))],
        "Asia/Shanghai",
        "a.csv",
        "d",
    )
    .unwrap()
    .remove(0);
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(
        json["period"],
        serde_json::json!({"date": "2026-09-03", "hour": 9})
    );
    assert_eq!(
        json["figures"],
        serde_json::json!({"visitors": 5, "inquiries": 1})
    );
    assert!(json.get("corrects").is_none());
    let back: MetricsRecorded = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
}
