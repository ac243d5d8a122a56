//! The platform door: `POST /v1/events/{platform}` (one event, the platform's JSON) and
//! `POST /v1/uploads/{platform}` (a spreadsheet, one row per contact or outcome), on a
//! listener of its own. Each request is signed with the platform's HMAC-SHA256 secret
//! (`crate::secret::signing`: timestamp and signature headers, a replay window, constant-time
//! comparison), the headers checked before the body is read, the body bounded in size
//! and time, every request answered within a deadline (503 with Retry-After), and a
//! verified request remembered in the store so a second use is refused on any
//! instance. An event is mapped to the canonical event at the door, so a platform hears
//! about a malformed event at once (400, naming the field), and is answered 202 only
//! once it is durably queued (the broker confirmed it, or the spool file is synced).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::engine::metrics::{IngressLabels, Metrics};
use crate::error::Result;
use crate::flows::message_back::to_canonical;
use crate::flows::message_back::{MessageBackWiring, Platform};
use crate::mapping::Mapping;
use crate::model::message_back::MessageBack;
use crate::secret::seal::Origin;
use crate::secret::signing::{self, Offered, SignatureError};
use crate::sources::door::Door;
use crate::sources::shutdown::Shutdown;
use crate::store::Store;

pub struct State {
    platforms: BTreeMap<String, Arc<Platform>>,
    door: Arc<Door>,
    /// Where verified requests are remembered, so a second use is a replay on every
    /// instance.
    store: Store,
    window: i64,
    metrics: Metrics,
    max_body: usize,
    body_timeout: Duration,
    request_timeout: Duration,
    in_flight: Arc<Semaphore>,
    /// When the replay memory was last pruned (Unix seconds): at most once a minute,
    /// not on every request.
    pruned_at: std::sync::atomic::AtomicI64,
}

impl State {
    pub fn new(
        c: &IngressConfig,
        mb: &MessageBackWiring,
        door: Arc<Door>,
        store: Store,
        metrics: Metrics,
    ) -> Arc<State> {
        Arc::new(State {
            platforms: mb.platforms.clone(),
            door,
            store,
            window: c.replay_window.as_secs() as i64,
            metrics,
            max_body: c.max_body_bytes,
            body_timeout: c.body_timeout,
            request_timeout: c.request_timeout,
            in_flight: Arc::new(Semaphore::new(c.max_in_flight.max(1))),
            pruned_at: std::sync::atomic::AtomicI64::new(0),
        })
    }
}

pub fn router(state: Arc<State>) -> Router {
    // No body limit layer: each handler reads the body itself, after the platform and
    // the signature headers are checked, within max_body and body_timeout.
    Router::new()
        .route("/v1/events/{platform}", post(event))
        .route("/v1/uploads/{platform}", post(upload))
        .with_state(state)
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    limits: super::listener::Limits,
    shutdown: Shutdown,
) -> Result<()> {
    super::listener::serve(listener, router(state), limits, "ingress", shutdown).await
}

/// A refusal: its status and a JSON body naming the problem (never a value).
fn refuse(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"accepted": false, "field": field, "error": message.into()})),
    )
        .into_response()
}

/// 503 with Retry-After: nothing was taken; the platform sends it again later.
fn unavailable(why: &str) -> Response {
    let mut r = refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        format!("{why}; nothing was queued, send it again later"),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("30"),
    );
    r
}

/// What a door does with a request whose platform and signature held.
type Work =
    fn(Arc<State>, Arc<Platform>, Bytes) -> futures_util::future::BoxFuture<'static, Response>;

impl State {
    /// Counts a request under its platform's name — only a configured one: a name
    /// from a request never becomes a label (one would be a forged metric line, a
    /// million would fill memory).
    fn count(&self, platform: &str, outcome: &str) {
        let platform = if self.platforms.contains_key(platform) {
            platform
        } else {
            "unknown"
        };
        self.metrics
            .ingress
            .get_or_create(&IngressLabels {
                platform: platform.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    async fn prune_now_and_then(&self) {
        use std::sync::atomic::Ordering;
        let now = chrono::Utc::now().timestamp();
        let last = self.pruned_at.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .pruned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && let Err(e) = self.store.prune_replays().await
        {
            warn!(error = %e, "cannot prune the replay memory; trying again later");
        }
    }

    /// The platform and its signature headers, before the body is read: a refusal
    /// otherwise.
    fn admit(
        &self,
        platform: &str,
        headers: &HeaderMap,
        media: &str,
    ) -> std::result::Result<(Arc<Platform>, Offered), Box<Response>> {
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
        let now = chrono::Utc::now().timestamp();
        let offered = signing::offered(
            get(signing::TIMESTAMP_HEADER),
            get(signing::SIGNATURE_HEADER),
            now,
            self.window,
        )
        .map_err(|e| Box::new(signature_refused(e)))?;
        let ct = get(header::CONTENT_TYPE.as_str()).unwrap_or_default();
        let ct = ct.split(';').next().unwrap_or_default().trim();
        if !ct.eq_ignore_ascii_case(media) {
            return Err(Box::new(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("content-type"),
                format!("send {media}"),
            )));
        }
        let declared = get(header::CONTENT_LENGTH.as_str()).and_then(|l| l.parse::<usize>().ok());
        if declared.is_some_and(|l| l > self.max_body) {
            return Err(Box::new(too_large(self.max_body)));
        }
        Ok((p.clone(), offered))
    }

    /// A request through a door, answered within `request_timeout`: the platform and
    /// signature headers checked, then the body read (bounded in size and time); then,
    /// at most `max_in_flight` at once, its MAC verified once per secret and the request
    /// remembered so a second use is a replay — then `work`.
    async fn answer(
        self: Arc<Self>,
        platform: String,
        request: Request,
        media: &'static str,
        work: Work,
    ) -> Response {
        let deadline = self.request_timeout;
        let s = self.clone();
        let p = platform.clone();
        let answered = tokio::time::timeout(deadline, async move {
            let (head, body) = request.into_parts();
            let (platform, offered) = match s.admit(&p, &head.headers, media) {
                Ok(ok) => ok,
                Err(r) => {
                    s.count(&p, "refused");
                    return *r;
                }
            };
            let body = match read_body(body, s.max_body, s.body_timeout).await {
                Ok(b) => b,
                Err(r) => {
                    s.count(&p, "refused");
                    return r;
                }
            };
            // Reading bodies is bounded by the connection cap and the body timeout;
            // the work after it by this cap.
            let Ok(_slot) = s.in_flight.clone().try_acquire_owned() else {
                s.count(&p, "busy");
                return unavailable("the door is busy");
            };
            let secrets: Vec<&[u8]> = platform.secrets.iter().map(|k| k.as_bytes()).collect();
            let mac = match offered.matching(&secrets, &body) {
                Ok(mac) => mac,
                Err(e) => {
                    s.count(&p, "refused");
                    return signature_refused(e);
                }
            };
            let forget_at = (offered.timestamp + s.window + 1) * 1000;
            s.prune_now_and_then().await;
            match s
                .store
                .first_use(&platform.name, offered.timestamp, &mac, forget_at)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    s.count(&p, "refused");
                    return refuse(
                        StatusCode::CONFLICT,
                        Some(signing::SIGNATURE_HEADER),
                        "this signed request was already received (a replay); send a new request to resend",
                    );
                }
                Err(e) => {
                    warn!(platform = p, error = %e, "cannot check the request against the replay memory");
                    s.count(&p, "unavailable");
                    return unavailable("the gateway's store is not answering");
                }
            }
            let answer = work(s.clone(), platform.clone(), body).await;
            // Nothing was taken (refused, or not queued): the same signed request may be
            // sent again, and is not then a replay.
            let taken = matches!(
                answer.status(),
                StatusCode::ACCEPTED | StatusCode::UNPROCESSABLE_ENTITY
            );
            if !taken {
                let _ = s
                    .store
                    .forget_use(&platform.name, offered.timestamp, &mac)
                    .await;
            }
            answer
        })
        .await;
        answered.unwrap_or_else(|_| {
            self.count(&platform, "unavailable");
            unavailable("the request could not be answered in time")
        })
    }
}

fn signature_refused(e: SignatureError) -> Response {
    let header = match e {
        SignatureError::MissingTimestamp | SignatureError::BadTimestamp | SignatureError::Stale => {
            signing::TIMESTAMP_HEADER
        }
        _ => signing::SIGNATURE_HEADER,
    };
    refuse(StatusCode::UNAUTHORIZED, Some(header), e.describe())
}

fn too_large(max: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
        format!("the body is larger than {max} bytes"),
    )
}

/// The body, at most `max` bytes, read within `within`.
async fn read_body(
    body: Body,
    max: usize,
    within: Duration,
) -> std::result::Result<Bytes, Response> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => Ok(b),
        // Over the limit, or the client went away mid-body.
        Ok(Err(_)) => Err(too_large(max)),
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            None,
            "the body did not arrive in time",
        )),
    }
}

/// One event: checked, mapped, queued.
async fn event(
    AxState(s): AxState<Arc<State>>,
    Path(platform): Path<String>,
    request: Request,
) -> Response {
    s.answer(platform, request, "application/json", |s, p, body| {
        Box::pin(async move {
            let mapped = crate::intake::json::parse_bounded(&body)
                .and_then(|v| to_canonical(&p, &p.mapping, &v, &BTreeMap::new(), &s.metrics));
            match mapped {
                Ok(ev) => queue(&s, &p.name, ev).await,
                Err(e) => {
                    s.count(&p.name, "refused");
                    refuse(StatusCode::BAD_REQUEST, e.field.as_deref(), e.message)
                }
            }
        })
    })
    .await
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
            s.count(platform, "unavailable");
            unavailable("the event could not be queued")
        }
    }
}

/// A spreadsheet: every row checked and mapped; the good ones queued, each bad one
/// named by row and column. A row's id is a digest of its cells (or its `Event ID`
/// column), so uploading the same sheet again adds nothing twice.
async fn upload(
    AxState(s): AxState<Arc<State>>,
    Path(platform): Path<String>,
    request: Request,
) -> Response {
    s.answer(platform, request, "text/csv", |s, p, body| {
        Box::pin(async move { sheet(&s, &p, &body).await })
    })
    .await
}

async fn sheet(s: &State, p: &Platform, body: &[u8]) -> Response {
    let platform = p.name.as_str();
    let rows = match read_rows(body) {
        Ok(r) => r,
        Err(e) => {
            s.count(platform, "refused");
            return refuse(StatusCode::BAD_REQUEST, None, e);
        }
    };
    let mut errors = Vec::new();
    let mut events = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        // Row 1 is the header line.
        let line = n + 2;
        let mut constants = BTreeMap::new();
        constants.insert("row_id".to_string(), row_id(platform, row));
        if let Some(prog) = &p.programme {
            constants.insert("programme".to_string(), prog.clone());
        }
        match to_canonical(p, &p.upload_mapping, row, &constants, &s.metrics) {
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
        let r = queue(s, platform, ev).await;
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

/// `[ingress]`: the signed HTTP door for platform events (`POST /v1/events/{platform}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Off unless enabled: its own listener, apart from /metrics.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Larger request bodies are refused (413) before they are read in full.
    pub max_body_bytes: usize,
    /// How far X-CLW-Timestamp may be from now, either way.
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
    /// A connection that has not sent a request's headers within this is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request body not read in full within this is refused (408).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A request not answered within this is answered 503 with Retry-After (a broker
    /// or store that does not answer).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
    /// Requests being worked on at once; one more is answered 503 with Retry-After.
    pub max_in_flight: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            max_body_bytes: 256 * 1024,
            replay_window: Duration::from_secs(300),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_in_flight: 64,
        }
    }
}
