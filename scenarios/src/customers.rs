//! Deterministic customer and outcome files for the September festival (the example plan): the
//! same options give the same bytes, so tests, benchmarks and demos share one population.
//!
//! The customers exercise every part of the plan: sources for `pool-inquirers` and `own-lists`,
//! tiers L0 to L3 and `L1+` for `l1-plus`, the three sales reps as owners (and some customers
//! with none), the `left-card` tag with recent visits for `card-visitors`, activity spread over
//! the 200 days before `as_of` (so `active-7d`, `-30d`, `-90d` and the potential-buyer rules all
//! have members), missing and invalid addresses, unsubscribes, the recycle bin, about one in ten
//! outside Shanghai's zone, and the ids the plan's `do-not-contact` list names (c-000417,
//! c-002291). Randomness is a splitmix64 sequence from the seed: no dependency, no surprise.

use std::io::{self, Write};

use battleplan_core::customer::row::CUSTOMER_COLUMNS;

/// The columns of a generated outcomes file: the outcomes file's columns before `offer`, which
/// generated orders leave out, so the files (and the logs made from them) stay as they were.
pub const GENERATED_OUTCOME_COLUMNS: [&str; 8] = [
    "customer",
    "outcome",
    "at",
    "campaign",
    "reach_out",
    "channel",
    "amount",
    "message",
];
use chrono::{DateTime, Duration, FixedOffset, Offset as _, Utc};

/// The campaign of the example plan, which the outcomes name.
pub const CAMPAIGN: &str = "sept-festival-2026";
/// The example plan's reach-out that outcomes are tied to.
pub const REACH_OUT: &str = "warm-up-recall";
/// Ids the example plan's `do-not-contact` segment lists: always in the file.
pub const LISTED_IDS: [u64; 2] = [417, 2291];

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Jsonl,
}

impl std::str::FromStr for FileFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<FileFormat, String> {
        match text {
            "csv" => Ok(FileFormat::Csv),
            "jsonl" | "ndjson" => Ok(FileFormat::Jsonl),
            _ => Err(format!("`{text}` is not a format; use csv or jsonl")),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Customers `c-000001` to `c-<count>`; the two listed ids are added when `count` is
    /// smaller than they are.
    pub count: u64,
    pub seed: u64,
    /// Activity lies in the 200 days before this instant; outcomes in the 5 days before it.
    pub as_of: DateTime<Utc>,
    pub format: FileFormat,
}

/// splitmix64: tiny, fast, well spread, and the same everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (`bound` > 0; the tiny bias of the modulo does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const SURNAMES: [&str; 12] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun",
];
const GIVEN: [&str; 12] = [
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Tao", "Jun", "Hui", "Qiang", "Xin",
];
const COMPANIES: [&str; 8] = [
    "Hangzhou Bright Textiles Co., Ltd.",
    "Ningbo Harbour Machinery",
    "Shenzhen Lumen Electronics",
    "Yiwu \"Star\" Trading",
    "Suzhou Silk Road Imports",
    "Qingdao Ocean Foods",
    "Xiamen Green Packaging",
    "Guangzhou Orchid Cosmetics",
];
const OWNERS: [&str; 3] = ["wang.wei", "zhang.min", "liu.yang"];
const TAGS: [&str; 4] = ["vip", "wholesale", "trade-show", "sample-requested"];
const REGIONS: [&str; 4] = ["east", "north", "south", "west"];
const OTHER_ZONES: [(&str, &str); 4] = [
    ("America/New_York", "en-US"),
    ("Europe/Berlin", "de-DE"),
    ("Europe/London", "en-GB"),
    ("Asia/Tokyo", "ja-JP"),
];
const BAD_EMAILS: [&str; 4] = [
    "not-an-address",
    "li.na@",
    "@example.com",
    "wang fang@example.com",
];

/// One generated customer: every column as text ("" for an empty cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub company: String,
    pub email: String,
    pub tags: Vec<String>,
    pub tier: String,
    pub owner: String,
    pub source: String,
    pub locale: String,
    pub time_zone: String,
    /// (column, instant) for each activity the customer has.
    pub activity: Vec<(&'static str, DateTime<Utc>)>,
    pub order_amount: String,
    pub orders: String,
    pub unsubscribed: String,
    pub recycle_bin: String,
    pub region: String,
}

impl Customer {
    /// Whether the address is one the platform would send to (what the book will decide too).
    pub fn has_valid_email(&self) -> bool {
        !self.email.is_empty() && !BAD_EMAILS.contains(&self.email.as_str())
    }
}

/// The customers' columns, in the CSV's order: every column the import reads, and one
/// attribute (`attr.region`). Taken from the importer's own list, so the two cannot drift apart.
fn customer_header() -> Vec<&'static str> {
    let mut header = CUSTOMER_COLUMNS.to_vec();
    header.push(REGION_COLUMN);
    header
}

const REGION_COLUMN: &str = "attr.region";

/// An instant `days` (plus a random part of a day) before `as_of`.
fn before(random: &mut SplitMix64, as_of: DateTime<Utc>, most_days: u64) -> DateTime<Utc> {
    let seconds = random.below(most_days.max(1) * 86_400) as i64;
    as_of - Duration::seconds(seconds + 1)
}

fn customer(random: &mut SplitMix64, number: u64, as_of: DateTime<Utc>) -> Customer {
    let id = format!("c-{number:06}");
    let surname = *random.pick(&SURNAMES);
    let given = *random.pick(&GIVEN);
    let name = format!("{surname} {given}");
    let company = if random.chance(80) {
        random.pick(&COMPANIES).to_string()
    } else {
        String::new()
    };
    let email = match random.below(100) {
        0..=84 => format!(
            "{}.{}{number}@example.com",
            given.to_lowercase(),
            surname.to_lowercase()
        ),
        85..=89 => random.pick(&BAD_EMAILS).to_string(),
        _ => String::new(),
    };
    let source = match random.below(100) {
        0..=39 => "own_list",
        40..=79 => "shared_pool",
        _ => "offline_import",
    };
    let tier = match random.below(100) {
        0..=39 => "L0",
        40..=64 => "L1",
        65..=79 => "L2",
        80..=84 => "L3",
        _ => "L1+",
    };
    let owner = if random.chance(70) {
        random.pick(&OWNERS).to_string()
    } else {
        String::new()
    };
    let mut tags = Vec::new();
    let left_card = random.chance(20);
    if left_card {
        tags.push("left-card".to_string());
    }
    for tag in TAGS {
        if random.chance(12) {
            tags.push(tag.to_string());
        }
    }
    let (time_zone, locale) = if random.chance(10) {
        let (zone, locale) = *random.pick(&OTHER_ZONES);
        (zone.to_string(), locale.to_string())
    } else {
        ("Asia/Shanghai".to_string(), "zh-CN".to_string())
    };
    let mut activity = Vec::new();
    // Last seen: a third in the last week, the rest spread to 200 days; some never.
    if random.chance(90) {
        let days = match random.below(100) {
            0..=29 => 7,
            30..=54 => 30,
            55..=74 => 90,
            _ => 200,
        };
        activity.push(("active", before(random, as_of, days)));
    }
    if random.chance(if left_card { 70 } else { 35 }) {
        activity.push(("visited", before(random, as_of, 45)));
    }
    for column in ["favourited", "carted", "followed"] {
        if random.chance(15) {
            activity.push((column, before(random, as_of, 40)));
        }
    }
    if random.chance(if source == "shared_pool" { 55 } else { 10 }) {
        activity.push(("inquired", before(random, as_of, 200)));
    }
    let ordered = random.chance(20);
    let (order_amount, orders) = if ordered {
        activity.push(("ordered", before(random, as_of, 200)));
        let cents = 5_000 + random.below(300_000);
        (
            format!("{}.{:02}", cents / 100, cents % 100),
            (1 + random.below(9)).to_string(),
        )
    } else if random.chance(50) {
        (String::new(), "0".to_string())
    } else {
        (String::new(), String::new())
    };
    let unsubscribed = match random.below(100) {
        0..=2 => "mail",
        3 => "all",
        _ => "",
    };
    let recycle_bin = if random.chance(2) { "yes" } else { "" };
    let region = random.pick(&REGIONS).to_string();
    Customer {
        id,
        name,
        company,
        email,
        tags,
        tier: tier.to_string(),
        owner,
        source: source.to_string(),
        locale,
        time_zone,
        activity,
        order_amount,
        orders,
        unsubscribed: unsubscribed.to_string(),
        recycle_bin: recycle_bin.to_string(),
        region,
    }
}

/// The customers, in id order, generated one at a time (a million cost no memory).
pub fn customers(options: Options) -> impl Iterator<Item = Customer> {
    let mut random = SplitMix64::new(options.seed);
    let extra = LISTED_IDS.into_iter().filter(move |id| *id > options.count);
    (1..=options.count)
        .chain(extra)
        .map(move |number| customer(&mut random, number, options.as_of))
}

/// Instants as people write them for this shop: in Shanghai's offset.
fn shanghai(instant: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix());
    instant
        .with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", control as u32));
            }
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// Writes one row: CSV cells in `header` order, or a JSON object of the non-empty cells
/// (an empty cell is simply left out: the file does not say).
fn write_row(
    out: &mut dyn Write,
    format: FileFormat,
    header: &[&str],
    cells: &[String],
) -> io::Result<()> {
    match format {
        FileFormat::Csv => {
            let line: Vec<String> = cells.iter().map(|cell| csv_field(cell)).collect();
            writeln!(out, "{}", line.join(","))
        }
        FileFormat::Jsonl => {
            let mut fields = Vec::new();
            for (name, cell) in header.iter().zip(cells) {
                if cell.is_empty() {
                    continue;
                }
                let value = match *name {
                    "tags" => {
                        let items: Vec<String> = cell.split(';').map(json_string).collect();
                        format!("[{}]", items.join(","))
                    }
                    "orders" | "order_amount" | "amount" => cell.clone(),
                    _ => json_string(cell),
                };
                fields.push(format!("{}:{value}", json_string(name)));
            }
            writeln!(out, "{{{}}}", fields.join(","))
        }
    }
}

/// Writes the customers file.
pub fn write_customers(out: &mut dyn Write, options: Options) -> io::Result<()> {
    let header = customer_header();
    if options.format == FileFormat::Csv {
        writeln!(out, "{}", header.join(","))?;
    }
    for customer in customers(options) {
        let instant = |column: &str| {
            customer
                .activity
                .iter()
                .find(|(name, _)| *name == column)
                .map(|(_, at)| shanghai(*at))
                .unwrap_or_default()
        };
        let cells = [
            customer.id.clone(),
            customer.name.clone(),
            customer.company.clone(),
            customer.email.clone(),
            customer.tags.join(";"),
            customer.tier.clone(),
            customer.owner.clone(),
            customer.source.clone(),
            customer.locale.clone(),
            customer.time_zone.clone(),
            instant("active"),
            instant("visited"),
            instant("favourited"),
            instant("carted"),
            instant("followed"),
            instant("inquired"),
            instant("ordered"),
            customer.order_amount.clone(),
            customer.orders.clone(),
            customer.unsubscribed.clone(),
            customer.recycle_bin.clone(),
            customer.region.clone(),
        ];
        write_row(out, options.format, &header, &cells)?;
    }
    Ok(())
}

/// Writes an outcomes file matching the customers of the same options: for about a third of
/// the customers mail can reach, the warm-up recall's mail was delivered (or bounced) in the 5
/// days before `as_of`, then sometimes opened, replied to, ordered from or unsubscribed from;
/// a few orders come with no reach-out at all.
pub fn write_outcomes(out: &mut dyn Write, options: Options) -> io::Result<()> {
    if options.format == FileFormat::Csv {
        writeln!(out, "{}", GENERATED_OUTCOME_COLUMNS.join(","))?;
    }
    // Its own sequence, so the outcomes never shift the customers.
    let mut random = SplitMix64::new(options.seed ^ 0x6f75_7463_6f6d_6573);
    let mut message = 0u64;
    for customer in customers(options) {
        let reachable = customer.has_valid_email()
            && customer.unsubscribed.is_empty()
            && customer.recycle_bin.is_empty();
        let mut rows: Vec<[String; 8]> = Vec::new();
        let row = |outcome: &str,
                   at: DateTime<Utc>,
                   tied: bool,
                   channel: &str,
                   amount: String,
                   message: &str| {
            let (campaign, reach_out) = if tied {
                (CAMPAIGN.to_string(), REACH_OUT.to_string())
            } else {
                (String::new(), String::new())
            };
            [
                customer.id.clone(),
                outcome.to_string(),
                shanghai(at),
                campaign,
                reach_out,
                channel.to_string(),
                amount,
                message.to_string(),
            ]
        };
        if reachable && random.chance(33) {
            message += 1;
            let id = format!("m-{message:07}");
            let sent = before(&mut random, options.as_of, 5);
            let later = |random: &mut SplitMix64, at: DateTime<Utc>| {
                let room = (options.as_of - at).num_seconds().max(2) as u64;
                at + Duration::seconds(1 + random.below(room - 1) as i64)
            };
            if random.chance(4) {
                rows.push(row("bounced", sent, true, "mail", String::new(), &id));
            } else {
                rows.push(row("delivered", sent, true, "mail", String::new(), &id));
                if random.chance(50) {
                    let opened = later(&mut random, sent);
                    rows.push(row("opened", opened, true, "mail", String::new(), &id));
                    if random.chance(20) {
                        let replied = later(&mut random, opened);
                        rows.push(row("replied", replied, true, "mail", String::new(), &id));
                    }
                    if random.chance(10) {
                        let ordered = later(&mut random, opened);
                        let cents = 10_000 + random.below(200_000);
                        let amount = format!("{}.{:02}", cents / 100, cents % 100);
                        rows.push(row("ordered", ordered, true, "", amount, &id));
                    }
                    if random.chance(3) {
                        let unsubscribed = later(&mut random, opened);
                        rows.push(row(
                            "unsubscribed",
                            unsubscribed,
                            true,
                            "mail",
                            String::new(),
                            &id,
                        ));
                    }
                }
            }
        } else if random.chance(2) {
            let at = before(&mut random, options.as_of, 5);
            let cents = 10_000 + random.below(100_000);
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            rows.push(row("ordered", at, false, "", amount, ""));
        }
        for cells in rows {
            write_row(out, options.format, &GENERATED_OUTCOME_COLUMNS, &cells)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests report failures by panicking"
)]
mod tests {
    use super::*;

    fn options(count: u64, format: FileFormat) -> Options {
        Options {
            count,
            seed: 7,
            as_of: DateTime::parse_from_rfc3339("2026-08-20T00:00:00+08:00")
                .unwrap()
                .with_timezone(&Utc),
            format,
        }
    }

    fn text(write: fn(&mut dyn Write, Options) -> io::Result<()>, options: Options) -> String {
        let mut bytes = Vec::new();
        write(&mut bytes, options).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        for format in [FileFormat::Csv, FileFormat::Jsonl] {
            let a = text(write_customers, options(300, format));
            assert_eq!(a, text(write_customers, options(300, format)));
            let other = Options {
                seed: 8,
                ..options(300, format)
            };
            assert_ne!(a, text(write_customers, other));
            assert_eq!(
                text(write_outcomes, options(300, format)),
                text(write_outcomes, options(300, format))
            );
        }
    }

    #[test]
    fn the_population_covers_the_plan() {
        let all: Vec<Customer> = customers(options(3_000, FileFormat::Csv)).collect();
        assert_eq!(all.len(), 3_000);
        assert!(all.iter().any(|c| c.id == "c-000417") && all.iter().any(|c| c.id == "c-002291"));
        let share = |test: &dyn Fn(&Customer) -> bool| all.iter().filter(|c| test(c)).count();
        for tier in ["L0", "L1", "L2", "L3", "L1+"] {
            assert!(share(&|c| c.tier == tier) > 50, "{tier}");
        }
        for source in ["own_list", "shared_pool", "offline_import"] {
            assert!(share(&|c| c.source == source) > 300, "{source}");
        }
        assert!(share(&|c| c.owner.is_empty()) > 500);
        assert!(share(&|c| c.tags.iter().any(|t| t == "left-card")) > 300);
        assert!(share(&|c| !c.has_valid_email()) > 150);
        assert!(share(&|c| c.unsubscribed == "all") > 10);
        assert!(share(&|c| c.recycle_bin == "yes") > 20);
        let abroad = share(&|c| c.time_zone != "Asia/Shanghai");
        assert!((200..=400).contains(&abroad), "{abroad}");
        let as_of = options(0, FileFormat::Csv).as_of;
        for days in [7, 30, 90, 180] {
            let since = as_of - Duration::days(days);
            assert!(
                share(&|c| c
                    .activity
                    .iter()
                    .any(|(n, at)| *n == "active" && *at >= since))
                    > 100,
                "{days}"
            );
        }
        // A small file still lists the ids the plan names.
        let few: Vec<String> = customers(options(10, FileFormat::Csv))
            .map(|c| c.id)
            .collect();
        assert_eq!(few.len(), 12);
        assert_eq!(few[10..], ["c-000417".to_string(), "c-002291".to_string()]);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("Yiwu \"Star\""), "\"Yiwu \"\"Star\"\"\"");
        assert_eq!(json_string("a\"b\u{1}"), "\"a\\\"b\\u0001\"");
    }
}
