//! Text for the views of `app::tasks`.

use crate::present::Reply;

pub fn tasks(view: &crate::app::tasks::TasksView) -> Reply {
    view.clone()
}

pub fn task_done(view: &crate::app::tasks::TaskDoneView) -> Reply {
    view.clone()
}

pub fn funnel(view: &crate::app::tasks::FunnelView) -> Reply {
    view.clone()
}
