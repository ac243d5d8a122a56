//! The MESH API as NHS England's MESH client rules ask a client to use it: a fresh
//! single-use `NHSMESH` authorisation token on every request; a handshake at start and
//! then at most once a day; the inbox listed (at most 500 ids a time: a full page is read
//! again at once), each message read and then acknowledged; the outbox `POST` made once
//! and never retried by the client (an unknown outcome is the journal's to park).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::super::http::{Http, host_of};
use crate::error::{GatewayError, Result, Stage};

/// How long one handshake stands: MESH asks for one a day, at most.
pub const HANDSHAKE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The most ids one inbox listing returns: a full page means more are waiting.
pub const INBOX_PAGE: usize = 500;

/// ITK3's limit on one message (the recommended maximum every receiver accepts).
pub const MAX_MESSAGE_BYTES: usize = 5 * 1024 * 1024;

/// `NHSMESH mailbox:nonce:count:time:hmac`: HMAC-SHA256 with the shared key over
/// `mailbox:nonce:count:password:time` (time `yyyyMMddHHmm`, UTC).
pub fn auth_header(
    mailbox: &str,
    password: &str,
    key: &str,
    nonce: &str,
    count: u32,
    time: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{mailbox}:{nonce}:{count}:{password}:{time}").as_bytes());
    format!(
        "NHSMESH {mailbox}:{nonce}:{count}:{time}:{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A header value: printable, no line breaks.
pub fn sanitise(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(500).collect()
}

/// The refusal of a message over ITK3's 5 MB, made before any request.
fn over_limit(name: &str, len: usize) -> Option<GatewayError> {
    (len > MAX_MESSAGE_BYTES).then(|| {
        GatewayError::permanent(
            Stage::Deliver,
            format!(
                "{name}: the ITK3 message is {:.1} MB, over ITK3's 5 MB limit (GP systems may \
                 refuse it, code 20015): nothing was sent; shorten what the event carries",
                len as f64 / (1024.0 * 1024.0)
            ),
        )
    })
}

/// An outbox `POST` that failed: a server error or timeout status may come after MESH
/// stored the message (a proxy's 502 or 504 among them), so its outcome is unknown — the
/// journal parks it for a person (or, with `local_id = "event"`, MESH's tracking answers
/// on the next attempt) and it is never posted again blindly. A refusal (4xx) made nothing.
fn posted(mut e: GatewayError) -> GatewayError {
    if e.status.is_some_and(|s| s >= 500 || s == 408) {
        e.sent = true;
        e.message = format!(
            "{}: MESH may have taken the message, so it is not posted again automatically",
            e.message
        );
    }
    e
}

/// One MESH mailbox's client.
pub struct Mesh {
    pub name: String,
    pub base: Url,
    pub http: Http,
    pub mailbox: String,
    pub password: String,
    pub shared_key: String,
    /// When the last handshake succeeded (None: not yet).
    handshaken: tokio::sync::Mutex<Option<Instant>>,
    /// Handshakes made by this process (shown in logs; a test counts them too).
    pub handshakes: std::sync::atomic::AtomicU64,
}

/// One message as the inbox holds it: its MESH headers and body.
pub struct InboxMessage {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl InboxMessage {
    /// A MESH header (`mex-…`, lower case), sanitised.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| sanitise(v))
            .filter(|v| !v.is_empty())
    }
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(alias = "messageID")]
    message_id: String,
}

/// What an outbox `POST` carries (its MESH headers and body).
pub struct Outgoing<'a> {
    pub to: String,
    pub workflow: &'a str,
    pub local_id: &'a str,
    pub subject: Option<String>,
    pub content_type: &'a str,
    pub file_name: String,
    pub body: Vec<u8>,
}

impl Mesh {
    pub fn new(
        name: &str,
        base: Url,
        http: Http,
        mailbox: &str,
        password: String,
        shared_key: String,
    ) -> Mesh {
        Mesh {
            name: name.to_string(),
            base,
            http,
            mailbox: mailbox.to_ascii_uppercase(),
            password,
            shared_key,
            handshaken: tokio::sync::Mutex::new(None),
            handshakes: Default::default(),
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/messageexchange/{}{path}", self.mailbox));
        u
    }

    /// A request with its own single-use token (a fresh nonce every time; MESH refuses a
    /// token seen before).
    fn authorised(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let nonce = uuid::Uuid::new_v4().to_string();
        let time = chrono::Utc::now().format("%Y%m%d%H%M").to_string();
        r.header(
            "Authorization",
            auth_header(
                &self.mailbox,
                &self.password,
                &self.shared_key,
                &nonce,
                0,
                &time,
            ),
        )
        .header("Accept", "application/vnd.mesh.v2+json")
    }

    fn host(&self) -> String {
        host_of(&self.base)
    }

    /// The handshake MESH asks of every client: made at start (the first use) and then
    /// again only once a day has passed; concurrent callers wait for the one in progress.
    pub async fn handshake(&self) -> Result<()> {
        let mut last = self.handshaken.lock().await;
        if last.is_some_and(|t| t.elapsed() < HANDSHAKE_EVERY) {
            return Ok(());
        }
        let r = self
            .authorised(self.http.client.post(self.url("")))
            .header(
                "Mex-ClientVersion",
                concat!("clw-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .header("Mex-OSName", std::env::consts::OS)
            .header("Mex-OSVersion", "unknown");
        self.http
            .send(r, &self.host())
            .await
            .map_err(|mut e| {
                e.message = format!("MESH handshake: {}", e.message);
                e.sent = false;
                e
            })?;
        self.handshakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(destination = self.name, "MESH handshake made");
        *last = Some(Instant::now());
        Ok(())
    }

    /// Whether a message with this local id is in our outbox already (tracking).
    pub async fn already_sent(&self, local_id: &str) -> Result<Option<String>> {
        let r = self.authorised(
            self.http
                .client
                .get(self.url(&format!("/outbox/tracking/{local_id}"))),
        );
        let resp = self
            .http
            .send_raw(r, &self.host())
            .await
            .map_err(|mut e| {
                e.sent = false;
                e
            })?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            // Several with this id: it went (more than once, before this journal).
            StatusCode::MULTIPLE_CHOICES => Ok(Some("(several)".into())),
            s if s.is_success() => {
                let body: Value =
                    serde_json::from_slice(&self.http.body(resp).await?).unwrap_or(Value::Null);
                Ok(Some(
                    ["messageId", "message_id"]
                        .iter()
                        .find_map(|k| body.get(*k).and_then(Value::as_str))
                        .unwrap_or("(tracked)")
                        .to_string(),
                ))
            }
            _ => Err(self.http.check(resp).err().unwrap_or_else(|| {
                GatewayError::transient(Stage::Deliver, format!("{}: tracking failed", self.name))
            })),
        }
    }

    /// Posts one message to the outbox, once: the MESH message id it got. Over ITK3's
    /// 5 MB it is refused before any request, naming the size ([`over_limit`]).
    pub async fn post(&self, m: Outgoing<'_>) -> Result<String> {
        if let Some(e) = over_limit(&self.name, m.body.len()) {
            return Err(e);
        }
        let mut r = self
            .authorised(self.http.client.post(self.url("/outbox")))
            .header("Mex-From", &self.mailbox)
            .header("Mex-To", m.to)
            .header("Mex-WorkflowID", m.workflow)
            .header("Mex-FileName", m.file_name)
            .header("Mex-LocalID", m.local_id)
            .header(CONTENT_TYPE, m.content_type);
        if let Some(subject) = m.subject {
            r = r.header("Mex-Subject", sanitise(&subject));
        }
        let resp = self
            .http
            .send(r.body(m.body), &self.host())
            .await
            .map_err(posted)?;
        let answer = self.http.body(resp).await?;
        serde_json::from_slice::<SendAnswer>(&answer)
            .map(|a| a.message_id)
            .map_err(|_| {
                let mut e = GatewayError::transient(
                    Stage::Deliver,
                    format!(
                        "{}: MESH accepted the message without a message id",
                        self.name
                    ),
                );
                e.sent = true;
                e
            })
    }

    /// The inbox's message ids (at most [`INBOX_PAGE`]).
    pub async fn inbox(&self) -> Result<Vec<String>> {
        let r = self.authorised(self.http.client.get(self.url("/inbox")));
        let resp = self.http.send(r, &self.host()).await?;
        let body: Value = serde_json::from_slice(&self.http.body(resp).await?).map_err(|e| {
            GatewayError::transient(Stage::Deliver, format!("{}: inbox list: {e}", self.name))
        })?;
        Ok(body
            .get("messages")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// One inbox message, headers and body (a report's body is empty).
    pub async fn read(&self, id: &str) -> Result<InboxMessage> {
        let r = self.authorised(self.http.client.get(self.url(&format!("/inbox/{id}"))));
        let resp = self.http.send(r, &self.host()).await?;
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Ok(InboxMessage {
            headers,
            body: self.http.body(resp).await?.to_vec(),
        })
    }

    /// Acknowledges an inbox message: MESH lists it no more.
    pub async fn acknowledge(&self, id: &str) -> Result<()> {
        let path = format!("/inbox/{id}/status/acknowledged");
        let r = self.authorised(self.http.client.put(self.url(&path)));
        self.http.send(r, &self.host()).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MESH's client rule: `POST /outbox` is never retried. A server error or timeout
    /// status leaves the outcome unknown (parked, or asked of MESH's tracking), a refusal
    /// leaves it free to send.
    #[test]
    fn a_failed_outbox_post_is_unknown_unless_refused() {
        let answered = |status: u16| {
            let mut e = GatewayError::transient(Stage::Deliver, "gp-mesh answered");
            e.status = Some(status);
            posted(e)
        };
        for status in [500, 502, 503, 504, 408] {
            let e = answered(status);
            assert!(e.sent, "{status}: unknown");
            assert!(e.message.contains("not posted again"), "{}", e.message);
        }
        for status in [400, 403, 429] {
            assert!(!answered(status).sent, "{status}: nothing made");
        }
    }

    #[test]
    fn a_message_over_5_mb_is_refused_naming_its_size() {
        let e = over_limit("gp-mesh", 6 * 1024 * 1024).unwrap();
        assert_eq!(e.class, crate::error::ErrorClass::Permanent, "{e}");
        assert!(!e.sent, "nothing left");
        assert!(e.message.contains("6.0 MB") && e.message.contains("5 MB"), "{}", e.message);
        assert!(over_limit("gp-mesh", MAX_MESSAGE_BYTES).is_none(), "the limit itself is allowed");
    }

    #[test]
    fn the_authorisation_header_matches_the_mesh_test_vector() {
        // mailbox:nonce:count:password:time, key TestKey (mesh-sandbox / mesh-client).
        let h = auth_header(
            "X26ABC1",
            "password",
            "TestKey",
            "2c001608-5f09-4840-9611-bea43e666a30",
            1,
            "201511201038",
        );
        assert_eq!(
            h,
            "NHSMESH X26ABC1:2c001608-5f09-4840-9611-bea43e666a30:1:201511201038:\
             9712e9dd1aa836431fa50134c333fceda28dc7e380675d9b0d359477f56d034a"
        );
    }
}
