//! What a kind does with a referral's later messages (docs/lifecycle.md): each kind's
//! `LATER` names those it passes on; the others are held for a person.

use crate::error::{GatewayError, Stage};

/// Every later message a referral can have, for a kind that passes each on.
pub const EVERY_LATER: &[crate::model::lifecycle::Change] = {
    use crate::model::lifecycle::Change::*;
    &[Amend, Cancel, Withdraw, Remind, Close]
};

/// Why a destination was not sent a change its kind cannot pass on: held for a person,
/// who makes the change at the platform by hand (the changed fields named, never values).
pub fn cannot_take(
    destination: &str,
    kind: &str,
    op: &crate::model::lifecycle::Operation,
) -> GatewayError {
    let what = match op.change {
        crate::model::lifecycle::Change::Amend => format!(
            "an update (changed: {})",
            if op.changed.is_empty() {
                "nothing named".to_string()
            } else {
                op.changed.join(", ")
            }
        ),
        other => format!("a {} notice", other.event_name()),
    };
    GatewayError::invalid(
        Stage::Deliver,
        "referral_details.status",
        format!(
            "destination {destination} ({kind}) cannot take {what} for referral {} through its \
             interface: nothing was sent to it; make the change at the platform by hand, then \
             dismiss this",
            op.referral_id
        ),
    )
}
