//! One row of an import file to the event it records, or every problem in it. Pure: the adapter
//! reads the file (CSV or JSON lines) and hands over column names and cells; this module knows
//! what each column means and says, in words, what is wrong with a cell.
//!
//! The rule that runs through it: a column the file does not have (a JSON line without the key)
//! says nothing, so the event's field is `None` and the customer's earlier value stands. A
//! column that is there but empty clears a text field, and gives nothing for an instant, a
//! number, a boolean or a choice from a list. A customers cell holding [`KEEP`] says nothing,
//! as an absent column does. Cells are trimmed of surrounding whitespace.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value as Json;

use super::book::CustomerBook;
use super::events::{
    CustomerEvent, CustomerRecorded, ImportKind, OutcomeKind, OutcomeRecorded, Signal,
};
use crate::plan::diagnostic::suggest;
use crate::plan::model::{Activity, ChannelKind, CustomerSource};
use crate::plan::values::Money;

/// The columns of a customers file, besides the free-form `attr.NAME` ones.
pub const CUSTOMER_COLUMNS: &[&str] = &[
    "id",
    "name",
    "company",
    "email",
    "tags",
    "tier",
    "owner",
    "source",
    "locale",
    "time_zone",
    "active",
    "visited",
    "favourited",
    "carted",
    "followed",
    "inquired",
    "ordered",
    "order_amount",
    "orders",
    "unsubscribed",
    "recycle_bin",
];

/// The columns of an outcomes file.
pub const OUTCOME_COLUMNS: &[&str] = &[
    "customer",
    "outcome",
    "at",
    "campaign",
    "reach_out",
    "channel",
    "amount",
    "message",
    "offer",
];

/// A customers column named `attr.NAME` holds the attribute NAME.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

/// The longest customer id, in characters.
pub const MAX_ID_CHARS: usize = 200;

/// A customers cell holding only this (in any case) leaves the customer's value as it is, as
/// if the file had no such column: how a spreadsheet refreshes some columns on some rows. An
/// empty cell, by contrast, clears a text, a list or an attribute.
pub const KEEP: &str = "(keep)";

/// Separates the items of a list in one cell (`tags`, `unsubscribed`).
pub const LIST_SEPARATOR: char = ';';

const CHANNEL_KINDS: [ChannelKind; 5] = [
    ChannelKind::Mail,
    ChannelKind::InSite,
    ChannelKind::Im,
    ChannelKind::Webhook,
    ChannelKind::Console,
];

const SOURCES: [(&str, CustomerSource); 3] = [
    ("own_list", CustomerSource::OwnList),
    ("shared_pool", CustomerSource::SharedPool),
    ("offline_import", CustomerSource::OfflineImport),
];

/// The activity columns, in the order their signals are recorded.
const ACTIVITIES: [(&str, Activity); 7] = [
    ("active", Activity::Active),
    ("visited", Activity::Visited),
    ("favourited", Activity::Favourited),
    ("carted", Activity::Carted),
    ("followed", Activity::Followed),
    ("inquired", Activity::Inquired),
    ("ordered", Activity::Ordered),
];

/// A cell as the file gives it.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// A CSV field.
    Text(&'a str),
    /// A value of a JSON line.
    Json(&'a Json),
}

/// What is wrong with one column of a row (or of the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The column's name as the file writes it.
    pub column: String,
    /// Where the column is among the names or cells given (from 0), so a CSV reader can say
    /// "column 3"; `None` when the row has no such column (a required key a JSON line lacks).
    pub index: Option<usize>,
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(column: &str, reason: impl Into<String>) -> FieldError {
        FieldError {
            column: column.to_string(),
            index: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn at(mut self, index: usize) -> FieldError {
        self.index = Some(index);
        self
    }
}

/// What the rows of one kind of import file mean: the columns a header (or a JSON line's keys)
/// names, understood once, and each row read through them. The adapter that reads files knows
/// only this.
pub trait Schema: Copy {
    type Columns: RowColumns;

    /// Understands the column names, in the file's order, or says what is wrong with each.
    fn columns<'a>(
        self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self::Columns, Vec<FieldError>>;
}

/// A file's columns, understood.
pub trait RowColumns {
    /// A good row.
    type Row;

    /// The required columns a CSV header lacks: each an error on the header line.
    fn missing_required(&self) -> Vec<FieldError>;

    /// How many columns there are.
    fn len(&self) -> usize;

    /// No column at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column's name as the file writes it.
    fn name(&self, index: usize) -> Option<&str>;

    /// Reads one row: its cells in the columns' order. `line` is the row's line in the file.
    fn parse(&self, line: u64, cells: &[Cell<'_>]) -> Result<Self::Row, Vec<FieldError>>;
}

impl Schema for ImportKind {
    type Columns = Columns;

    fn columns<'a>(
        self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Columns, Vec<FieldError>> {
        Columns::new(self, names)
    }
}

impl RowColumns for Columns {
    type Row = Row;

    fn missing_required(&self) -> Vec<FieldError> {
        Columns::missing_required(self)
    }

    fn len(&self) -> usize {
        Columns::len(self)
    }

    fn name(&self, index: usize) -> Option<&str> {
        Columns::name(self, index)
    }

    fn parse(&self, line: u64, cells: &[Cell<'_>]) -> Result<Row, Vec<FieldError>> {
        Columns::parse(self, line, cells)
    }
}

/// A good row: the event it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Customer(CustomerRecorded),
    Outcome(OutcomeRecorded),
}

impl Row {
    pub fn into_event(self) -> CustomerEvent {
        match self {
            Row::Customer(customer) => CustomerEvent::CustomerRecorded(customer),
            Row::Outcome(outcome) => CustomerEvent::OutcomeRecorded(outcome),
        }
    }

    /// The row's line in the file.
    pub fn line(&self) -> u64 {
        match self {
            Row::Customer(customer) => customer.line,
            Row::Outcome(outcome) => outcome.line,
        }
    }
}

/// What a column means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Name,
    Company,
    Email,
    Tags,
    Tier,
    Owner,
    Source,
    Locale,
    TimeZone,
    Activity(Activity),
    OrderAmount,
    Orders,
    Unsubscribed,
    RecycleBin,
    Attribute,
    Customer,
    Outcome,
    At,
    Campaign,
    ReachOut,
    Channel,
    Amount,
    Message,
    Offer,
}

fn field_of(kind: ImportKind, name: &str) -> Option<Field> {
    let field = match (kind, name) {
        (ImportKind::Customers, "id") => Field::Id,
        (ImportKind::Customers, "name") => Field::Name,
        (ImportKind::Customers, "company") => Field::Company,
        (ImportKind::Customers, "email") => Field::Email,
        (ImportKind::Customers, "tags") => Field::Tags,
        (ImportKind::Customers, "tier") => Field::Tier,
        (ImportKind::Customers, "owner") => Field::Owner,
        (ImportKind::Customers, "source") => Field::Source,
        (ImportKind::Customers, "locale") => Field::Locale,
        (ImportKind::Customers, "time_zone") => Field::TimeZone,
        (ImportKind::Customers, "order_amount") => Field::OrderAmount,
        (ImportKind::Customers, "orders") => Field::Orders,
        (ImportKind::Customers, "unsubscribed") => Field::Unsubscribed,
        (ImportKind::Customers, "recycle_bin") => Field::RecycleBin,
        (ImportKind::Customers, other) => {
            let (_, activity) = ACTIVITIES.iter().find(|(key, _)| *key == other)?;
            Field::Activity(*activity)
        }
        (ImportKind::Outcomes, "customer") => Field::Customer,
        (ImportKind::Outcomes, "outcome") => Field::Outcome,
        (ImportKind::Outcomes, "at") => Field::At,
        (ImportKind::Outcomes, "campaign") => Field::Campaign,
        (ImportKind::Outcomes, "reach_out") => Field::ReachOut,
        (ImportKind::Outcomes, "channel") => Field::Channel,
        (ImportKind::Outcomes, "amount") => Field::Amount,
        (ImportKind::Outcomes, "message") => Field::Message,
        (ImportKind::Outcomes, "offer") => Field::Offer,
        (ImportKind::Outcomes, _) => return None,
    };
    Some(field)
}

fn known_columns(kind: ImportKind) -> &'static [&'static str] {
    match kind {
        ImportKind::Customers => CUSTOMER_COLUMNS,
        ImportKind::Outcomes => OUTCOME_COLUMNS,
    }
}

/// The columns every row must have a value in.
fn required_columns(kind: ImportKind) -> &'static [&'static str] {
    match kind {
        ImportKind::Customers => &["id"],
        ImportKind::Outcomes => &["customer", "outcome", "at"],
    }
}

#[derive(Debug, Clone)]
struct Slot {
    /// As the file writes it, for messages.
    written: String,
    field: Field,
    /// For `attr.NAME`, NAME.
    attribute: Option<String>,
}

/// A file's columns, each understood: checked once for a CSV header, once per line for JSON
/// lines (whose keys are its columns).
#[derive(Debug, Clone)]
pub struct Columns {
    kind: ImportKind,
    slots: Vec<Slot>,
}

impl Columns {
    /// Understands the column names, in the file's order: every unknown column (with the
    /// nearest known name) and every repeated one is an error. Names are matched without case
    /// and surrounding spaces; an `attr.NAME` keeps NAME as written.
    pub fn new<'a>(
        kind: ImportKind,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Columns, Vec<FieldError>> {
        let mut slots = Vec::new();
        let mut errors = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (index, raw) in names.into_iter().enumerate() {
            // A byte-order mark some spreadsheets write before the first name.
            let written = if index == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            let trimmed = written.trim();
            let lower = trimmed.to_lowercase();
            let (field, attribute, key) = match lower.strip_prefix(ATTRIBUTE_PREFIX) {
                Some(_) if kind == ImportKind::Customers => {
                    let name = trimmed[ATTRIBUTE_PREFIX.len()..].trim();
                    if name.is_empty() {
                        errors.push(FieldError::new(
                            trimmed,
                            "an attribute column is named `attr.NAME`, with a name after the dot",
                        )
                        .at(index));
                        continue;
                    }
                    (
                        Field::Attribute,
                        Some(name.to_string()),
                        format!("{ATTRIBUTE_PREFIX}{name}"),
                    )
                }
                _ => match field_of(kind, &lower) {
                    Some(field) => (field, None, lower.clone()),
                    None => {
                        errors.push(
                            FieldError::new(trimmed, unknown_column(kind, trimmed)).at(index),
                        );
                        continue;
                    }
                },
            };
            if let Some(first) = seen.get(&key) {
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
            seen.insert(key, trimmed.to_string());
            slots.push(Slot {
                written: trimmed.to_string(),
                field,
                attribute,
            });
        }
        if errors.is_empty() {
            Ok(Columns { kind, slots })
        } else {
            Err(errors)
        }
    }

    /// The required columns a CSV header lacks: each an error on the header line.
    pub fn missing_required(&self) -> Vec<FieldError> {
        required_columns(self.kind)
            .iter()
            .filter(|name| !self.has(name))
            .map(|name| {
                FieldError::new(
                    name,
                    format!(
                        "the header has no `{name}` column; every {} row needs one",
                        self.row_word()
                    ),
                )
            })
            .collect()
    }

    /// How many columns there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The column's name as the file writes it.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.slots.get(index).map(|slot| slot.written.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.slots
            .iter()
            .any(|slot| field_of(self.kind, name) == Some(slot.field))
    }

    fn row_word(&self) -> &'static str {
        match self.kind {
            ImportKind::Customers => "customer",
            ImportKind::Outcomes => "outcome",
        }
    }

    /// Reads one row: its cells in the columns' order (missing cells at the end read as absent
    /// columns; the adapter reports a wrong count itself). `line` is the row's line in the file.
    pub fn parse(&self, line: u64, cells: &[Cell<'_>]) -> Result<Row, Vec<FieldError>> {
        let parsed = match self.kind {
            ImportKind::Customers => self.customer(line, cells).map(Row::Customer),
            ImportKind::Outcomes => self.outcome(line, cells).map(Row::Outcome),
        };
        parsed.map_err(|errors| {
            errors
                .into_iter()
                .map(|mut error| {
                    error.index = self
                        .slots
                        .iter()
                        .position(|slot| slot.written == error.column);
                    error
                })
                .collect()
        })
    }

    fn customer(&self, line: u64, cells: &[Cell<'_>]) -> Result<CustomerRecorded, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut record = CustomerRecorded {
            line,
            ..CustomerRecorded::default()
        };
        let mut id = None;
        let mut instants: Vec<(Activity, DateTime<Utc>)> = Vec::new();
        let mut order_amount: Option<(Money, &str)> = None;
        let mut attributes = Vec::new();
        for (slot, cell) in self.slots.iter().zip(cells) {
            let column = slot.written.as_str();
            let scalar = Scalar::of(*cell);
            if scalar.is_keep() && slot.field != Field::Id {
                // The marker leaves the customer's value as it is: as if the column were absent.
                continue;
            }
            let result: Result<(), String> = (|| {
                match slot.field {
                    Field::Id if scalar.is_keep() => {
                        return Err(format!(
                            "`{KEEP}` leaves a value as it is, and every row needs its own id"
                        ))
                    }
                    Field::Id => id = Some(customer_id(required(&scalar, "an id")?)?),
                    Field::Name => record.name = Some(header_text(&scalar, "name")?),
                    Field::Company => record.company = Some(header_text(&scalar, "company")?),
                    Field::Email => record.email = Some(text(&scalar)?.to_string()),
                    Field::Tags => record.tags = Some(tags(&scalar)?),
                    Field::Tier => record.tier = Some(text(&scalar)?.to_string()),
                    Field::Owner => record.owner = Some(text(&scalar)?.to_string()),
                    Field::Source => record.source = optional(&scalar)?.map(source).transpose()?,
                    Field::Locale => record.locale = Some(text(&scalar)?.to_string()),
                    Field::TimeZone => record.time_zone = Some(time_zone(text(&scalar)?)?),
                    Field::Activity(activity) => {
                        if let Some(at) = optional(&scalar)?.map(instant).transpose()? {
                            instants.push((activity, at));
                        }
                    }
                    Field::OrderAmount => {
                        if let Some(amount) = money(&scalar)? {
                            order_amount = Some((amount, column));
                        }
                    }
                    Field::Orders => record.orders = count(&scalar)?,
                    Field::Unsubscribed => {
                        let (channels, all) = unsubscribed(&scalar)?;
                        record.unsubscribed = channels;
                        record.unsubscribed_all = all;
                    }
                    Field::RecycleBin => record.recycle_bin = boolean(&scalar)?,
                    Field::Attribute => {
                        let name = slot.attribute.clone().unwrap_or_default();
                        attributes.push((name, attribute_value(&scalar)?));
                    }
                    _ => {}
                }
                Ok(())
            })();
            if let Err(reason) = result {
                errors.push(FieldError::new(column, reason));
            }
        }
        match id {
            Some(id) => record.customer = id,
            None if !errors.iter().any(|e| self.is_field(&e.column, Field::Id)) => {
                errors.push(self.missing("id", "every customer needs an id"))
            }
            None => {}
        }
        if let Some((amount, column)) = order_amount {
            match instants
                .iter()
                .position(|(activity, _)| *activity == Activity::Ordered)
            {
                Some(_) => {}
                None if errors
                    .iter()
                    .any(|e| self.is_field(&e.column, Field::Activity(Activity::Ordered))) => {}
                None => errors.push(FieldError::new(
                    column,
                    format!(
                        "an order amount ({amount}) needs the `ordered` instant in the same row"
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        instants.sort_by_key(|(activity, _)| {
            ACTIVITIES
                .iter()
                .position(|(_, known)| known == activity)
                .unwrap_or(usize::MAX)
        });
        record.signals = instants
            .into_iter()
            .map(|(activity, at)| Signal {
                activity,
                at,
                amount: if activity == Activity::Ordered {
                    order_amount.map(|(amount, _)| amount)
                } else {
                    None
                },
            })
            .collect();
        attributes.sort();
        record.attributes = attributes;
        Ok(record)
    }

    fn outcome(&self, line: u64, cells: &[Cell<'_>]) -> Result<OutcomeRecorded, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut customer = None;
        let mut outcome = None;
        let mut at = None;
        let mut campaign: Option<String> = None;
        let mut reach_out: Option<String> = None;
        let mut channel = None;
        let mut amount: Option<(Money, &str)> = None;
        let mut message = None;
        let mut offer: Option<(String, &str)> = None;
        for (slot, cell) in self.slots.iter().zip(cells) {
            let column = slot.written.as_str();
            let scalar = Scalar::of(*cell);
            let result: Result<(), String> = (|| {
                match slot.field {
                    Field::Customer => {
                        customer = Some(customer_id(required(&scalar, "the customer's id")?)?)
                    }
                    Field::Outcome => {
                        outcome = Some(outcome_kind(required(&scalar, "an outcome")?)?)
                    }
                    Field::At => at = Some(instant(required(&scalar, "the instant it happened")?)?),
                    Field::Campaign => campaign = optional(&scalar)?.map(str::to_string),
                    Field::ReachOut => reach_out = optional(&scalar)?.map(str::to_string),
                    Field::Channel => channel = optional(&scalar)?.map(channel_kind).transpose()?,
                    Field::Amount => amount = money(&scalar)?.map(|money| (money, column)),
                    Field::Message => message = optional(&scalar)?.map(str::to_string),
                    Field::Offer => {
                        offer = optional(&scalar)?
                            .map(offer_name)
                            .transpose()?
                            .map(|name| (name, column))
                    }
                    _ => {}
                }
                Ok(())
            })();
            if let Err(reason) = result {
                errors.push(FieldError::new(column, reason));
            }
        }
        let failed = |errors: &[FieldError], field: Field| {
            errors.iter().any(|e| self.is_field(&e.column, field))
        };
        if customer.is_none() && !failed(&errors, Field::Customer) {
            errors.push(self.missing("customer", "every outcome names its customer's id"));
        }
        if outcome.is_none() && !failed(&errors, Field::Outcome) {
            errors.push(self.missing(
                "outcome",
                "every row says what came back: delivered, bounced, opened, replied, ordered or unsubscribed",
            ));
        }
        if at.is_none() && !failed(&errors, Field::At) {
            errors.push(self.missing(
                "at",
                "every outcome has the instant it happened, like 2026-08-27T10:00:00+08:00",
            ));
        }
        match (&campaign, &reach_out) {
            (Some(_), None) => errors.push(FieldError::new(
                self.written_or("reach_out"),
                "`campaign` is given, so `reach_out` is needed too (both or neither)",
            )),
            (None, Some(_)) => errors.push(FieldError::new(
                self.written_or("campaign"),
                "`reach_out` is given, so `campaign` is needed too (both or neither)",
            )),
            _ => {}
        }
        if let Some(kind) = outcome {
            let needs_channel = matches!(
                kind,
                OutcomeKind::Delivered
                    | OutcomeKind::Bounced
                    | OutcomeKind::Opened
                    | OutcomeKind::Clicked
            );
            if needs_channel && channel.is_none() && !failed(&errors, Field::Channel) {
                errors.push(self.missing(
                    "channel",
                    &format!(
                        "a `{}` outcome needs its channel ({})",
                        kind.as_str(),
                        channel_list()
                    ),
                ));
            }
            if let Some((name, column)) = &offer {
                if kind != OutcomeKind::Ordered {
                    errors.push(FieldError::new(
                        column,
                        format!(
                            "an offer (`{name}`) goes only with an `ordered` outcome, not `{}`",
                            kind.as_str()
                        ),
                    ));
                }
            }
            if let Some((money, column)) = amount {
                if kind != OutcomeKind::Ordered {
                    errors.push(FieldError::new(
                        column,
                        format!(
                            "an amount ({money}) goes only with an `ordered` outcome, not `{}`",
                            kind.as_str()
                        ),
                    ));
                }
            }
        }
        match (errors.is_empty(), customer, outcome, at) {
            (true, Some(customer), Some(outcome), Some(at)) => Ok(OutcomeRecorded {
                customer,
                line,
                outcome,
                at,
                campaign,
                reach_out,
                channel,
                amount: amount.map(|(money, _)| money),
                message,
                offer: offer.map(|(name, _)| name),
            }),
            _ => Err(errors),
        }
    }

    fn is_field(&self, written: &str, field: Field) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.written == written && slot.field == field)
    }

    /// The column's name as the file writes it, or the canonical name if it has no such column.
    fn written_or<'a>(&'a self, name: &'a str) -> &'a str {
        let field = field_of(self.kind, name);
        self.slots
            .iter()
            .find(|slot| Some(slot.field) == field)
            .map(|slot| slot.written.as_str())
            .unwrap_or(name)
    }

    /// A required value that is not there: an empty cell, or (JSON lines) no such key.
    fn missing(&self, name: &str, why: &str) -> FieldError {
        let column = self.written_or(name);
        if self.has(name) {
            FieldError::new(column, format!("missing required value: {why}"))
        } else {
            FieldError::new(
                column,
                format!("missing required value (no `{name}` here): {why}"),
            )
        }
    }
}

/// What an outcome may name: the customers in the book, each campaign with the reach-outs of
/// every plan version it had, and the instant of the import (an outcome has happened by then).
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    pub book: &'a CustomerBook,
    /// Campaign id to its reach-out ids.
    pub reach_outs: &'a BTreeMap<String, BTreeSet<String>>,
    /// Campaign id to the names its orders may give an offer by, from every version of its plan
    /// ([`OfferNames`]).
    pub offers: &'a BTreeMap<String, OfferNames>,
    pub now: DateTime<Utc>,
    /// The zone instants are worded in (the campaigns').
    pub zone: chrono_tz::Tz,
}

/// What a well-formed outcome names that does not exist: a customer the book lacks, a campaign
/// or reach-out no plan had, an instant still to come. Recorded, each would change the book
/// (a phantom customer, orders and "last reached" raised by nothing, an unsubscribe that takes
/// effect before it happened), so each is a malformed row.
pub fn unknown_in_outcome(outcome: &OutcomeRecorded, known: &Known<'_>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if known.book.get(&outcome.customer).is_none() {
        errors.push(FieldError::new(
            "customer",
            format!(
                "no customer `{}` in the customer book; import the customer first (`battleplan customers import`)",
                outcome.customer
            ),
        ));
    }
    if let (Some(campaign), Some(reach_out)) = (&outcome.campaign, &outcome.reach_out) {
        match known.reach_outs.get(campaign) {
            None => {
                let hint = match suggest(campaign, known.reach_outs.keys().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                let campaigns = if known.reach_outs.is_empty() {
                    "no campaign has been applied yet (`battleplan plan apply`)".to_string()
                } else {
                    format!(
                        "the campaigns are {}",
                        known
                            .reach_outs
                            .keys()
                            .map(|id| format!("`{id}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                errors.push(FieldError::new(
                    "campaign",
                    format!("no campaign `{campaign}`; {hint}{campaigns}"),
                ));
            }
            Some(reach_outs) if !reach_outs.contains(reach_out) => {
                let hint = match suggest(reach_out, reach_outs.iter().map(String::as_str)) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => String::new(),
                };
                errors.push(FieldError::new(
                    "reach_out",
                    format!(
                        "campaign `{campaign}` has no reach-out `{reach_out}` in any version of its plan{hint}"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(offer) = &outcome.offer {
        if let Some(error) = unknown_offer(outcome.campaign.as_deref(), offer, known) {
            errors.push(error);
        }
    }
    if outcome.at > known.now {
        errors.push(FieldError::new(
            "at",
            format!(
                "{} is later than now ({}): an outcome is imported once it has happened",
                crate::campaign::timeline::local(known.zone, outcome.at),
                crate::campaign::timeline::local(known.zone, known.now)
            ),
        ));
    }
    errors
}

/// The names a campaign's orders may give its offers by: every offer id of every version of
/// its plan, exactly, and every coupon code, in any case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferNames {
    ids: BTreeSet<String>,
    /// Upper case.
    codes: BTreeSet<String>,
}

impl OfferNames {
    /// Adds the offers of one version of a plan.
    pub fn add(&mut self, offers: &crate::plan::model::Offers) {
        for offer in offers.all() {
            self.ids.insert(offer.id().to_string());
        }
        for code in offers
            .coupons
            .iter()
            .filter_map(|coupon| coupon.code.as_deref())
        {
            self.codes.insert(code.to_ascii_uppercase());
        }
    }

    pub fn knows(&self, name: &str) -> bool {
        let name = name.trim();
        self.ids.contains(name) || self.codes.contains(&name.to_ascii_uppercase())
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.codes.is_empty()
    }

    /// Every name, ids first, for a message.
    fn listed(&self) -> Vec<&str> {
        self.ids
            .iter()
            .chain(&self.codes)
            .map(String::as_str)
            .collect()
    }
}

/// An offer the outcome's campaign never had (or, for an outcome naming no campaign, that no
/// campaign had): the order would count towards an offer that does not exist.
pub fn unknown_offer(campaign: Option<&str>, offer: &str, known: &Known<'_>) -> Option<FieldError> {
    let (knows, names, whose) = match campaign {
        Some(campaign) => match known.offers.get(campaign) {
            Some(names) => (
                names.knows(offer),
                names.listed(),
                format!("campaign `{campaign}`"),
            ),
            // An unknown campaign is the `campaign` column's problem, said once.
            None if !known.reach_outs.contains_key(campaign) => return None,
            None => (false, Vec::new(), format!("campaign `{campaign}`")),
        },
        None => (
            known.offers.values().any(|names| names.knows(offer)),
            known.offers.values().flat_map(OfferNames::listed).collect(),
            "any campaign".to_string(),
        ),
    };
    if knows {
        return None;
    }
    let hint = match suggest(offer, names.iter().copied()) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => String::new(),
    };
    let listed = if names.is_empty() {
        "it has no offers".to_string()
    } else {
        let mut names = names;
        names.sort_unstable();
        names.dedup();
        format!(
            "its offers are named {}",
            names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Some(FieldError::new(
        "offer",
        format!(
            "no offer `{offer}` in any version of the plan of {whose} ({listed}){hint}; an order names a plan offer by its id, or a coupon by its code"
        ),
    ))
}

/// An offer's name in a cell: one line, at most [`MAX_ID_CHARS`] characters.
fn offer_name(text: &str) -> Result<String, String> {
    if text.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "an offer's name has at most {MAX_ID_CHARS} characters"
        ));
    }
    crate::text::single_line(text)
        .map(str::to_string)
        .map_err(|refused| format!("the offer {refused}; name it by its id or a coupon's code"))
}

fn unknown_column(kind: ImportKind, written: &str) -> String {
    let known = known_columns(kind);
    let hint = match suggest(written, known.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? "),
        None => String::new(),
    };
    let attributes = match kind {
        ImportKind::Customers => "; free-form attributes are named `attr.NAME`",
        ImportKind::Outcomes => "",
    };
    format!(
        "unknown column `{written}`; {hint}a {} file has the columns {}{attributes}",
        kind.as_str(),
        known
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A cell, seen through what it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    /// An empty cell, whitespace only, or JSON `null`.
    Empty,
    /// Text, trimmed.
    Text(&'a str),
    Number(&'a serde_json::Number),
    Bool(bool),
    List(&'a [Json]),
    Object,
}

impl<'a> Scalar<'a> {
    pub(crate) fn of(cell: Cell<'a>) -> Scalar<'a> {
        match cell {
            Cell::Text(text) => Scalar::from_text(text),
            Cell::Json(Json::Null) => Scalar::Empty,
            Cell::Json(Json::String(text)) => Scalar::from_text(text),
            Cell::Json(Json::Number(number)) => Scalar::Number(number),
            Cell::Json(Json::Bool(value)) => Scalar::Bool(*value),
            Cell::Json(Json::Array(items)) => Scalar::List(items),
            Cell::Json(Json::Object(_)) => Scalar::Object,
        }
    }

    fn from_text(text: &'a str) -> Scalar<'a> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            Scalar::Empty
        } else {
            Scalar::Text(trimmed)
        }
    }

    /// The cell says "leave this as it is": [`KEEP`], in any case.
    fn is_keep(&self) -> bool {
        matches!(self, Scalar::Text(text) if text.eq_ignore_ascii_case(KEEP))
    }

    /// What the cell holds, for a message about the wrong JSON type.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::Empty => "nothing".to_string(),
            Scalar::Text(text) => format!("the text \"{text}\""),
            Scalar::Number(number) => format!("the number {number}"),
            Scalar::Bool(value) => format!("`{value}`"),
            Scalar::List(_) => "an array".to_string(),
            Scalar::Object => "an object".to_string(),
        }
    }
}

pub(crate) fn wrong_type(expected: &str, found: &Scalar<'_>) -> String {
    format!(
        "wrong JSON type: expected {expected}, found {}",
        found.describe()
    )
}

/// Text: an empty cell is the empty text (which clears the field).
pub(crate) fn text<'a>(scalar: &Scalar<'a>) -> Result<&'a str, String> {
    match *scalar {
        Scalar::Empty => Ok(""),
        Scalar::Text(text) => Ok(text),
        ref other => Err(wrong_type("a string", other)),
    }
}

/// Text that may go into a message header (a mail subject, a recipient's display name): one
/// line, no control characters. Refused rather than repaired, since a repaired name is another
/// name.
fn header_text(scalar: &Scalar<'_>, what: &str) -> Result<String, String> {
    let text = text(scalar)?;
    crate::text::single_line(text)
        .map(str::to_string)
        .map_err(|refused| {
            format!(
                "the {what} {refused}; a {what} goes into mail subjects and headers, so it must be one line of text"
            )
        })
}

/// Text where an empty cell gives nothing.
pub(crate) fn optional<'a>(scalar: &Scalar<'a>) -> Result<Option<&'a str>, String> {
    match *scalar {
        Scalar::Empty => Ok(None),
        Scalar::Text(text) => Ok(Some(text)),
        ref other => Err(wrong_type("a string", other)),
    }
}

/// Text that must be there.
pub(crate) fn required<'a>(scalar: &Scalar<'a>, what: &str) -> Result<&'a str, String> {
    match *scalar {
        Scalar::Empty => Err(format!(
            "missing required value: the cell is empty, and every row needs {what}"
        )),
        Scalar::Text(text) => Ok(text),
        ref other => Err(wrong_type("a string", other)),
    }
}

fn customer_id(text: &str) -> Result<String, String> {
    let length = text.chars().count();
    if length > MAX_ID_CHARS {
        return Err(format!(
            "a customer id has at most {MAX_ID_CHARS} characters; this one has {length}"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "the customer id \"{}\" holds control characters",
            text.escape_debug()
        ));
    }
    Ok(text.to_string())
}

/// An instant: RFC 3339 with its offset, so that no reader has to guess the zone.
pub fn instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let example = "2026-08-20T10:00:00+08:00";
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok());
    if local || NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
        return Err(format!(
            "bad instant: `{text}` has no UTC offset; write the offset too, like {example} (or Z for UTC)"
        ));
    }
    Err(format!(
        "bad instant: `{text}` is not an instant; write RFC 3339 with its offset, like {example}"
    ))
}

fn source(text: &str) -> Result<CustomerSource, String> {
    let key = text.to_lowercase().replace('-', "_");
    SOURCES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, source)| *source)
        .ok_or_else(|| {
            let names: Vec<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
            bad_choice("a source", text, &names)
        })
}

fn channel_kind(text: &str) -> Result<ChannelKind, String> {
    let key = text.to_lowercase().replace('-', "_");
    CHANNEL_KINDS
        .into_iter()
        .find(|kind| kind.as_str() == key)
        .ok_or_else(|| {
            let names: Vec<&str> = CHANNEL_KINDS.iter().map(|kind| kind.as_str()).collect();
            bad_choice("a channel", text, &names)
        })
}

fn outcome_kind(text: &str) -> Result<OutcomeKind, String> {
    OutcomeKind::from_key(&text.to_lowercase()).ok_or_else(|| {
        let names: Vec<&str> = OutcomeKind::ALL.iter().map(|kind| kind.as_str()).collect();
        bad_choice("an outcome", text, &names)
    })
}

fn channel_list() -> String {
    CHANNEL_KINDS
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn bad_choice(what: &str, text: &str, allowed: &[&str]) -> String {
    let hint = match suggest(text, allowed.iter().copied()) {
        Some(near) => format!(" (did you mean `{near}`?)"),
        None => String::new(),
    };
    format!(
        "bad value: `{text}` is not {what}{hint}; use one of {}",
        allowed.join(", ")
    )
}

fn time_zone(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    if let Ok(zone) = text.parse::<chrono_tz::Tz>() {
        return Ok(zone.name().to_string());
    }
    if let Some(zone) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|zone| zone.name().eq_ignore_ascii_case(text))
    {
        return Ok(zone.name().to_string());
    }
    let hint = match crate::plan::values::suggest_zone(text) {
        Some(near) => format!("did you mean `{near}`? "),
        None => String::new(),
    };
    Err(format!(
        "unknown time zone `{text}`; {hint}write an IANA name, like Asia/Shanghai or Europe/Berlin"
    ))
}

/// A list in one cell: `a;b;c` (or a JSON array of strings, or a `;` string).
fn list<'a>(scalar: &Scalar<'a>) -> Result<Vec<&'a str>, String> {
    let split = |text: &'a str| {
        text.split(LIST_SEPARATOR)
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect::<Vec<_>>()
    };
    match *scalar {
        Scalar::Empty => Ok(Vec::new()),
        Scalar::Text(text) => Ok(split(text)),
        Scalar::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match Scalar::of(Cell::Json(item)) {
                    Scalar::Empty => {}
                    Scalar::Text(text) => out.push(text),
                    other => return Err(wrong_type("an array of strings", &other)),
                }
            }
            Ok(out)
        }
        ref other => Err(wrong_type(
            "an array of strings or a `;`-separated string",
            other,
        )),
    }
}

fn tags(scalar: &Scalar<'_>) -> Result<Vec<String>, String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in list(scalar)? {
        if !tags.iter().any(|known| known == tag) {
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

/// `mail;in_site`, `all`, or true/false (true = every channel). Returns the channels and
/// whether it is all of them.
fn unsubscribed(scalar: &Scalar<'_>) -> Result<(Vec<ChannelKind>, bool), String> {
    if let Scalar::Bool(all) = scalar {
        return Ok((Vec::new(), *all));
    }
    if let Scalar::Text(text) = scalar {
        match text.to_lowercase().as_str() {
            "true" | "yes" | "all" => return Ok((Vec::new(), true)),
            "false" | "no" => return Ok((Vec::new(), false)),
            _ => {}
        }
    }
    let mut channels = Vec::new();
    for item in list(scalar)? {
        if item.eq_ignore_ascii_case("all") {
            return Ok((Vec::new(), true));
        }
        let kind = channel_kind(item).map_err(|_| {
            format!(
                "bad value: `{item}` is not a channel kind; use `;`-separated kinds of {}, or `all`, or true/false",
                channel_list()
            )
        })?;
        if !channels.contains(&kind) {
            channels.push(kind);
        }
    }
    Ok((channels, false))
}

/// true/false, yes/no, 1/0; an empty cell says nothing.
fn boolean(scalar: &Scalar<'_>) -> Result<Option<bool>, String> {
    match *scalar {
        Scalar::Empty => Ok(None),
        Scalar::Bool(value) => Ok(Some(value)),
        Scalar::Number(number) if number.as_u64() == Some(0) => Ok(Some(false)),
        Scalar::Number(number) if number.as_u64() == Some(1) => Ok(Some(true)),
        Scalar::Text(text) => match text.to_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Some(true)),
            "false" | "no" | "0" => Ok(Some(false)),
            _ => Err(format!(
                "bad value: `{text}` is not true or false; write true/false, yes/no or 1/0"
            )),
        },
        ref other => Err(wrong_type("true or false", other)),
    }
}

/// A count of orders: a whole number, 0 or more.
pub(crate) fn count(scalar: &Scalar<'_>) -> Result<Option<u32>, String> {
    let bad = |text: &str| {
        format!(
            "bad number: `{text}` is not a count; write a whole number, 0 or more (at most {})",
            u32::MAX
        )
    };
    match *scalar {
        Scalar::Empty => Ok(None),
        Scalar::Text(text) => text.parse::<u32>().map(Some).map_err(|_| bad(text)),
        Scalar::Number(number) => number
            .as_u64()
            .and_then(|value| u32::try_from(value).ok())
            .map(Some)
            .ok_or_else(|| bad(&number.to_string())),
        ref other => Err(wrong_type("a whole number", other)),
    }
}

/// An amount of money, exact (at most two decimals), not negative.
pub(crate) fn money(scalar: &Scalar<'_>) -> Result<Option<Money>, String> {
    let parse = |text: &str| {
        let amount = Money::parse_text(text).map_err(|reason| format!("bad money: {reason}"))?;
        if amount.minor() < 0 {
            return Err(format!(
                "bad money: `{text}` is negative; an amount is 0 or more"
            ));
        }
        Ok(Some(amount))
    };
    match *scalar {
        Scalar::Empty => Ok(None),
        Scalar::Text(text) => parse(text),
        Scalar::Number(number) => parse(&number.to_string()),
        ref other => Err(wrong_type("an amount like 120.50", other)),
    }
}

/// An attribute's value as text; JSON numbers and booleans are written as text.
fn attribute_value(scalar: &Scalar<'_>) -> Result<String, String> {
    match *scalar {
        Scalar::Empty => Ok(String::new()),
        Scalar::Text(text) => Ok(text.to_string()),
        Scalar::Number(number) => Ok(number.to_string()),
        Scalar::Bool(value) => Ok(value.to_string()),
        ref other => Err(wrong_type("a string, number or boolean", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(kind: ImportKind, names: &[&str]) -> Columns {
        match Columns::new(kind, names.iter().copied()) {
            Ok(columns) => columns,
            Err(errors) => panic!("{errors:?}"),
        }
    }

    fn csv_row(kind: ImportKind, names: &[&str], cells: &[&str]) -> Result<Row, Vec<FieldError>> {
        let cells: Vec<Cell<'_>> = cells.iter().map(|text| Cell::Text(text)).collect();
        columns(kind, names).parse(7, &cells)
    }

    fn json_row(kind: ImportKind, line: &str) -> Result<Row, Vec<FieldError>> {
        let value: Json = serde_json::from_str(line).unwrap();
        let object = value.as_object().unwrap();
        let columns = Columns::new(kind, object.keys().map(String::as_str))?;
        let cells: Vec<Cell<'_>> = object.values().map(Cell::Json).collect();
        columns.parse(3, &cells)
    }

    fn customer(result: Result<Row, Vec<FieldError>>) -> CustomerRecorded {
        match result {
            Ok(Row::Customer(customer)) => customer,
            other => panic!("{other:?}"),
        }
    }

    fn errors(result: Result<Row, Vec<FieldError>>) -> Vec<(String, String)> {
        match result {
            Err(errors) => errors.into_iter().map(|e| (e.column, e.reason)).collect(),
            Ok(row) => panic!("expected errors, got {row:?}"),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    const C: ImportKind = ImportKind::Customers;
    const O: ImportKind = ImportKind::Outcomes;

    #[test]
    fn a_full_customer_row() {
        let names = [
            "id",
            "name",
            "company",
            "email",
            "tags",
            "tier",
            "owner",
            "source",
            "locale",
            "time_zone",
            "active",
            "ordered",
            "order_amount",
            "orders",
            "unsubscribed",
            "recycle_bin",
            "attr.region",
            "attr.Industry",
        ];
        let cells = [
            " c-000417 ",
            "Li Na",
            "Acme",
            "not-an-address",
            "left-card; vip;;left-card",
            "L1+",
            "wang.wei",
            "shared-pool",
            "zh-CN",
            "asia/shanghai",
            "2026-08-01T10:00:00+08:00",
            "2026-07-01T00:00:00Z",
            "120.5",
            "3",
            "mail;in-site",
            "no",
            "east",
            "",
        ];
        let record = customer(csv_row(C, &names, &cells));
        assert_eq!(record.customer, "c-000417");
        assert_eq!(record.line, 7);
        assert_eq!(record.email.as_deref(), Some("not-an-address"));
        assert_eq!(
            record.tags,
            Some(vec!["left-card".to_string(), "vip".to_string()])
        );
        assert_eq!(record.source, Some(CustomerSource::SharedPool));
        assert_eq!(record.time_zone.as_deref(), Some("Asia/Shanghai"));
        assert_eq!(
            record.signals,
            vec![
                Signal {
                    activity: Activity::Active,
                    at: at("2026-08-01T02:00:00Z"),
                    amount: None
                },
                Signal {
                    activity: Activity::Ordered,
                    at: at("2026-07-01T00:00:00Z"),
                    amount: Some(Money::from_minor(12_050))
                },
            ]
        );
        assert_eq!(record.orders, Some(3));
        assert_eq!(
            record.unsubscribed,
            vec![ChannelKind::Mail, ChannelKind::InSite]
        );
        assert!(!record.unsubscribed_all);
        assert_eq!(record.recycle_bin, Some(false));
        assert_eq!(
            record.attributes,
            vec![
                ("Industry".to_string(), String::new()),
                ("region".to_string(), "east".to_string())
            ]
        );
    }

    #[test]
    fn absent_columns_say_nothing_and_empty_cells_clear_text_only() {
        let record = customer(csv_row(C, &["id"], &["c-1"]));
        assert_eq!(
            record,
            CustomerRecorded {
                customer: "c-1".into(),
                line: 7,
                ..CustomerRecorded::default()
            }
        );
        let record = customer(csv_row(
            C,
            &[
                "id",
                "name",
                "tags",
                "source",
                "active",
                "orders",
                "recycle_bin",
                "unsubscribed",
            ],
            &["c-1", "", "", "", "", "", "", ""],
        ));
        assert_eq!(record.name.as_deref(), Some(""));
        assert_eq!(record.tags, Some(Vec::new()));
        assert_eq!(record.source, None);
        assert!(record.signals.is_empty());
        assert_eq!(record.orders, None);
        assert_eq!(record.recycle_bin, None);
        assert!(record.unsubscribed.is_empty() && !record.unsubscribed_all);
    }

    #[test]
    fn the_keep_marker_leaves_a_value_as_it_is() {
        let names = [
            "id",
            "name",
            "company",
            "tags",
            "tier",
            "active",
            "unsubscribed",
            "recycle_bin",
            "attr.region",
        ];
        let record = customer(csv_row(
            C,
            &names,
            &[
                "c-1", "(keep)", " (KEEP) ", "(keep)", "(Keep)", "(keep)", "(keep)", "(keep)",
                "(keep)",
            ],
        ));
        assert_eq!(
            record,
            CustomerRecorded {
                customer: "c-1".into(),
                line: 7,
                ..CustomerRecorded::default()
            }
        );
        let record = customer(json_row(C, r#"{"id":"c-1","name":"(keep)","tier":""}"#));
        assert_eq!((record.name, record.tier.as_deref()), (None, Some("")));
        let found = errors(csv_row(C, &["id", "name"], &["(keep)", "x"]));
        assert_eq!(found[0].0, "id");
        assert!(found[0].1.contains("needs its own id"), "{}", found[0].1);
    }

    #[test]
    fn a_name_or_company_with_a_line_break_or_control_is_refused() {
        let found = errors(csv_row(
            C,
            &["id", "name", "company"],
            &[
                "c-1",
                "Evil\r\nBcc: attacker@evil.example",
                "Acme\u{1b}]0;x",
            ],
        ));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "name");
        assert!(
            found[0].1.starts_with(
                "the name holds a line break or a control character at character 5: Evil\\r\\nBcc"
            ),
            "{}",
            found[0].1
        );
        assert_eq!(found[1].0, "company");
        assert!(!found[1].1.contains('\u{1b}'), "{}", found[1].1);
        // Other text may hold line breaks (a note in an attribute, say).
        let record = customer(csv_row(C, &["id", "attr.note"], &["c-1", "two\nlines"]));
        assert_eq!(record.attributes[0].1, "two\nlines");
    }

    #[test]
    fn unsubscribed_all_in_every_spelling() {
        for cell in ["all", "true", "YES", "mail;all"] {
            let record = customer(csv_row(C, &["id", "unsubscribed"], &["c", cell]));
            assert!(record.unsubscribed_all, "{cell}");
        }
        let record = customer(json_row(C, r#"{"id":"c","unsubscribed":["mail","im"]}"#));
        assert_eq!(
            record.unsubscribed,
            vec![ChannelKind::Mail, ChannelKind::Im]
        );
        let record = customer(json_row(C, r#"{"id":"c","unsubscribed":true}"#));
        assert!(record.unsubscribed_all);
    }

    #[test]
    fn json_lines_take_arrays_numbers_and_nulls() {
        let record = customer(json_row(
            C,
            r#"{"id":"c-2","tags":["a","b"],"orders":4,"order_amount":99.9,"ordered":"2026-08-01T00:00:00Z","recycle_bin":true,"attr.size":12,"name":null}"#,
        ));
        assert_eq!(record.tags, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(record.orders, Some(4));
        assert_eq!(record.signals[0].amount, Some(Money::from_minor(9_990)));
        assert_eq!(record.recycle_bin, Some(true));
        assert_eq!(
            record.attributes,
            vec![("size".to_string(), "12".to_string())]
        );
        assert_eq!(record.name.as_deref(), Some(""));
        let record = customer(json_row(C, r#"{"id":"c-3","tags":"x;y"}"#));
        assert_eq!(record.tags, Some(vec!["x".to_string(), "y".to_string()]));
    }

    #[test]
    fn each_bad_cell_is_reported_with_its_column() {
        let found = errors(csv_row(
            C,
            &[
                "id",
                "active",
                "source",
                "orders",
                "order_amount",
                "time_zone",
                "recycle_bin",
                "unsubscribed",
            ],
            &[
                "c-1",
                "2026-08-01 10:00:00",
                "own-lists",
                "many",
                "12.345",
                "Asia/Shangai",
                "maybe",
                "mail;fax",
            ],
        ));
        let columns: Vec<&str> = found.iter().map(|(column, _)| column.as_str()).collect();
        assert_eq!(
            columns,
            [
                "active",
                "source",
                "orders",
                "order_amount",
                "time_zone",
                "recycle_bin",
                "unsubscribed"
            ]
        );
        let reasons: Vec<&str> = found.iter().map(|(_, reason)| reason.as_str()).collect();
        assert!(
            reasons[0].contains("has no UTC offset") && reasons[0].contains("+08:00"),
            "{}",
            reasons[0]
        );
        assert!(
            reasons[1].contains("did you mean `own_list`") && reasons[1].contains("offline_import"),
            "{}",
            reasons[1]
        );
        assert!(reasons[2].starts_with("bad number"), "{}", reasons[2]);
        assert!(
            reasons[3].starts_with("bad money") && reasons[3].contains("two decimals"),
            "{}",
            reasons[3]
        );
        assert!(
            reasons[4].contains("did you mean `Asia/Shanghai`"),
            "{}",
            reasons[4]
        );
        assert!(reasons[6].contains("in_site"), "{}", reasons[6]);
    }

    #[test]
    fn errors_know_their_column_index() {
        let Err(found) = csv_row(C, &["name", "id", "orders"], &["x", "c", "-1"]) else {
            panic!("a negative count is an error")
        };
        assert_eq!(
            (found[0].column.as_str(), found[0].index),
            ("orders", Some(2))
        );
        let Err(found) = Columns::new(C, ["id", "id"]) else {
            panic!("a repeated column is an error")
        };
        assert_eq!(found[0].index, Some(1));
        let Err(found) = json_row(O, r#"{"customer":"c","at":"2026-08-27T10:00:00Z"}"#) else {
            panic!("an outcome needs its kind")
        };
        assert_eq!(
            (found[0].column.as_str(), found[0].index),
            ("outcome", None)
        );
    }

    #[test]
    fn bad_ids_and_missing_ids() {
        let found = errors(csv_row(C, &["id", "name"], &["", "x"]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "id");
        assert!(
            found[0].1.starts_with("missing required value"),
            "{}",
            found[0].1
        );
        let long = "c".repeat(MAX_ID_CHARS + 1);
        let found = errors(csv_row(C, &["id"], &[&long]));
        assert!(found[0].1.contains("at most 200"), "{}", found[0].1);
        let found = errors(csv_row(C, &["id"], &["c\u{7}1"]));
        assert!(found[0].1.contains("control"), "{}", found[0].1);
        let found = errors(json_row(C, r#"{"name":"x"}"#));
        assert_eq!(found[0].0, "id");
        assert!(found[0].1.contains("no `id` here"), "{}", found[0].1);
        let found = errors(json_row(C, r#"{"id":12}"#));
        assert!(
            found[0]
                .1
                .starts_with("wrong JSON type: expected a string, found the number 12"),
            "{}",
            found[0].1
        );
    }

    #[test]
    fn an_order_amount_needs_the_ordered_instant() {
        let found = errors(csv_row(
            C,
            &["id", "order_amount", "ordered"],
            &["c", "10", ""],
        ));
        assert_eq!(found[0].0, "order_amount");
        assert!(found[0].1.contains("`ordered`"), "{}", found[0].1);
        let found = errors(csv_row(C, &["id", "order_amount"], &["c", "-1"]));
        assert!(found[0].1.contains("negative"), "{}", found[0].1);
    }

    #[test]
    fn wrong_json_types_say_what_they_found() {
        let found = errors(json_row(
            C,
            r#"{"id":"c","tags":5,"orders":"x","recycle_bin":"maybe","name":{"a":1},"email":["a"]}"#,
        ));
        let by_column: BTreeMap<&str, &str> = found
            .iter()
            .map(|(c, r)| (c.as_str(), r.as_str()))
            .collect();
        assert!(by_column["tags"].contains("found the number 5"));
        assert!(by_column["orders"].starts_with("bad number"));
        assert!(by_column["recycle_bin"].contains("true/false"));
        assert!(by_column["name"].contains("found an object"));
        assert!(by_column["email"].contains("found an array"));
    }

    #[test]
    fn headers_refuse_unknown_and_repeated_columns() {
        let found = Columns::new(
            C,
            ["id", "emial", "Name", "name ", "attr.x", "attr.x", "attr."],
        )
        .unwrap_err();
        let found: Vec<(&str, &str)> = found
            .iter()
            .map(|e| (e.column.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found[0].0, "emial");
        assert!(
            found[0].1.contains("did you mean `email`"),
            "{}",
            found[0].1
        );
        assert_eq!(found[1].0, "name");
        assert!(found[1].1.contains("appears twice"), "{}", found[1].1);
        assert_eq!(found[2].0, "attr.x");
        assert_eq!(found[3].0, "attr.");
        let missing = columns(C, &["\u{feff}name"]).missing_required();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].column, "id");
        assert!(columns(C, &["\u{feff}id"]).missing_required().is_empty());
        assert_eq!(
            columns(O, &["customer", "at"]).missing_required()[0].column,
            "outcome"
        );
    }

    #[test]
    fn outcomes() {
        let names = [
            "customer",
            "outcome",
            "at",
            "campaign",
            "reach_out",
            "channel",
            "amount",
            "message",
        ];
        let row = csv_row(
            O,
            &names,
            &[
                "c-1",
                "Ordered",
                "2026-08-27T10:00:00+08:00",
                "sept-festival-2026",
                "warm-up-recall",
                "",
                "260",
                "m-1",
            ],
        );
        let Ok(Row::Outcome(outcome)) = row else {
            panic!("{row:?}")
        };
        assert_eq!(outcome.outcome, OutcomeKind::Ordered);
        assert_eq!(outcome.amount, Some(Money::from_minor(26_000)));
        assert_eq!(outcome.channel, None);
        assert_eq!(outcome.reach_out.as_deref(), Some("warm-up-recall"));

        let found = errors(csv_row(
            O,
            &names,
            &[
                "c-1",
                "delivered",
                "2026-08-27T10:00:00Z",
                "sept",
                "",
                "",
                "5",
                "",
            ],
        ));
        let columns: Vec<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["reach_out", "channel", "amount"], "{found:?}");
        assert!(found[0].1.contains("both or neither"));

        let found = errors(csv_row(
            O,
            &names,
            &["c-1", "tapped", "yesterday", "", "", "fax", "", ""],
        ));
        let columns: Vec<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["outcome", "at", "channel"], "{found:?}");
        assert!(found[0]
            .1
            .contains("delivered, bounced, opened, replied, ordered, unsubscribed, clicked"));
        assert!(found[1].1.contains("not an instant"));

        let found = errors(json_row(O, r#"{"customer":"c","outcome":"replied"}"#));
        assert_eq!(found[0].0, "at");
        let found = errors(json_row(
            O,
            r#"{"customer":"c","outcome":"replied","at":"2026-08-27T10:00:00Z","channel":"mail","id":"x"}"#,
        ));
        assert_eq!(found[0].0, "id");
        assert!(found[0].1.contains("unknown column"));
    }

    #[test]
    fn an_outcome_must_name_what_exists_and_have_happened() {
        let mut book = CustomerBook::default();
        book.apply(
            &CustomerEvent::CustomerRecorded(CustomerRecorded {
                customer: "c-1".into(),
                line: 2,
                ..CustomerRecorded::default()
            }),
            at("2026-08-01T00:00:00Z"),
        );
        let reach_outs: BTreeMap<String, BTreeSet<String>> = [(
            "sept".to_string(),
            ["recall".to_string()].into_iter().collect(),
        )]
        .into_iter()
        .collect();
        let offers = BTreeMap::new();
        let known = Known {
            book: &book,
            reach_outs: &reach_outs,
            offers: &offers,
            now: at("2026-08-20T00:00:00Z"),
            zone: chrono_tz::Asia::Shanghai,
        };
        let outcome = |customer: &str, at_text: &str, tie: Option<(&str, &str)>| OutcomeRecorded {
            customer: customer.into(),
            line: 5,
            outcome: OutcomeKind::Ordered,
            at: at(at_text),
            campaign: tie.map(|(campaign, _)| campaign.to_string()),
            reach_out: tie.map(|(_, reach_out)| reach_out.to_string()),
            channel: None,
            amount: None,
            message: None,
            offer: None,
        };
        let columns = |found: Vec<FieldError>| -> Vec<String> {
            found.into_iter().map(|error| error.column).collect()
        };
        let good = outcome("c-1", "2026-08-19T00:00:00Z", Some(("sept", "recall")));
        assert!(unknown_in_outcome(&good, &known).is_empty());
        // The instant of the import itself is not later than now.
        assert!(
            unknown_in_outcome(&outcome("c-1", "2026-08-20T00:00:00Z", None), &known).is_empty()
        );
        let found = unknown_in_outcome(
            &outcome("c-9", "2027-01-01T00:00:00Z", Some(("sept", "recal"))),
            &known,
        );
        assert_eq!(columns(found.clone()), ["customer", "reach_out", "at"]);
        assert!(
            found[1].reason.contains("did you mean `recall`"),
            "{}",
            found[1].reason
        );
        let found = unknown_in_outcome(
            &outcome("c-1", "2026-08-19T00:00:00Z", Some(("sep", "recall"))),
            &known,
        );
        assert_eq!(columns(found.clone()), ["campaign"]);
        assert!(
            found[0].reason.contains("did you mean `sept`"),
            "{}",
            found[0].reason
        );
    }

    #[test]
    fn an_order_may_name_the_offer_it_used() {
        let offers = columns(O, &["customer", "outcome", "at", "amount", "offer"]);
        let row = |outcome: &str, offer: &str| {
            offers.parse(
                7,
                &[
                    Cell::Text("c-1"),
                    Cell::Text(outcome),
                    Cell::Text("2026-09-03T10:00:00+08:00"),
                    Cell::Text(if outcome == "ordered" { "612.40" } else { "" }),
                    Cell::Text(offer),
                ],
            )
        };
        let Ok(Row::Outcome(ordered)) = row("ordered", " SEPT50 ") else {
            panic!("an order naming a coupon's code is a good row");
        };
        assert_eq!(ordered.offer.as_deref(), Some("SEPT50"));
        let Ok(Row::Outcome(plain)) = row("ordered", "") else {
            panic!("an empty offer cell names none");
        };
        assert_eq!(plain.offer, None);
        let refused = row("replied", "sept-50").unwrap_err();
        assert_eq!(refused[0].column, "offer");
        assert!(
            refused[0].reason.contains("only with an `ordered` outcome"),
            "{}",
            refused[0].reason
        );
        let refused = row("ordered", "sept\n50").unwrap_err();
        assert_eq!(refused[0].column, "offer");
        // Events recorded before offers were named read as they did, and write as they did.
        let old = r#"{"customer":"c-1","line":2,"outcome":"ordered","at":"2026-09-03T02:00:00Z"}"#;
        let read: OutcomeRecorded = serde_json::from_str(old).unwrap();
        assert_eq!(read.offer, None);
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
    }

    #[test]
    fn an_offer_must_be_one_the_campaign_had() {
        let mut book = CustomerBook::default();
        book.apply(
            &CustomerEvent::CustomerRecorded(CustomerRecorded {
                customer: "c-1".into(),
                line: 2,
                ..CustomerRecorded::default()
            }),
            at("2026-08-01T00:00:00Z"),
        );
        let plan = crate::plan::check(crate::plan::EXAMPLE_PLAN.as_bytes())
            .plan
            .unwrap();
        let mut names = OfferNames::default();
        names.add(&plan.offers);
        let reach_outs: BTreeMap<String, BTreeSet<String>> = [
            ("sept".to_string(), BTreeSet::new()),
            ("plain".to_string(), BTreeSet::new()),
        ]
        .into_iter()
        .collect();
        let offers: BTreeMap<String, OfferNames> = [
            ("sept".to_string(), names),
            ("plain".to_string(), OfferNames::default()),
        ]
        .into_iter()
        .collect();
        let known = Known {
            book: &book,
            reach_outs: &reach_outs,
            offers: &offers,
            now: at("2026-09-20T00:00:00Z"),
            zone: chrono_tz::Asia::Shanghai,
        };
        let order = |campaign: Option<&str>, offer: &str| OutcomeRecorded {
            customer: "c-1".into(),
            line: 5,
            outcome: OutcomeKind::Ordered,
            at: at("2026-09-03T00:00:00Z"),
            campaign: campaign.map(str::to_string),
            reach_out: campaign.map(|_| "recall".to_string()),
            channel: None,
            amount: None,
            message: None,
            offer: Some(offer.to_string()),
        };
        let offer_problems = |outcome: &OutcomeRecorded| -> Vec<String> {
            unknown_in_outcome(outcome, &known)
                .into_iter()
                .filter(|error| error.column == "offer")
                .map(|error| error.reason)
                .collect()
        };
        // By id, exactly; a coupon by its code in any case; with or without the campaign.
        for name in [
            "sept-50",
            "spend-more",
            "hero-sku",
            "starter-kit",
            "SEPT50",
            "sept50",
        ] {
            assert!(
                offer_problems(&order(Some("sept"), name)).is_empty(),
                "{name}"
            );
            assert!(offer_problems(&order(None, name)).is_empty(), "{name}");
        }
        let found = offer_problems(&order(Some("sept"), "spend-mroe"));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("did you mean `spend-more`"),
            "{}",
            found[0]
        );
        // A campaign without offers has none to name.
        let found = offer_problems(&order(Some("plain"), "sept-50"));
        assert!(found[0].contains("it has no offers"), "{}", found[0]);
        // An id is exact: the upper-case id is no one's code.
        assert_eq!(offer_problems(&order(None, "SPEND-MORE")).len(), 1);
        // An unknown campaign is said once, by the campaign column.
        assert!(offer_problems(&order(Some("nope"), "sept-50")).is_empty());
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let texts = [
            "",
            " ",
            "\u{0}",
            "9999999999999999999999",
            "-",
            ".",
            "1e99",
            "2026-13-45T99:99:99+99:99",
            "all;;;",
            "é\u{301}",
            "attr.",
        ];
        for name in CUSTOMER_COLUMNS.iter().chain(OUTCOME_COLUMNS) {
            for text in texts {
                if CUSTOMER_COLUMNS.contains(name) && *name != "id" {
                    let _ = csv_row(C, &["id", name], &["c", text]);
                }
                if OUTCOME_COLUMNS.contains(name) && !["customer", "outcome", "at"].contains(name) {
                    let _ = Columns::new(O, ["customer", "outcome", "at", name]).map(|c| {
                        c.parse(
                            1,
                            &[
                                Cell::Text("c"),
                                Cell::Text("opened"),
                                Cell::Text(text),
                                Cell::Text(text),
                            ],
                        )
                    });
                }
            }
        }
    }
}
