//! Text for the views of `app::explain`.

use crate::present::Reply;

pub fn explain(view: &crate::app::explain::ExplainView) -> Reply {
    view.clone()
}
