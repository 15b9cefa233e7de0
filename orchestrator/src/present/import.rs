//! Text for the views of `app::import`.

use crate::present::Reply;

pub fn import(view: &crate::app::import::ImportView) -> Reply {
    view.clone()
}
