//! Text for the views of `app::audience`.

use crate::present::Reply;

pub fn preview(view: &crate::app::audience::PreviewView) -> Reply {
    view.clone()
}
