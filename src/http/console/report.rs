//! The programme dataset's report in the console: a form, and the self-contained report
//! (the same file `clw-gateway report` writes) for a programme the operator sees — or one
//! of its practices — small counts suppressed, the viewing audited.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::auth::operator;
use super::pages::{forbidden, page, self_contained, to_login};
use crate::dataset::extract::Period;
use crate::dataset::output::ExtractJob;
use crate::model::markup::escape as esc;

/// What the report needs beyond the store: the dataset's configuration and the code maps
/// its categories come from.
pub struct ReportSource {
    pub dataset: crate::dataset::DatasetConfig,
    pub codes: crate::dataset::extract::CodeMaps,
}

fn day(q: &BTreeMap<String, String>, key: &str) -> Option<String> {
    q.get(key)
        .and_then(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        .map(|d| d.format("%Y-%m-%d").to_string())
}

fn form(q: &BTreeMap<String, String>, note: &str) -> Response {
    let v = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let mut out = String::from("<p><a href=\"/console\">Back</a></p>");
    if !note.is_empty() {
        let _ = write!(out, "<p class=\"warn\">{}</p>", esc(note));
    }
    let _ = write!(
        out,
        "<form method=\"get\" action=\"/console/report\">\
         <label>Programme <input name=\"programme\" value=\"{}\" required></label> \
         <label>Practice (optional) <input name=\"practice\" value=\"{}\"></label> \
         <label>From <input name=\"from\" type=\"date\" value=\"{}\" required></label> \
         <label>To <input name=\"to\" type=\"date\" value=\"{}\" required></label> \
         <button>Show the report</button></form>\
         <p>Counts under the configured threshold are shown as &lt;N and the rest rounded; \
         the file opens offline and prints to PDF.</p>",
        v("programme"),
        v("practice"),
        v("from"),
        v("to")
    );
    page("Programme dataset report", &out)
}

pub(super) async fn report(
    State(c): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let Some(who) = operator(&c, &headers).await else {
        return to_login();
    };
    let q: BTreeMap<String, String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let Some(source) = &c.reports else {
        return form(&q, "the programme dataset is off (dataset.enabled = false)");
    };
    let programme = q.get("programme").filter(|p| !p.is_empty());
    let (Some(programme), Some(from), Some(to)) = (programme, day(&q, "from"), day(&q, "to"))
    else {
        return form(&q, "");
    };
    if !who.sees(Some(programme)) {
        return forbidden("this programme is not one of yours");
    }
    let period = Period {
        programme: programme.clone(),
        from,
        to,
        practice: q.get("practice").filter(|p| !p.is_empty()).cloned(),
    };
    let job = ExtractJob {
        store: &c.store,
        config: &source.dataset,
        codes: source.codes.clone(),
        actor: &who.name,
    };
    match job.report(&period, "html").await {
        Ok(bytes) => self_contained(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the report could not be made: {}", e.reason()),
        )
            .into_response(),
    }
}
