//! The information-governance pack in the console (`/console/ig`): the same
//! self-contained HTML `clw-gateway ig` writes, made from the running configuration at
//! the moment it is asked for, for operators who see every programme (the pack
//! describes them all); each view audited under the operator's name.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::auth::operator;
use super::pages::{forbidden, self_contained, to_login};
use crate::store::Write;

pub(super) async fn ig(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let Some(who) = operator(&c, &headers).await else {
        return to_login();
    };
    if who.scoped() {
        return forbidden(
            "the IG pack describes every programme and destination: it is for operators who \
             see every programme",
        );
    }
    let Some(source) = &c.ig else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the IG pack is off: its routes could not be read at start (see the log)",
        )
            .into_response();
    };
    let made = crate::ig::build(source, chrono::Utc::now())
        .and_then(|pack| crate::ig::render(&pack).map(|files| (pack, files)));
    let (pack, files) = match made {
        Ok(made) => made,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the IG pack could not be made: {}", e.reason()),
            )
                .into_response();
        }
    };
    // Shown only once recorded: who saw which configuration's pack, and when.
    let entry = crate::ig::audit_entry(&pack, &who.name, "viewed in the console");
    if let Err(e) = c.store.write(Write::Audit(entry)).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the view could not be audited, so it is not shown: {}",
                e.reason()
            ),
        )
            .into_response();
    }
    self_contained(files.html)
}
