//! Text for the views of `app::archive`.

use crate::present::Reply;

pub fn export(view: &crate::app::archive::ExportView) -> Reply {
    view.clone()
}
