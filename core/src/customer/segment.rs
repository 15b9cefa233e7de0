//! Segments evaluated at an instant: the platform's system segments, dynamic rules and fixed
//! lists, compiled against the book's symbols so that testing a million customers is a few
//! integer comparisons each.
//!
//! The book keeps the last instant of each signal, and evaluation uses everything recorded: a
//! condition "visited within 30 d" holds at `T` when the last visit is after `T - 30 d`
//! (signals recorded with an instant after `T` count as recent). Evaluating at an instant of the
//! past as the log stood then is the auditor's `history --as-of`, not this.

use std::collections::HashSet;

use super::book::{activity_index, days_ms, Customer, CustomerBook, Sym, NEVER};
use crate::plan::model::{
    Activity, ChannelKind, Condition, CustomerSource, LifecycleStage, Plan, SegmentDefinition,
    SystemSegment,
};

/// A plan's segments, ready to test customers against.
#[derive(Debug, Clone)]
pub struct Segments {
    ids: Vec<String>,
    compiled: Vec<Compiled>,
}

#[derive(Debug, Clone)]
enum Compiled {
    System(SystemSegment),
    Dynamic {
        all: Vec<Test>,
        any: Vec<Test>,
        none: Vec<Test>,
    },
    /// Slots of the listed customers the book knows.
    Fixed(HashSet<u32>),
}

/// A condition with its texts turned into symbols. A text no customer has becomes `None`,
/// which nobody matches.
#[derive(Debug, Clone)]
enum Test {
    Tag(Option<Sym>),
    NotTag(Option<Sym>),
    Tier(Vec<Sym>),
    Owner(Vec<Sym>),
    Source(Vec<CustomerSource>),
    Locale(Vec<Sym>),
    Lifecycle(Vec<LifecycleStage>),
    InSegment(usize),
    Activity {
        index: Option<usize>,
        within: Option<i64>,
    },
    NoActivity {
        index: Option<usize>,
        within: i64,
    },
    Attribute {
        name: Option<Sym>,
        one_of: Vec<Sym>,
    },
}

/// Tier names that count as "L1+": `L1+`, and `L1`, `L2`, ... (a higher level is better).
pub fn is_l1_plus(tier: &str) -> bool {
    let Some(level) = tier.strip_prefix('L').or_else(|| tier.strip_prefix('l')) else {
        return false;
    };
    let level = level.strip_suffix('+').unwrap_or(level);
    level.parse::<u32>().is_ok_and(|level| level >= 1)
}

impl Segments {
    /// Compiles every segment of the plan against the book.
    pub fn compile(plan: &Plan, book: &CustomerBook) -> Segments {
        let ids: Vec<String> = plan.segments.iter().map(|s| s.id.clone()).collect();
        let position = |id: &str| ids.iter().position(|known| known == id);
        let symbols = &book.symbols;
        let syms = |texts: &[String]| -> Vec<Sym> {
            texts.iter().filter_map(|text| symbols.get(text)).collect()
        };
        let compile_test = |condition: &Condition| -> Test {
            match condition {
                Condition::Tag(tag) => Test::Tag(symbols.get(tag)),
                Condition::NotTag(tag) => Test::NotTag(symbols.get(tag)),
                Condition::Tier(tiers) => Test::Tier(syms(tiers)),
                Condition::Owner(owners) => Test::Owner(syms(owners)),
                Condition::Source(sources) => Test::Source(sources.clone()),
                Condition::Locale(locales) => Test::Locale(syms(locales)),
                Condition::Lifecycle(stages) => Test::Lifecycle(stages.clone()),
                // Validation refuses unknown segments and cycles; an unknown one matches nobody.
                Condition::InSegment(id) => Test::InSegment(position(id).unwrap_or(usize::MAX)),
                Condition::Activity { activity, within } => Test::Activity {
                    index: activity_slot(*activity),
                    within: within.map(|within| within.seconds().saturating_mul(1000)),
                },
                Condition::NoActivity { activity, within } => Test::NoActivity {
                    index: activity_slot(*activity),
                    within: within.seconds().saturating_mul(1000),
                },
                Condition::Attribute { name, one_of } => Test::Attribute {
                    name: symbols.get(name),
                    one_of: syms(one_of),
                },
            }
        };
        let compiled = plan
            .segments
            .iter()
            .map(|segment| match &segment.definition {
                SegmentDefinition::System(system) => Compiled::System(*system),
                SegmentDefinition::Dynamic { all, any, none } => Compiled::Dynamic {
                    all: all.iter().map(compile_test).collect(),
                    any: any.iter().map(compile_test).collect(),
                    none: none.iter().map(compile_test).collect(),
                },
                SegmentDefinition::Fixed(list) => {
                    Compiled::Fixed(list.iter().filter_map(|id| book.slot(id)).collect())
                }
            })
            .collect();
        Segments { ids, compiled }
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|known| known == id)
    }

    /// Whether the customer in `slot` belongs to segment `index` at `at` (milliseconds).
    pub fn contains(&self, book: &CustomerBook, index: usize, slot: u32, at: i64) -> bool {
        let Some(customer) = book.customers().get(slot as usize) else {
            return false;
        };
        self.test(book, index, slot, customer, at, 0)
    }

    /// The members of segment `index` at `at`, in slot order.
    pub fn members(&self, book: &CustomerBook, index: usize, at: i64) -> Vec<u32> {
        if let Some(Compiled::Fixed(slots)) = self.compiled.get(index) {
            let mut members: Vec<u32> = slots.iter().copied().collect();
            members.sort_unstable();
            return members;
        }
        book.customers()
            .iter()
            .enumerate()
            .filter(|(slot, customer)| self.test(book, index, *slot as u32, customer, at, 0))
            .map(|(slot, _)| slot as u32)
            .collect()
    }

    fn test(
        &self,
        book: &CustomerBook,
        index: usize,
        slot: u32,
        customer: &Customer,
        at: i64,
        depth: usize,
    ) -> bool {
        // Validation refuses cycles; the depth bound keeps a damaged plan from recursing forever.
        if depth > 32 {
            return false;
        }
        match self.compiled.get(index) {
            None => false,
            Some(Compiled::System(system)) => system_member(book, customer, *system, at),
            Some(Compiled::Fixed(slots)) => slots.contains(&slot),
            Some(Compiled::Dynamic { all, any, none }) => {
                let holds = |test: &Test| self.holds(book, test, slot, customer, at, depth);
                all.iter().all(holds)
                    && (any.is_empty() || any.iter().any(holds))
                    && !none.iter().any(holds)
            }
        }
    }

    fn holds(
        &self,
        book: &CustomerBook,
        test: &Test,
        slot: u32,
        customer: &Customer,
        at: i64,
        depth: usize,
    ) -> bool {
        let last = |index: Option<usize>| match index {
            Some(index) => customer.last_signal[index],
            None => customer.last_active,
        };
        match test {
            Test::Tag(tag) => tag.is_some_and(|tag| customer.has_tag(tag)),
            Test::NotTag(tag) => !tag.is_some_and(|tag| customer.has_tag(tag)),
            Test::Tier(tiers) => customer.tier.is_some_and(|tier| tiers.contains(&tier)),
            Test::Owner(owners) => customer.owner.is_some_and(|owner| owners.contains(&owner)),
            Test::Source(sources) => customer
                .source
                .is_some_and(|source| sources.contains(&source)),
            Test::Locale(locales) => customer
                .locale
                .is_some_and(|locale| locales.contains(&locale)),
            Test::Lifecycle(stages) => customer
                .lifecycle(at)
                .is_some_and(|stage| stages.contains(&stage)),
            Test::InSegment(index) => self.test(book, *index, slot, customer, at, depth + 1),
            Test::Activity { index, within } => {
                let instant = last(*index);
                instant != NEVER && within.is_none_or(|within| instant > at.saturating_sub(within))
            }
            Test::NoActivity { index, within } => {
                let instant = last(*index);
                instant == NEVER || instant <= at.saturating_sub(*within)
            }
            Test::Attribute { name, one_of } => name
                .and_then(|name| customer.attribute(name))
                .is_some_and(|value| one_of.contains(&value)),
        }
    }
}

/// `Active` reads the last activity on the platform; the others their own signal.
fn activity_slot(activity: Activity) -> Option<usize> {
    match activity {
        Activity::Active => None,
        other => Some(activity_index(other)),
    }
}

/// The platform's ready-made groups (DOMAIN.md "Customers and the funnel").
fn system_member(book: &CustomerBook, customer: &Customer, system: SystemSegment, at: i64) -> bool {
    let active_within = |days: i64| {
        customer.last_active != NEVER && customer.last_active > at.saturating_sub(days_ms(days))
    };
    match system {
        SystemSegment::Active7d => active_within(7),
        SystemSegment::Active30d => active_within(30),
        SystemSegment::Active90d => active_within(90),
        SystemSegment::L1PlusPotential => {
            let tiered = customer
                .tier
                .is_some_and(|tier| is_l1_plus(book.symbols.name(tier)))
                || book
                    .symbols
                    .get("L1+")
                    .is_some_and(|tag| customer.has_tag(tag));
            tiered && customer.lifecycle(at) == Some(LifecycleStage::Potential)
        }
        SystemSegment::MailedReadNotReplied60d => {
            let mailed = customer.last_reached[super::book::channel_index(ChannelKind::Mail)];
            let opened = customer.last(Activity::Opened);
            let replied = customer.last(Activity::Replied);
            mailed != NEVER
                && mailed <= at
                && mailed > at.saturating_sub(days_ms(60))
                && opened != NEVER
                && opened >= mailed
                && (replied == NEVER || replied < mailed)
        }
    }
}
