//! The platform door: `POST /v1/events/{platform}` (one event, the platform's JSON) and
//! `POST /v1/uploads/{platform}` (a spreadsheet, one row per contact or outcome), on a
//! listener of its own. Each request is signed with the platform's HMAC-SHA256 secret
//! (`crate::signing`: timestamp and signature headers, a replay window, constant-time
//! comparison) and limited in size. An event is mapped to the canonical event at the
//! door, so a platform hears about a malformed event at once (400, naming the field),
//! and is answered 202 only once it is durably queued (the broker confirmed it, or
//! the spool file is synced).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::IngressConfig;
use crate::error::{GatewayError, Result, Stage};
use crate::flows::door::Door;
use crate::flows::message_back::{check_event_for, map_event};
use crate::mapping::Mapping;
use crate::metrics::{IngressLabels, Metrics};
use crate::model::message_back::MessageBack;
use crate::seal::Origin;
use crate::shutdown::Shutdown;
use crate::signing::{self, SignatureError};
use crate::wiring::{MessageBackWiring, Platform};

pub struct State {
    platforms: BTreeMap<String, Arc<Platform>>,
    door: Arc<Door>,
    window: i64,
    /// Signatures seen within the replay window: a second use is a replay.
    seen: Mutex<HashMap<String, Instant>>,
    metrics: Metrics,
    max_body: usize,
}

impl State {
    pub fn new(
        c: &IngressConfig,
        mb: &MessageBackWiring,
        door: Arc<Door>,
        metrics: Metrics,
    ) -> Arc<State> {
        Arc::new(State {
            platforms: mb.platforms.clone(),
            door,
            window: c.replay_window.as_secs() as i64,
            seen: Mutex::new(HashMap::new()),
            metrics,
            max_body: c.max_body_bytes,
        })
    }
}

pub fn router(state: Arc<State>) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/v1/events/{platform}", post(event))
        .route("/v1/uploads/{platform}", post(upload))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: Shutdown) -> Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .map_err(|e| GatewayError::transient(Stage::Config, format!("ingress: {e}")))
}

/// A refusal: its status and a JSON body naming the problem (never a value).
fn refuse(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"accepted": false, "field": field, "error": message.into()})),
    )
        .into_response()
}

impl State {
    fn count(&self, platform: &str, outcome: &str) {
        self.metrics
            .ingress
            .get_or_create(&IngressLabels {
                platform: platform.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The platform and its signature check; a refusal otherwise.
    fn authenticate(
        &self,
        platform: &str,
        headers: &HeaderMap,
        body: &[u8],
        media: &str,
    ) -> std::result::Result<&Platform, Box<Response>> {
        let Some(p) = self.platforms.get(platform) else {
            return Err(Box::new(refuse(
                StatusCode::NOT_FOUND,
                None,
                "no such platform",
            )));
        };
        if p.secrets.is_empty() {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                None,
                "this platform has no signing secret configured, so its HTTP door is closed",
            )));
        }
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let secrets: Vec<&[u8]> = p.secrets.iter().map(|s| s.as_bytes()).collect();
        let now = chrono::Utc::now().timestamp();
        if let Err(e) = signing::verify(
            &secrets,
            get(signing::TIMESTAMP_HEADER),
            get(signing::SIGNATURE_HEADER),
            body,
            now,
            self.window,
        ) {
            let header = match e {
                SignatureError::MissingTimestamp
                | SignatureError::BadTimestamp
                | SignatureError::Stale => signing::TIMESTAMP_HEADER,
                _ => signing::SIGNATURE_HEADER,
            };
            return Err(Box::new(refuse(
                StatusCode::UNAUTHORIZED,
                Some(header),
                e.describe(),
            )));
        }
        let ct = get(header::CONTENT_TYPE.as_str()).unwrap_or_default();
        let ct = ct.split(';').next().unwrap_or_default().trim();
        if !ct.eq_ignore_ascii_case(media) {
            return Err(Box::new(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("content-type"),
                format!("send {media}"),
            )));
        }
        // A signature already used within the window: the same request again.
        let signature = get(signing::SIGNATURE_HEADER)
            .unwrap_or_default()
            .to_string();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let window = Duration::from_secs(self.window.max(1) as u64 * 2);
            seen.retain(|_, at| at.elapsed() < window);
            if seen.insert(signature, Instant::now()).is_some() {
                return Err(Box::new(refuse(
                    StatusCode::CONFLICT,
                    Some(signing::SIGNATURE_HEADER),
                    "this signed request was already received (a replay); send a new request to resend",
                )));
            }
        }
        Ok(p)
    }
}

/// One event: checked, mapped, queued.
async fn event(
    AxState(s): AxState<Arc<State>>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match s.authenticate(&platform, &headers, &body, "application/json") {
        Ok(p) => p,
        Err(r) => {
            s.count(&platform, "refused");
            return *r;
        }
    };
    let mapped = crate::intake::json::parse_bounded(&body)
        .and_then(|v| to_canonical(p, &p.mapping, &v, &BTreeMap::new()));
    let ev = match mapped {
        Ok(ev) => ev,
        Err(e) => {
            s.count(&platform, "refused");
            return refuse(StatusCode::BAD_REQUEST, e.field.as_deref(), e.message);
        }
    };
    queue(&s, &platform, ev).await
}

/// Maps a platform's JSON to a canonical event, with every check the front makes
/// before linking (so the platform hears at once, naming the field).
fn to_canonical(
    p: &Platform,
    mapping: &Mapping,
    input: &Value,
    constants: &BTreeMap<String, String>,
) -> Result<MessageBack> {
    let mut ev = map_event(mapping, input, constants)?;
    check_event_for(p, &mut ev)?;
    Ok(ev)
}

/// Queues a canonical event sealed as the platform's; 202 once durable.
async fn queue(s: &State, platform: &str, ev: MessageBack) -> Response {
    match s
        .door
        .put(&Origin::Platform(platform.to_string()), &ev)
        .await
    {
        Ok(id) => {
            s.count(platform, "accepted");
            info!(platform, message_id = id, "event queued");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"accepted": true, "id": id})),
            )
                .into_response()
        }
        Err(e) => {
            warn!(platform, error = %e, "cannot queue an event");
            let mut r = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the event could not be queued; send it again later",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("30"),
            );
            r
        }
    }
}

/// A spreadsheet: every row checked and mapped; the good ones queued, each bad one
/// named by row and column. A row's id is a digest of its cells (or its `Event ID`
/// column), so uploading the same sheet again adds nothing twice.
async fn upload(
    AxState(s): AxState<Arc<State>>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match s.authenticate(&platform, &headers, &body, "text/csv") {
        Ok(p) => p,
        Err(r) => {
            s.count(&platform, "refused");
            return *r;
        }
    };
    let rows = match read_rows(&body) {
        Ok(r) => r,
        Err(e) => {
            s.count(&platform, "refused");
            return refuse(StatusCode::BAD_REQUEST, None, e);
        }
    };
    let mut errors = Vec::new();
    let mut events = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        // Row 1 is the header line.
        let line = n + 2;
        let mut constants = BTreeMap::new();
        constants.insert("row_id".to_string(), row_id(&platform, row));
        if let Some(prog) = &p.programme {
            constants.insert("programme".to_string(), prog.clone());
        }
        match to_canonical(p, &p.upload_mapping, row, &constants) {
            Ok(ev) => events.push(ev),
            Err(e) => errors.push(json!({
                "row": line,
                "column": column_of(&p.upload_mapping, e.field.as_deref()),
                "error": e.reason(),
            })),
        }
    }
    let mut queued = 0;
    for ev in events {
        let r = queue(&s, &platform, ev).await;
        if r.status() != StatusCode::ACCEPTED {
            return r;
        }
        queued += 1;
    }
    let status = if errors.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (
        status,
        axum::Json(json!({"rows": rows.len(), "queued": queued, "errors": errors})),
    )
        .into_response()
}

/// The sheet's rows as JSON objects (heading → cell), empty cells left out.
fn read_rows(body: &[u8]) -> std::result::Result<Vec<Value>, String> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let mut r = ::csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(body);
    let headings: Vec<String> = r
        .headers()
        .map_err(|e| format!("the first line is not a CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("row {}: not CSV: {e}", n + 2))?;
        let obj: serde_json::Map<String, Value> = headings
            .iter()
            .zip(rec.iter())
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(h, v)| (h.clone(), Value::String(v.trim().to_string())))
            .collect();
        if !obj.is_empty() {
            rows.push(Value::Object(obj));
        }
    }
    Ok(rows)
}

/// A row's stable id: its `Event ID` cell, else a digest of its cells.
fn row_id(platform: &str, row: &Value) -> String {
    if let Some(id) = row.get("Event ID").and_then(Value::as_str) {
        return id.to_string();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{platform}\n{row}").as_bytes());
    format!("row-{}", &hex::encode(digest)[..24])
}

/// The sheet column an error is about: of the headings the failing field is read
/// from, the one fewest fields read (so `Score`, not the `Event` every field tests).
fn column_of(mapping: &Mapping, field: Option<&str>) -> Option<String> {
    let field = field?.trim_start_matches('/').replace('/', ".");
    let reads = mapping.reads();
    let uses = |column: &str| reads.iter().filter(|(_, c)| c == column).count();
    reads
        .iter()
        .filter(|(to, _)| {
            field == *to
                || field.starts_with(&format!("{to}."))
                || to.starts_with(&format!("{field}."))
        })
        .min_by_key(|(_, column)| uses(column))
        .map(|(_, column)| column.clone())
        .or(Some(field))
}
