//! Text for the views of `app::outreach`.

use crate::present::Reply;

pub fn outbox(view: &crate::app::outreach::OutboxView) -> Reply {
    view.clone()
}

pub fn channel_resumed(view: &crate::app::outreach::ChannelResumeView) -> Reply {
    view.clone()
}
