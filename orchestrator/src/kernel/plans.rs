//! The plan in force for a campaign, and the customer book caught up from the log: the shared
//! reads every use case and the dispatcher start from.

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

/// The plan in force for a campaign: the source of its last `PlanApplied` or `PlanRevised`,
/// with its windows, boundaries and tasks moved by every shifting pause (`on_resume =
/// "shift_windows"`) the campaign's `CampaignResumed` events recorded.
pub async fn plan_in_force(
    runtime: &Runtime,
    campaign_id: &str,
) -> Result<Option<Plan>, HandleError> {
    let stream = campaign::stream_of(campaign_id).map_err(campaign::Rejection)?;
    let mut source: Option<String> = None;
    let mut shifts = Vec::new();
    let mut version = StreamVersion::NONE;
    loop {
        let events = runtime
            .store
            .read_stream(&stream, version.next(), CATCH_UP_BATCH)
            .await?;
        let Some(last) = events.last() else { break };
        version = last.version;
        for event in &events {
            match CampaignEvent::decode(event)? {
                Some(CampaignEvent::PlanApplied(applied)) => source = Some(applied.source),
                Some(CampaignEvent::PlanRevised(revised)) => source = Some(revised.source),
                Some(CampaignEvent::CampaignResumed(resumed)) => shifts.extend(resumed.shift),
                _ => {}
            }
        }
    }
    let Some(source) = source else {
        return Ok(None);
    };
    let checked = plan::check(source.as_bytes());
    match checked.plan {
        // In force: with every window, boundary and task moved by the shifting pauses.
        Some(plan) => Ok(Some(battleplan_core::outreach::decide::shifted(
            &plan, &shifts,
        ))),
        None => Err(HandleError::Store(StoreError::Corrupt {
            position: battleplan_core::event::Position::START,
            detail: format!("the plan recorded for campaign {campaign_id} no longer validates"),
        })),
    }
}
