//! One row of a metrics file (docs/metrics.md) to what it gives, or every problem in it. The
//! adapter reads the file; this module knows the columns.
//!
//! A row gives either a period's figures (`date`, perhaps `hour`, and at least one figure) or
//! one hot product or keyword of the period (`hot_product` or `hot_keyword`, and `count`).
//! Columns are matched without case and surrounding spaces, in English or as the platforms'
//! Chinese data tools name them (`日期`, `访客数`, `支付金额`...). Counts may be grouped with
//! commas (`12,480`) and money may start with `¥` (`¥86,400.00`), as the exports write them.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::{Figure, FigureValue, Figures, HotKind, Period};
use crate::customer::row::{optional, wrong_type, Cell, FieldError, RowColumns, Scalar, Schema};
use crate::plan::diagnostic::suggest;
use crate::plan::values::Money;

/// What a column means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Date,
    Hour,
    Figure(Figure),
    Hot(HotKind),
    Count,
}

/// Every column a metrics file may have, with the names the platforms' Chinese exports give
/// it.
const COLUMNS: &[(&str, Column, &[&str])] = &[
    ("date", Column::Date, &["日期", "统计日期"]),
    ("hour", Column::Hour, &["小时", "时段"]),
    (
        "visitors",
        Column::Figure(Figure::Visitors),
        &["访客数", "uv"],
    ),
    (
        "page_views",
        Column::Figure(Figure::PageViews),
        &["浏览量", "pv"],
    ),
    (
        "inquiries",
        Column::Figure(Figure::Inquiries),
        &["询盘数", "咨询数"],
    ),
    ("new_fans", Column::Figure(Figure::NewFans), &["新增粉丝数"]),
    (
        "placed_orders",
        Column::Figure(Figure::PlacedOrders),
        &["下单订单数", "下单笔数"],
    ),
    (
        "paid_orders",
        Column::Figure(Figure::PaidOrders),
        &["支付订单数", "支付笔数"],
    ),
    (
        "paying_buyers",
        Column::Figure(Figure::PayingBuyers),
        &["支付买家数"],
    ),
    (
        "returning_buyers",
        Column::Figure(Figure::ReturningBuyers),
        &["老买家数", "复购买家数"],
    ),
    (
        "gmv",
        Column::Figure(Figure::Gmv),
        &["支付金额", "成交金额"],
    ),
    (
        "hot_product",
        Column::Hot(HotKind::Product),
        &["热销商品", "商品"],
    ),
    (
        "hot_keyword",
        Column::Hot(HotKind::Keyword),
        &["热搜词", "关键词"],
    ),
    ("count", Column::Count, &["次数", "数量"]),
];

/// The longest hot product or keyword, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// How a metrics file is read: the zone of its dates, and the instant of the import (a period
/// must have begun by then).
#[derive(Debug, Clone, Copy)]
pub struct MetricsSchema {
    pub zone: Tz,
    pub now: DateTime<Utc>,
}

/// A good row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsRow {
    pub line: u64,
    pub period: Period,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub gives: Gives,
}

/// What a row gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gives {
    Figures(Figures),
    Hot {
        kind: HotKind,
        name: String,
        count: u64,
    },
}

#[derive(Debug, Clone)]
pub struct MetricsColumns {
    schema: MetricsSchema,
    /// As the file writes each, and what it means.
    slots: Vec<(String, Column)>,
}

fn column_of(name: &str) -> Option<Column> {
    COLUMNS
        .iter()
        .find(|(key, _, aliases)| *key == name || aliases.contains(&name))
        .map(|(_, column, _)| *column)
}

fn key_of(column: Column) -> &'static str {
    COLUMNS
        .iter()
        .find(|(_, known, _)| *known == column)
        .map_or("", |(key, _, _)| key)
}

impl Schema for MetricsSchema {
    type Columns = MetricsColumns;

    fn columns<'a>(
        self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<MetricsColumns, Vec<FieldError>> {
        let mut slots: Vec<(String, Column)> = Vec::new();
        let mut errors = Vec::new();
        for (index, raw) in names.into_iter().enumerate() {
            let written = if index == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            let trimmed = written.trim();
            let Some(column) = column_of(&trimmed.to_lowercase()) else {
                let known = COLUMNS.iter().map(|(key, _, _)| *key);
                let hint = match suggest(trimmed, known.clone()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                errors.push(
                    FieldError::new(
                        trimmed,
                        format!(
                            "unknown column `{trimmed}`; {hint}a metrics file has the columns {}",
                            known
                                .map(|name| format!("`{name}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .at(index),
                );
                continue;
            };
            if let Some((first, _)) = slots.iter().find(|(_, known)| *known == column) {
                errors.push(
                    FieldError::new(
                        trimmed,
                        format!(
                            "the column `{trimmed}` appears twice (first as `{first}`); keep one"
                        ),
                    )
                    .at(index),
                );
                continue;
            }
            slots.push((trimmed.to_string(), column));
        }
        if errors.is_empty() {
            Ok(MetricsColumns {
                schema: self,
                slots,
            })
        } else {
            Err(errors)
        }
    }
}

impl MetricsColumns {
    fn written(&self, column: Column) -> &str {
        self.slots
            .iter()
            .find(|(_, known)| *known == column)
            .map_or(key_of(column), |(written, _)| written.as_str())
    }

    fn has(&self, column: Column) -> bool {
        self.slots.iter().any(|(_, known)| *known == column)
    }
}

impl RowColumns for MetricsColumns {
    type Row = MetricsRow;

    fn missing_required(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.has(Column::Date) {
            errors.push(FieldError::new(
                "date",
                "the header has no `date` column; every row needs the day it counts",
            ));
        }
        let figures = self
            .slots
            .iter()
            .any(|(_, column)| matches!(column, Column::Figure(_)));
        let hot = self
            .slots
            .iter()
            .any(|(_, column)| matches!(column, Column::Hot(_)));
        if !figures && !hot {
            errors.push(FieldError::new(
                "visitors",
                "the header has no figure column (visitors, page_views, inquiries, new_fans, placed_orders, paid_orders, paying_buyers, returning_buyers, gmv) and no hot_product or hot_keyword column: the file gives nothing",
            ));
        }
        if hot && !self.has(Column::Count) {
            errors.push(FieldError::new(
                "count",
                "the header has a hot product or keyword column but no `count` column",
            ));
        }
        errors
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn name(&self, index: usize) -> Option<&str> {
        self.slots.get(index).map(|(written, _)| written.as_str())
    }

    fn parse(&self, line: u64, cells: &[Cell<'_>]) -> Result<MetricsRow, Vec<FieldError>> {
        let mut errors: Vec<FieldError> = Vec::new();
        let mut date: Option<NaiveDate> = None;
        let mut hour: Option<u8> = None;
        let mut figures = Figures::default();
        let mut hot: Option<(HotKind, String, &str)> = None;
        let mut count: Option<(u64, &str)> = None;
        let mut failed: Vec<Column> = Vec::new();
        for ((written, column), cell) in self.slots.iter().zip(cells) {
            let scalar = Scalar::of(*cell);
            let result: Result<(), String> = (|| {
                match *column {
                    Column::Date => date = optional_date(&scalar)?,
                    Column::Hour => hour = optional_hour(&scalar)?,
                    Column::Figure(Figure::Gmv) => figures.gmv = shop_money(&scalar)?,
                    Column::Figure(figure) => {
                        figures.set(figure, shop_count(&scalar)?.map(FigureValue::Count))
                    }
                    Column::Hot(kind) => {
                        if let Some(name) = optional(&scalar)? {
                            hot_name(name)?;
                            if let Some((other, _, first)) = &hot {
                                return Err(format!(
                                    "a row names one hot product or keyword; this one has `{first}` as {} too",
                                    other.column()
                                ));
                            }
                            hot = Some((kind, name.to_string(), written.as_str()));
                        }
                    }
                    Column::Count => count = shop_count(&scalar)?.map(|n| (n, written.as_str())),
                }
                Ok(())
            })();
            if let Err(reason) = result {
                failed.push(*column);
                errors.push(FieldError::new(written, reason));
            }
        }
        if date.is_none() && !failed.contains(&Column::Date) {
            errors.push(FieldError::new(
                self.written(Column::Date),
                "missing required value: every row has the day it counts, like 2026-09-03",
            ));
        }
        let gives = match hot {
            Some((kind, name, _)) => {
                for figure in Figure::ALL {
                    if figures.get(figure).is_some() {
                        errors.push(FieldError::new(
                            self.written(Column::Figure(figure)),
                            format!(
                                "a {} row holds only its name and count; put the period's figures on a row of their own",
                                kind.column()
                            ),
                        ));
                    }
                }
                match count {
                    Some((count, _)) => Some(Gives::Hot { kind, name, count }),
                    None => {
                        if !failed.contains(&Column::Count) {
                            errors.push(FieldError::new(
                                self.written(Column::Count),
                                format!(
                                    "missing required value: a {} row needs its count",
                                    kind.column()
                                ),
                            ));
                        }
                        None
                    }
                }
            }
            None => {
                if let Some((_, column)) = count {
                    errors.push(FieldError::new(
                        column,
                        "a count goes with a hot_product or hot_keyword on the same row",
                    ));
                }
                let any_failed = failed
                    .iter()
                    .any(|column| matches!(column, Column::Figure(_) | Column::Hot(_)));
                if figures.is_empty() && !any_failed {
                    errors.push(FieldError::new(
                        self.written(Column::Date),
                        "the row gives no figure and no hot product or keyword",
                    ));
                }
                consistency(
                    &figures,
                    |figure| self.written(Column::Figure(figure)),
                    &mut errors,
                );
                Some(Gives::Figures(figures))
            }
        };
        let bounds = match date {
            Some(date) if errors.is_empty() => match bounds(self.schema.zone, date, hour) {
                Ok(bounds) => Some(bounds),
                Err(reason) => {
                    let column = if hour.is_some() {
                        self.written(Column::Hour)
                    } else {
                        self.written(Column::Date)
                    };
                    errors.push(FieldError::new(column, reason));
                    None
                }
            },
            _ => None,
        };
        if let (Some((start, _)), Some(date)) = (bounds, date) {
            if start > self.schema.now {
                let period = Period { date, hour };
                errors.push(FieldError::new(
                    self.written(if hour.is_some() { Column::Hour } else { Column::Date }),
                    format!(
                        "{period} has not begun yet ({} now): a period's figures are imported once they are counted",
                        crate::campaign::timeline::local(self.schema.zone, self.schema.now)
                    ),
                ));
            }
        }
        match (errors.is_empty(), date, bounds, gives) {
            (true, Some(date), Some((start, end)), Some(gives)) => Ok(MetricsRow {
                line,
                period: Period { date, hour },
                start,
                end,
                gives,
            }),
            _ => Err(errors
                .into_iter()
                .map(|mut error| {
                    error.index = self
                        .slots
                        .iter()
                        .position(|(written, _)| *written == error.column);
                    error
                })
                .collect()),
        }
    }
}

/// Figures that cannot all be true: more paying buyers than paid orders, more paid than placed
/// orders, more returning than paying buyers, fewer page views than visitors (columns swapped,
/// most often).
fn consistency<'a>(
    figures: &Figures,
    written: impl Fn(Figure) -> &'a str,
    errors: &mut Vec<FieldError>,
) {
    let pairs = [
        (
            Figure::PayingBuyers,
            Figure::PaidOrders,
            "more paying buyers than paid orders (each buyer paid at least one order)",
        ),
        (
            Figure::PaidOrders,
            Figure::PlacedOrders,
            "more orders paid than placed",
        ),
        (
            Figure::ReturningBuyers,
            Figure::PayingBuyers,
            "more returning buyers than paying buyers",
        ),
        (
            Figure::Visitors,
            Figure::PageViews,
            "more visitors than page views (each visitor viewed at least one page)",
        ),
    ];
    for (more, less, what) in pairs {
        if let (Some(FigureValue::Count(a)), Some(FigureValue::Count(b))) =
            (figures.get(more), figures.get(less))
        {
            if a > b {
                errors.push(FieldError::new(
                    written(more),
                    format!(
                        "{what}: {} {a}, {} {b}; are two columns swapped?",
                        more.key(),
                        less.key()
                    ),
                ));
            }
        }
    }
}

/// A period's first instant and the first after it, in `zone`. A day starts at its first local
/// instant (where midnight is skipped, the first that exists); an hour skipped by daylight
/// saving is refused; an hour that happens twice is its first.
pub fn bounds(
    zone: Tz,
    date: NaiveDate,
    hour: Option<u8>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let beyond = || format!("{date} is outside the calendar battleplan handles");
    match hour {
        None => {
            let next = date.succ_opt().ok_or_else(beyond)?;
            Ok((
                crate::customer::quota::day_start(zone, date),
                crate::customer::quota::day_start(zone, next),
            ))
        }
        Some(hour) => {
            let local = date.and_hms_opt(u32::from(hour), 0, 0).ok_or_else(beyond)?;
            let start = match zone.from_local_datetime(&local) {
                LocalResult::Single(at) => at.with_timezone(&Utc),
                LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
                LocalResult::None => {
                    return Err(format!(
                        "{date} {hour:02}:00 does not exist in {zone}: the clocks skip that hour (daylight saving)"
                    ))
                }
            };
            Ok((start, start + Duration::hours(1)))
        }
    }
}

fn optional_date(scalar: &Scalar<'_>) -> Result<Option<NaiveDate>, String> {
    let Some(text) = optional(scalar)? else {
        return Ok(None);
    };
    for format in ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"] {
        if let Ok(date) = NaiveDate::parse_from_str(text, format) {
            return Ok(Some(date));
        }
    }
    Err(format!(
        "bad date: `{text}` is not a day; write it like 2026-09-03"
    ))
}

fn optional_hour(scalar: &Scalar<'_>) -> Result<Option<u8>, String> {
    let bad = |text: &str| {
        format!("bad hour: `{text}` is not an hour of the day; write 0 to 23 (or 14:00), or leave it empty for the whole day")
    };
    let text = match *scalar {
        Scalar::Empty => return Ok(None),
        Scalar::Text(text) => text.to_string(),
        Scalar::Number(number) => number.to_string(),
        ref other => return Err(wrong_type("an hour from 0 to 23", other)),
    };
    let digits = text
        .strip_suffix(":00")
        .or_else(|| text.strip_suffix('h'))
        .unwrap_or(&text);
    match digits.parse::<u8>() {
        Ok(hour) if hour < 24 => Ok(Some(hour)),
        _ => Err(bad(&text)),
    }
}

/// Digits, grouped by commas in threes or not at all.
fn ungrouped(text: &str) -> Option<String> {
    if !text.contains(',') {
        return Some(text.to_string());
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let groups: Vec<&str> = whole.split(',').collect();
    let first = groups.first()?;
    let well_grouped =
        !first.is_empty() && first.len() <= 3 && groups[1..].iter().all(|group| group.len() == 3);
    if !well_grouped {
        return None;
    }
    let mut out = groups.concat();
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// A count: a whole number, 0 or more, perhaps grouped (`12,480`).
fn shop_count(scalar: &Scalar<'_>) -> Result<Option<u64>, String> {
    let bad = |text: &str| {
        format!("bad number: `{text}` is not a count; write a whole number, 0 or more, like 12480 or 12,480")
    };
    match *scalar {
        Scalar::Empty => Ok(None),
        Scalar::Text(text) => ungrouped(text)
            .and_then(|digits| digits.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| bad(text)),
        Scalar::Number(number) => number
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(&number.to_string())),
        ref other => Err(wrong_type("a whole number", other)),
    }
}

/// Money: at most two decimals, 0 or more, perhaps with `¥` and grouped (`¥86,400.00`).
fn shop_money(scalar: &Scalar<'_>) -> Result<Option<Money>, String> {
    let parse = |text: &str| {
        let bare = text
            .trim_start_matches(['¥', '￥'])
            .trim_start()
            .to_string();
        let digits = ungrouped(&bare).ok_or_else(|| {
            format!(
                "bad money: `{text}` has commas out of place; write it like 86400.00 or 86,400.00"
            )
        })?;
        let amount = Money::parse_text(&digits).map_err(|reason| format!("bad money: {reason}"))?;
        if amount.minor() < 0 {
            return Err(format!(
                "bad money: `{text}` is negative; GMV collected is 0 or more"
            ));
        }
        Ok(Some(amount))
    };
    match *scalar {
        Scalar::Empty => Ok(None),
        Scalar::Text(text) => parse(text),
        Scalar::Number(number) => parse(&number.to_string()),
        ref other => Err(wrong_type("an amount like 86400.00", other)),
    }
}

fn hot_name(name: &str) -> Result<(), String> {
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(format!(
            "a hot product or keyword has at most {MAX_NAME_CHARS} characters; this one has {length}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the name \"{}\" holds control characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// The columns, for messages and docs: `date`, `hour`, the figures, `hot_product`,
/// `hot_keyword`, `count`.
pub fn column_names() -> Vec<&'static str> {
    COLUMNS.iter().map(|(key, _, _)| *key).collect()
}
