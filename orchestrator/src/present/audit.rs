//! Text for the views of `app::audit`.

use crate::present::Reply;

pub fn verify(view: &crate::app::audit::VerifyView) -> Reply {
    view.clone()
}
