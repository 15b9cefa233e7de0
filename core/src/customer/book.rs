//! The customer book: every customer as the imports describe them, kept incrementally from the
//! log and rebuilt identically from it. It holds facts with their instants (last signal of each
//! kind, last reach per channel, consent, recycle bin); what those facts mean at an instant
//! (lifecycle stage, segment membership, eligibility) is computed when asked, so one book answers
//! for any evaluation instant.
//!
//! Compact on purpose: a million customers are held by the daemon. Repeated texts (tags, tiers,
//! owners, locales, attributes, reach-outs) are interned as [`Sym`]; instants are milliseconds
//! since the Unix epoch with [`NEVER`] for "no such fact".

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::events::{CustomerEvent, CustomerRecorded, ImportKind, OutcomeKind, OutcomeRecorded};
use crate::event::upcast::PayloadError;
use crate::event::{Position, RecordedEvent};
use crate::feed::{Decoded, Place};
use crate::plan::model::{Activity, ChannelKind, CustomerSource, LifecycleStage};

/// An interned text.
pub type Sym = u32;

/// The instant of a fact that never happened.
pub const NEVER: i64 = i64::MIN;

pub const DAY_MS: i64 = 86_400_000;

/// The lifecycle rules of DOMAIN.md, in days.
pub const POTENTIAL_ACTIVE_DAYS: i64 = 180;
pub const POTENTIAL_INTEREST_DAYS: i64 = 30;
pub const FUNNEL_DAYS: i64 = 30;

/// Texts and their symbols, in the order first seen (so a rebuild interns identically). A
/// snapshot holds the texts in order; the index is made again when it is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    names: Vec<Box<str>>,
    index: FxHashMap<Box<str>, Sym>,
}

impl Serialize for Symbols {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.names.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Symbols {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Symbols, D::Error> {
        let names = Vec::<Box<str>>::deserialize(deserializer)?;
        let mut index = FxHashMap::default();
        index.reserve(names.len());
        for (sym, name) in names.iter().enumerate() {
            if index.insert(name.clone(), sym as Sym).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "the text {name:?} is interned twice"
                )));
            }
        }
        Ok(Symbols { names, index })
    }
}

impl Symbols {
    pub fn intern(&mut self, text: &str) -> Sym {
        if let Some(sym) = self.index.get(text) {
            return *sym;
        }
        let sym = self.names.len() as Sym;
        self.names.push(text.into());
        self.index.insert(text.into(), sym);
        sym
    }

    /// The symbol of a text seen before; `None` means no customer has it.
    pub fn get(&self, text: &str) -> Option<Sym> {
        self.index.get(text).copied()
    }

    pub fn name(&self, sym: Sym) -> &str {
        self.names.get(sym as usize).map_or("", |name| name)
    }
}

/// The activity kinds in the order of [`Customer::last_signal`].
pub const ACTIVITIES: [Activity; 9] = [
    Activity::Active,
    Activity::Visited,
    Activity::Favourited,
    Activity::Carted,
    Activity::Followed,
    Activity::Inquired,
    Activity::Ordered,
    Activity::Opened,
    Activity::Replied,
];

pub fn activity_index(activity: Activity) -> usize {
    match activity {
        Activity::Active => 0,
        Activity::Visited => 1,
        Activity::Favourited => 2,
        Activity::Carted => 3,
        Activity::Followed => 4,
        Activity::Inquired => 5,
        Activity::Ordered => 6,
        Activity::Opened => 7,
        Activity::Replied => 8,
    }
}

/// Activity on the platform (what "active in the last N days" counts): everything but the
/// reactions to our own messages (opened, replied).
const SITE_ACTIVITY: [Activity; 7] = [
    Activity::Active,
    Activity::Visited,
    Activity::Favourited,
    Activity::Carted,
    Activity::Followed,
    Activity::Inquired,
    Activity::Ordered,
];

/// The channel kinds in the order of [`Customer::last_reached`] and the consent bits.
pub const CHANNEL_KINDS: [ChannelKind; 5] = [
    ChannelKind::Mail,
    ChannelKind::InSite,
    ChannelKind::Im,
    ChannelKind::Webhook,
    ChannelKind::Console,
];

pub fn channel_index(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Mail => 0,
        ChannelKind::InSite => 1,
        ChannelKind::Im => 2,
        ChannelKind::Webhook => 3,
        ChannelKind::Console => 4,
    }
}

const ALL_CHANNELS: u8 = 0b1_1111;

/// Whether a text can be a mail address: one `@`, a non-empty local part, a domain with a dot,
/// no spaces. The platform's own check is stricter; this one only removes what surely bounces.
pub fn valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// One customer: the facts imports and outcomes recorded. A snapshot holds it as a row (an
/// array, not a map with the fields' names: a million are held).
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// The id, the name, the company and the email one after another in one allocation (a
    /// million customers are held), each but the id empty when unknown; see [`Customer::id`].
    texts: Box<str>,
    /// Where the name, the company and the email start in `texts` (the id ends at the first).
    ends: [u32; 3],
    /// The address is well formed and has not bounced since it was set.
    pub email_ok: bool,
    /// Sorted, without repeats.
    pub tags: Box<[Sym]>,
    pub tier: Option<Sym>,
    pub owner: Option<Sym>,
    pub source: Option<CustomerSource>,
    pub locale: Option<Sym>,
    pub time_zone: Option<Tz>,
    /// Sorted by name.
    pub attributes: Box<[(Sym, Sym)]>,
    /// The last instant of each activity, in the order of [`ACTIVITIES`].
    pub last_signal: [i64; 9],
    /// The last activity on the platform (see `SITE_ACTIVITY`).
    pub last_active: i64,
    /// Orders placed so far.
    pub orders: u32,
    /// Channels the customer unsubscribed from, one bit per [`CHANNEL_KINDS`].
    pub unsubscribed: u8,
    pub recycle_bin: bool,
    /// The last successful reach (a delivered message) per channel kind.
    pub last_reached: [i64; 5],
    /// The reach-outs (`campaign/reach-out`) that sent this customer a message; sorted.
    pub reached_by: Box<[Sym]>,
}

/// The fields of [`Customer`] in their order, as two tuples (serde's tuples stop at 16).
type CustomerRow = (
    (
        Box<str>,
        [u32; 3],
        bool,
        Box<[Sym]>,
        Option<Sym>,
        Option<Sym>,
        Option<CustomerSource>,
        Option<Sym>,
        Option<Tz>,
    ),
    (
        Box<[(Sym, Sym)]>,
        [i64; 9],
        i64,
        u32,
        u8,
        bool,
        [i64; 5],
        Box<[Sym]>,
    ),
);

impl Serialize for Customer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            (
                &self.texts,
                &self.ends,
                self.email_ok,
                &self.tags,
                self.tier,
                self.owner,
                self.source,
                self.locale,
                self.time_zone,
            ),
            (
                &self.attributes,
                &self.last_signal,
                self.last_active,
                self.orders,
                self.unsubscribed,
                self.recycle_bin,
                &self.last_reached,
                &self.reached_by,
            ),
        )
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Customer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Customer, D::Error> {
        let (
            (texts, ends, email_ok, tags, tier, owner, source, locale, time_zone),
            (
                attributes,
                last_signal,
                last_active,
                orders,
                unsubscribed,
                recycle_bin,
                last_reached,
                reached_by,
            ),
        ) = CustomerRow::deserialize(deserializer)?;
        Ok(Customer {
            texts,
            ends,
            email_ok,
            tags,
            tier,
            owner,
            source,
            locale,
            time_zone,
            attributes,
            last_signal,
            last_active,
            orders,
            unsubscribed,
            recycle_bin,
            last_reached,
            reached_by,
        })
    }
}

impl Customer {
    fn new(id: &str) -> Customer {
        let end = u32::try_from(id.len()).unwrap_or(u32::MAX);
        Customer {
            texts: id.into(),
            ends: [end; 3],
            email_ok: false,
            tags: Box::default(),
            tier: None,
            owner: None,
            source: None,
            locale: None,
            time_zone: None,
            attributes: Box::default(),
            last_signal: [NEVER; 9],
            last_active: NEVER,
            orders: 0,
            unsubscribed: 0,
            recycle_bin: false,
            last_reached: [NEVER; 5],
            reached_by: Box::default(),
        }
    }

    /// The text between two ends of `texts` (a whole text when the ends are out of place).
    fn text(&self, from: usize, to: usize) -> &str {
        self.texts.get(from..to).unwrap_or("")
    }

    pub fn id(&self) -> &str {
        self.text(0, self.ends[0] as usize)
    }

    fn field(&self, which: usize) -> Option<&str> {
        let from = self.ends[which] as usize;
        let to = self
            .ends
            .get(which + 1)
            .map_or(self.texts.len(), |end| *end as usize);
        Some(self.text(from, to)).filter(|text| !text.is_empty())
    }

    pub fn name(&self) -> Option<&str> {
        self.field(0)
    }

    pub fn company(&self) -> Option<&str> {
        self.field(1)
    }

    pub fn email(&self) -> Option<&str> {
        self.field(2)
    }

    /// Replaces the texts: `None` keeps a field as it is, `Some(None)` clears it.
    fn set_texts(
        &mut self,
        name: Option<Option<&str>>,
        company: Option<Option<&str>>,
        email: Option<Option<&str>>,
    ) {
        let name = name.unwrap_or(self.name()).unwrap_or("");
        let company = company.unwrap_or(self.company()).unwrap_or("");
        let email = email.unwrap_or(self.email()).unwrap_or("");
        let id = self.id();
        let mut texts = String::with_capacity(id.len() + name.len() + company.len() + email.len());
        texts.push_str(id);
        let at = |texts: &String| u32::try_from(texts.len()).unwrap_or(u32::MAX);
        let ends_name = at(&texts);
        texts.push_str(name);
        let ends_company = at(&texts);
        texts.push_str(company);
        let ends_email = at(&texts);
        texts.push_str(email);
        self.texts = texts.into_boxed_str();
        self.ends = [ends_name, ends_company, ends_email];
    }

    pub fn last(&self, activity: Activity) -> i64 {
        self.last_signal[activity_index(activity)]
    }

    pub fn unsubscribed_from(&self, kind: ChannelKind) -> bool {
        self.unsubscribed & (1 << channel_index(kind)) != 0
    }

    pub fn has_tag(&self, tag: Sym) -> bool {
        self.tags.binary_search(&tag).is_ok()
    }

    pub fn attribute(&self, name: Sym) -> Option<Sym> {
        self.attributes
            .binary_search_by_key(&name, |(key, _)| *key)
            .ok()
            .and_then(|index| self.attributes.get(index))
            .map(|(_, value)| *value)
    }

    /// The last reach by mail or in-site message (what DOMAIN.md calls "marketed").
    pub fn last_marketed(&self) -> i64 {
        self.last_reached[channel_index(ChannelKind::Mail)]
            .max(self.last_reached[channel_index(ChannelKind::InSite)])
    }

    /// The most recent reach on any channel kind.
    pub fn last_reached_any(&self) -> i64 {
        self.last_reached.iter().copied().max().unwrap_or(NEVER)
    }

    /// The lifecycle stage at `at` (milliseconds), by DOMAIN.md's rules, from the last reach `R`
    /// at or before `at`: an order in `[R, R + 30 d)` is `order` (`repurchase` when it was not
    /// the customer's first), else a reply in that span is `handshake`, else `reached` while
    /// `at < R + 30 d`. Otherwise `potential` when the customer never ordered and was active in
    /// the last 180 days or followed / favourited / carted / visited in the last 30; `None`
    /// for everyone else. The book keeps the last instant of each fact, so an order superseded
    /// by a later one outside the span no longer counts.
    pub fn lifecycle(&self, at: i64) -> Option<LifecycleStage> {
        let reach = self.last_marketed();
        if reach != NEVER && reach <= at {
            let span_end = reach.saturating_add(FUNNEL_DAYS * DAY_MS);
            let in_span = |instant: i64| instant != NEVER && reach <= instant && instant < span_end;
            let ordered = self.last(Activity::Ordered);
            if in_span(ordered) && ordered <= at {
                return Some(if self.orders >= 2 {
                    LifecycleStage::Repurchase
                } else {
                    LifecycleStage::Order
                });
            }
            let replied = self.last(Activity::Replied);
            if in_span(replied) && replied <= at {
                return Some(LifecycleStage::Handshake);
            }
            if at < span_end {
                return Some(LifecycleStage::Reached);
            }
        }
        if self.potential(at) {
            Some(LifecycleStage::Potential)
        } else {
            None
        }
    }

    /// Not yet ordered, and active on the platform in the last 180 days (the platform's own
    /// `active` signal) or interested in the shop in the last 30 (followed, favourited, carted,
    /// visited).
    pub fn potential(&self, at: i64) -> bool {
        if self.orders > 0 || self.last(Activity::Ordered) != NEVER {
            return false;
        }
        let since = |days: i64| at.saturating_sub(days * DAY_MS);
        let recent = |instant: i64, days: i64| instant != NEVER && instant > since(days);
        recent(self.last(Activity::Active), POTENTIAL_ACTIVE_DAYS)
            || [
                Activity::Followed,
                Activity::Favourited,
                Activity::Carted,
                Activity::Visited,
            ]
            .into_iter()
            .any(|activity| recent(self.last(activity), POTENTIAL_INTEREST_DAYS))
    }
}

/// An import as the book saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub kind: ImportKind,
    pub file: String,
    pub rows: u64,
    pub skipped: u64,
    pub recorded_rows: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Every customer, by slot (the order in which the log first named them). A snapshot holds
/// everything but the slots' table, which is made again when it is read; two books are equal
/// when they hold the same customers in the same slots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "BookParts")]
pub struct CustomerBook {
    pub symbols: Symbols,
    /// Each customer's slot, found by the hash of the id (the id itself is the customer's).
    #[serde(skip)]
    slots: hashbrown::HashTable<u32>,
    customers: Vec<Customer>,
    /// Imports by digest.
    pub imports: BTreeMap<String, ImportRecord>,
    /// The import whose rows are being recorded (rows follow their `ImportStarted`).
    open_import: Option<String>,
    /// The last log position applied.
    pub position: Position,
}

/// A book as a snapshot holds it: [`CustomerBook`] without its slots' table.
#[derive(Deserialize)]
struct BookParts {
    symbols: Symbols,
    #[serde(deserialize_with = "crate::presized::vec")]
    customers: Vec<Customer>,
    imports: BTreeMap<String, ImportRecord>,
    open_import: Option<String>,
    position: Position,
}

impl TryFrom<BookParts> for CustomerBook {
    type Error = String;

    fn try_from(parts: BookParts) -> Result<CustomerBook, String> {
        let mut book = CustomerBook {
            symbols: parts.symbols,
            slots: hashbrown::HashTable::with_capacity(parts.customers.len()),
            customers: parts.customers,
            imports: parts.imports,
            open_import: parts.open_import,
            position: parts.position,
        };
        let customers = &book.customers;
        for (slot, customer) in customers.iter().enumerate() {
            let id = customer.id();
            let same = |other: &u32| {
                customers
                    .get(*other as usize)
                    .is_some_and(|other| other.id() == id)
            };
            let rehash = |other: &u32| {
                customers
                    .get(*other as usize)
                    .map_or(0, |other| hash_id(other.id()))
            };
            match book.slots.entry(hash_id(id), same, rehash) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(format!("the customer {id:?} is in two slots"));
                }
                hashbrown::hash_table::Entry::Vacant(vacant) => {
                    vacant.insert(slot as u32);
                }
            }
        }
        Ok(book)
    }
}

impl PartialEq for CustomerBook {
    fn eq(&self, other: &CustomerBook) -> bool {
        self.symbols == other.symbols
            && self.customers == other.customers
            && self.imports == other.imports
            && self.open_import == other.open_import
            && self.position == other.position
    }
}

impl CustomerBook {
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    pub fn slot(&self, id: &str) -> Option<u32> {
        let customers = &self.customers;
        self.slots
            .find(hash_id(id), |slot| {
                customers
                    .get(*slot as usize)
                    .is_some_and(|customer| customer.id() == id)
            })
            .copied()
    }

    pub fn get(&self, id: &str) -> Option<&Customer> {
        self.slot(id)
            .and_then(|slot| self.customers.get(slot as usize))
    }

    fn entry(&mut self, id: &str) -> &mut Customer {
        let slot = match self.slot(id) {
            Some(slot) => slot as usize,
            None => {
                let slot = self.customers.len();
                self.customers.push(Customer::new(id));
                let customers = &self.customers;
                self.slots.insert_unique(hash_id(id), slot as u32, |slot| {
                    customers
                        .get(*slot as usize)
                        .map_or(0, |customer| hash_id(customer.id()))
                });
                slot
            }
        };
        &mut self.customers[slot]
    }

    /// Applies a recorded event if it is a customer event; the book's position moves either way.
    /// Events at or before the book's position are ignored, so catching up twice is harmless.
    pub fn apply_recorded(&mut self, event: &RecordedEvent) -> Result<(), PayloadError> {
        if event.position <= self.position {
            return Ok(());
        }
        let kind = event.event_type.as_str();
        let decoded = if CustomerEvent::holds(kind) {
            CustomerEvent::decode(event)?.map_or(Decoded::Other, Decoded::Customer)
        } else if kind == <crate::outreach::events::MessageSent as crate::event::upcast::EventPayload>::EVENT_TYPE {
            crate::outreach::OutreachEvent::decode(event)?.map_or(Decoded::Other, Decoded::Outreach)
        } else {
            Decoded::Other
        };
        self.apply_decoded(Place::of(event), &decoded);
        Ok(())
    }

    /// [`CustomerBook::apply_recorded`] for an event decoded once for several projections.
    pub fn apply_decoded(&mut self, event: Place<'_>, decoded: &Decoded) {
        if event.position <= self.position {
            return;
        }
        match decoded {
            Decoded::Customer(decoded) => {
                // Rows belong to the import of their stream, even one resumed after another
                // import.
                if let Some(short) = event.stream.as_str().strip_prefix("import-") {
                    if self
                        .open_import
                        .as_deref()
                        .is_none_or(|open| !open.starts_with(short))
                    {
                        self.open_import = self
                            .imports
                            .range(short.to_string()..)
                            .next()
                            .filter(|(digest, _)| digest.starts_with(short))
                            .map(|(digest, _)| digest.clone());
                    }
                }
                self.apply(decoded, event.recorded_at);
            }
            Decoded::Outreach(crate::outreach::OutreachEvent::MessageSent(sent)) => {
                self.reached(sent, event.recorded_at);
            }
            _ => {}
        }
        self.position = event.position;
    }

    /// A message the dispatcher sent to a customer: the customer was reached on that channel
    /// kind, by that reach-out.
    pub fn reached(&mut self, sent: &crate::outreach::events::MessageSent, at: DateTime<Utc>) {
        let Some(reach_out) = &sent.reach_out else {
            return;
        };
        let Some(slot) = self.slot(sent.to.as_str()) else {
            return;
        };
        let key = self
            .symbols
            .intern(&reach_out_key(&sent.campaign, reach_out));
        let Some(customer) = self.customers.get_mut(slot as usize) else {
            return;
        };
        let last = &mut customer.last_reached[channel_index(sent.kind)];
        *last = (*last).max(at.timestamp_millis());
        insert_sorted(&mut customer.reached_by, key);
    }

    /// Folds one event in. Never fails: imports were checked before they were recorded.
    pub fn apply(&mut self, event: &CustomerEvent, recorded_at: DateTime<Utc>) {
        match event {
            CustomerEvent::ImportStarted(started) => {
                self.open_import = Some(started.digest.clone());
                // Most rows of a customer file are new customers: grow once, not by doubling.
                if started.kind == ImportKind::Customers {
                    let rows = usize::try_from(started.rows).unwrap_or(0).min(50_000_000);
                    self.customers.reserve(rows);
                    let customers = &self.customers;
                    self.slots.reserve(rows, |slot| {
                        customers
                            .get(*slot as usize)
                            .map_or(0, |customer| hash_id(customer.id()))
                    });
                }
                self.imports.insert(
                    started.digest.clone(),
                    ImportRecord {
                        kind: started.kind,
                        file: started.file.clone(),
                        rows: started.rows,
                        skipped: started.skipped_total.max(started.skipped.len() as u64),
                        recorded_rows: 0,
                        started_at: recorded_at,
                        finished_at: None,
                    },
                );
            }
            CustomerEvent::ImportFinished(finished) => {
                if self.open_import.as_deref() == Some(finished.digest.as_str()) {
                    self.open_import = None;
                }
                if let Some(record) = self.imports.get_mut(&finished.digest) {
                    record.finished_at = Some(recorded_at);
                }
            }
            CustomerEvent::CustomerRecorded(row) => {
                self.record_customer(row, recorded_at);
                self.count_row();
            }
            CustomerEvent::OutcomeRecorded(row) => {
                self.record_outcome(row);
                self.count_row();
            }
        }
    }

    /// Counts a row against the import it belongs to.
    fn count_row(&mut self) {
        if let Some(record) = self
            .open_import
            .as_ref()
            .and_then(|digest| self.imports.get_mut(digest))
        {
            record.recorded_rows += 1;
        }
    }

    fn record_customer(&mut self, row: &CustomerRecorded, _recorded_at: DateTime<Utc>) {
        let text = |value: &Option<String>| -> Option<Option<Box<str>>> {
            value.as_ref().map(|text| {
                let trimmed = text.trim();
                (!trimmed.is_empty()).then(|| trimmed.into())
            })
        };
        let mut symbols = std::mem::take(&mut self.symbols);
        let mut intern = |value: &Option<String>| -> Option<Option<Sym>> {
            value.as_ref().map(|text| {
                let trimmed = text.trim();
                (!trimmed.is_empty()).then(|| symbols.intern(trimmed))
            })
        };
        let tier = intern(&row.tier);
        let owner = intern(&row.owner);
        let locale = intern(&row.locale);
        let tags = row.tags.as_ref().map(|tags| {
            let mut syms: Vec<Sym> = tags
                .iter()
                .map(|tag| tag.trim())
                .filter(|tag| !tag.is_empty())
                .map(|tag| symbols.intern(tag))
                .collect();
            syms.sort_unstable();
            syms.dedup();
            syms
        });
        let attributes: Vec<(Sym, Option<Sym>)> = row
            .attributes
            .iter()
            .map(|(name, value)| {
                let value = value.trim();
                (
                    symbols.intern(name),
                    (!value.is_empty()).then(|| symbols.intern(value)),
                )
            })
            .collect();
        self.symbols = symbols;

        let customer = self.entry(&row.customer);
        let (name, company, email) = (text(&row.name), text(&row.company), text(&row.email));
        let email = email.filter(|email| email.as_deref() != customer.email());
        if let Some(email) = &email {
            customer.email_ok = email.as_deref().is_some_and(valid_email);
        }
        let changed = |new: &Option<Option<Box<str>>>, old: Option<&str>| {
            new.as_ref().is_some_and(|new| new.as_deref() != old)
        };
        if changed(&name, customer.name())
            || changed(&company, customer.company())
            || email.is_some()
        {
            customer.set_texts(
                name.as_ref().map(Option::as_deref),
                company.as_ref().map(Option::as_deref),
                email.as_ref().map(Option::as_deref),
            );
        }
        if let Some(tags) = tags {
            customer.tags = tags.into_boxed_slice();
        }
        if let Some(tier) = tier {
            customer.tier = tier;
        }
        if let Some(owner) = owner {
            customer.owner = owner;
        }
        if let Some(locale) = locale {
            customer.locale = locale;
        }
        if let Some(source) = row.source {
            customer.source = Some(source);
        }
        if let Some(zone) = &row.time_zone {
            let zone = zone.trim();
            customer.time_zone = if zone.is_empty() {
                None
            } else {
                zone.parse::<Tz>().ok().or(customer.time_zone)
            };
        }
        if !attributes.is_empty() {
            let mut pairs = std::mem::take(&mut customer.attributes).into_vec();
            for (name, value) in attributes {
                match (pairs.binary_search_by_key(&name, |(key, _)| *key), value) {
                    (Ok(index), Some(value)) => pairs[index].1 = value,
                    (Ok(index), None) => {
                        pairs.remove(index);
                    }
                    (Err(index), Some(value)) => pairs.insert(index, (name, value)),
                    (Err(_), None) => {}
                }
            }
            customer.attributes = pairs.into_boxed_slice();
        }
        for signal in &row.signals {
            note_signal(customer, signal.activity, signal.at.timestamp_millis());
        }
        if let Some(orders) = row.orders {
            customer.orders = customer.orders.max(orders);
        }
        if row.unsubscribed_all {
            customer.unsubscribed = ALL_CHANNELS;
        }
        for kind in &row.unsubscribed {
            customer.unsubscribed |= 1 << channel_index(*kind);
        }
        if let Some(in_bin) = row.recycle_bin {
            customer.recycle_bin = in_bin;
        }
    }

    fn record_outcome(&mut self, row: &OutcomeRecorded) {
        let reach_out = match (&row.campaign, &row.reach_out) {
            (Some(campaign), Some(reach_out)) => {
                Some(self.symbols.intern(&reach_out_key(campaign, reach_out)))
            }
            _ => None,
        };
        let at = row.at.timestamp_millis();
        let customer = self.entry(&row.customer);
        let mut sent = false;
        match row.outcome {
            OutcomeKind::Delivered => {
                if let Some(kind) = row.channel {
                    let last = &mut customer.last_reached[channel_index(kind)];
                    *last = (*last).max(at);
                }
                sent = true;
            }
            OutcomeKind::Bounced => {
                if row.channel.is_none_or(|kind| kind == ChannelKind::Mail) {
                    customer.email_ok = false;
                }
                sent = true;
            }
            // A click needs the message open: for segments and follow-up rules it is an open.
            OutcomeKind::Opened | OutcomeKind::Clicked => {
                note_signal(customer, Activity::Opened, at)
            }
            OutcomeKind::Replied => note_signal(customer, Activity::Replied, at),
            OutcomeKind::Ordered => {
                if at > customer.last(Activity::Ordered) {
                    customer.orders = customer.orders.saturating_add(1);
                }
                note_signal(customer, Activity::Ordered, at);
            }
            OutcomeKind::Unsubscribed => match row.channel {
                Some(kind) => customer.unsubscribed |= 1 << channel_index(kind),
                None => customer.unsubscribed = ALL_CHANNELS,
            },
        }
        if sent {
            if let Some(key) = reach_out {
                insert_sorted(&mut customer.reached_by, key);
            }
        }
    }

    /// A fingerprint of everything the book holds, in a canonical order: two books built from
    /// the same log, however incrementally, have the same digest.
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        let mut order: Vec<&Customer> = self.customers.iter().collect();
        order.sort_unstable_by(|a, b| a.id().cmp(b.id()));
        let name = |sym: Sym| self.symbols.name(sym);
        for customer in order {
            let names = |syms: &[Sym]| {
                let mut names: Vec<&str> = syms.iter().map(|sym| name(*sym)).collect();
                names.sort_unstable();
                names.join("\u{1f}")
            };
            let attributes: Vec<String> = {
                let mut pairs: Vec<String> = customer
                    .attributes
                    .iter()
                    .map(|(key, value)| format!("{}={}", name(*key), name(*value)))
                    .collect();
                pairs.sort_unstable();
                pairs
            };
            let line = format!(
                "{}\u{1e}{:?}\u{1e}{:?}\u{1e}{:?}\u{1e}{}\u{1e}{}\u{1e}{:?}\u{1e}{:?}\u{1e}{:?}\u{1e}{:?}\u{1e}{:?}\u{1e}{}\u{1e}{:?}\u{1e}{}\u{1e}{}\u{1e}{}\u{1e}{}\u{1e}{:?}\u{1e}{}\n",
                customer.id(),
                customer.name(),
                customer.company(),
                customer.email(),
                customer.email_ok,
                names(&customer.tags),
                customer.tier.map(name),
                customer.owner.map(name),
                customer.source,
                customer.locale.map(name),
                customer.time_zone,
                attributes.join("\u{1f}"),
                customer.last_signal,
                customer.last_active,
                customer.orders,
                customer.unsubscribed,
                customer.recycle_bin,
                customer.last_reached,
                names(&customer.reached_by),
            );
            hasher.update(line.as_bytes());
        }
        for (digest, record) in &self.imports {
            hasher.update(format!("{digest}\u{1e}{record:?}\n").as_bytes());
        }
        hasher.finalize().to_hex().to_string()
    }
}

/// The hash the book finds a customer's slot by.
fn hash_id(id: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// Adds a symbol to a sorted set held as a boxed slice (a few entries: rebuilt on a change).
fn insert_sorted(set: &mut Box<[Sym]>, sym: Sym) {
    if let Err(index) = set.binary_search(&sym) {
        let mut items = std::mem::take(set).into_vec();
        items.insert(index, sym);
        *set = items.into_boxed_slice();
    }
}

fn note_signal(customer: &mut Customer, activity: Activity, at: i64) {
    let last = &mut customer.last_signal[activity_index(activity)];
    *last = (*last).max(at);
    if SITE_ACTIVITY.contains(&activity) {
        customer.last_active = customer.last_active.max(at);
    }
}

/// How the book names a reach-out: `campaign/reach-out`.
pub fn reach_out_key(campaign: &str, reach_out: &str) -> String {
    format!("{campaign}/{reach_out}")
}

/// Milliseconds since the epoch, the book's unit.
pub fn millis(instant: DateTime<Utc>) -> i64 {
    instant.timestamp_millis()
}

pub const fn days_ms(days: i64) -> i64 {
    days * DAY_MS
}
