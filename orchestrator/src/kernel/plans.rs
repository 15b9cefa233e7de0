//! The plan in force for a campaign, and the customer book caught up from the log: the shared
//! reads every use case and the dispatcher start from.

use std::sync::Arc;

use battleplan_core::campaign::timeline::Shift;
use battleplan_core::campaign::{self, CampaignEvent};
use battleplan_core::customer::book::CustomerBook;
use battleplan_core::event::port::EventReader;
use battleplan_core::event::{StoreError, StreamVersion};
use battleplan_core::plan::{self, Plan};

use crate::kernel::runtime::{HandleError, Runtime};

/// Events read from the log at a time while catching up.
const CATCH_UP_BATCH: usize = 10_000;

/// Brings the book up to the log's durable head.
pub async fn catch_up_book(
    store: &dyn EventReader,
    book: &mut CustomerBook,
) -> Result<(), HandleError> {
    loop {
        let events = store.read_all(book.position, CATCH_UP_BATCH).await?;
        if events.is_empty() {
            return Ok(());
        }
        for event in &events {
            book.apply_recorded(event)?;
        }
    }
}

/// What [`plan_in_force`] keeps of a campaign between questions: how far it read the
/// campaign's stream, the plan text and the shifting pauses read so far, and the plan they give
/// (parsed and validated once, not at every question).
#[derive(Debug, Default)]
pub struct PlanCache {
    version: StreamVersion,
    source: Option<String>,
    shifts: Vec<Shift>,
    plan: Option<Arc<Plan>>,
}

/// The plan in force for a campaign (shared, not copied, between questions): the source of its last `PlanApplied` or `PlanRevised`,
/// with its windows, boundaries and tasks moved by every shifting pause (`on_resume =
/// "shift_windows"`) the campaign's `CampaignResumed` events recorded. The runtime keeps it
/// (`Runtime::plans`) and reads only the campaign's events recorded since; the file is parsed
/// and validated again only when one of them changes the plan.
pub async fn plan_in_force(
    runtime: &Runtime,
    campaign_id: &str,
) -> Result<Option<Arc<Plan>>, HandleError> {
    let stream = campaign::stream_of(campaign_id).map_err(campaign::Rejection)?;
    let mut plans = runtime.plans.lock().await;
    let cache = plans.entry(campaign_id.to_string()).or_default();
    let mut changed = false;
    loop {
        let events = runtime
            .store
            .read_stream(&stream, cache.version.next(), CATCH_UP_BATCH)
            .await?;
        let Some(last) = events.last() else { break };
        for event in &events {
            match CampaignEvent::decode(event)? {
                Some(CampaignEvent::PlanApplied(applied)) => {
                    cache.source = Some(applied.source);
                    changed = true;
                }
                Some(CampaignEvent::PlanRevised(revised)) => {
                    cache.source = Some(revised.source);
                    changed = true;
                }
                Some(CampaignEvent::CampaignResumed(resumed)) => {
                    if let Some(shift) = resumed.shift {
                        cache.shifts.push(shift);
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        cache.version = last.version;
    }
    if changed || (cache.plan.is_none() && cache.source.is_some()) {
        cache.plan = None;
        let Some(source) = &cache.source else {
            return Ok(None);
        };
        let checked = plan::check(source.as_bytes());
        match checked.plan {
            // In force: with every window, boundary and task moved by the shifting pauses.
            Some(plan) => {
                cache.plan = Some(Arc::new(battleplan_core::outreach::decide::shifted(
                    &plan,
                    &cache.shifts,
                )));
            }
            None => {
                return Err(HandleError::Store(StoreError::Corrupt {
                    position: battleplan_core::event::Position::START,
                    detail: format!(
                        "the plan recorded for campaign {campaign_id} no longer validates"
                    ),
                }))
            }
        }
    }
    Ok(cache.plan.clone())
}
