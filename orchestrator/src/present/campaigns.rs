//! Text for the views of `app::campaigns`.

use crate::present::Reply;

pub fn status(view: &crate::app::campaigns::StatusView) -> Reply {
    view.clone()
}

pub fn history(view: &crate::app::campaigns::HistoryView) -> Reply {
    view.clone()
}

pub fn acted(view: &crate::app::campaigns::ActView) -> Reply {
    view.clone()
}

pub fn plan_applied(view: &crate::app::campaigns::ApplyView) -> Reply {
    view.clone()
}

pub fn targets(view: &crate::app::campaigns::TargetsView) -> Reply {
    view.clone()
}
