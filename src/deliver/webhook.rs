//! Generic JSON webhook: POST the payload (the PRSB referral JSON unless another json
//! mapping is named) with an `Idempotency-Key` that is the same on every attempt,
//! authenticated by a bearer token or OAuth2 client credentials, optionally signed
//! with HMAC-SHA256 (see `crate::secret::signing` for what a receiver checks).

use futures_util::future::BoxFuture;
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;

use super::http::auth::{Auth, OAuth2Config};
use super::http::{Http, endpoint, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::secret::Secret;
use crate::secret::signing;

pub use super::http::{classify_status, parse_retry_after};

pub const FLOW: Flow = Flow::Referral;

/// Every later message: an update carries the referral with a `lifecycle` object, the
/// others only the notice (docs/webhook-receivers.md).
pub const LATER: &[crate::model::lifecycle::Change] = super::EVERY_LATER;

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// HTTPS POST of the JSON body; a bearer token or OAuth2, and a signature when set.
pub fn channel(c: &Config) -> super::channel::Channel {
    let ch = super::channel::Channel::http("POST (JSON)", &c.url, c.http())
        .bearer(c.token.as_ref(), c.oauth2.as_ref());
    match &c.signing {
        Some(s) => ch
            .auth(match &s.key_id {
                Some(k) => format!("HMAC-SHA256 request signature (key id {k})"),
                None => "HMAC-SHA256 request signature".into(),
            })
            .credential("signing.secret", &s.secret),
        None => ch,
    }
}

destination_config! { @http
    /// `kind = "webhook"`
    pub struct Config {
        pub url: String,
        /// A json mapping producing the body (default: the PRSB referral JSON).
        #[serde(default = "default_mapping")]
        pub mapping: String,
        /// A static bearer token.
        pub token: Option<Secret>,
        /// OAuth2 client credentials instead of a static token.
        pub oauth2: Option<OAuth2Config>,
        /// Sign every request with HMAC-SHA256.
        pub signing: Option<SigningConfig>,
    }
}

fn default_mapping() -> String {
    "prsb-referral".into()
}

/// `[destinations.NAME.signing]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    pub secret: Secret,
    /// Sent as X-CLW-Key-Id so the receiver knows which secret to check with.
    pub key_id: Option<String>,
}

struct Signer {
    secret: String,
    key_id: Option<String>,
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    let url = endpoint(b, "url", &c.url);
    let http = Http::build(b, c.http());
    let auth = Auth::build(b, c.token.as_ref(), c.oauth2.as_ref());
    let signer = match &c.signing {
        Some(s) => {
            if let Some(k) = &s.key_id
                && (k.is_empty() || !k.chars().all(|ch| ch.is_ascii_graphic()))
            {
                b.problem("signing.key_id", "must be printable ASCII without spaces");
            }
            Some(Signer {
                secret: b.secret("signing.secret", &s.secret)?,
                key_id: s.key_id.clone(),
            })
        }
        None => None,
    };
    Some(Box::new(Webhook {
        url: url?,
        http: http?,
        auth: auth?,
        signer,
    }))
}

struct Webhook {
    url: Url,
    http: Http,
    auth: Auth,
    signer: Option<Signer>,
}

impl Sink for Webhook {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let payload = super::payload::with_lifecycle(job);
            // Signed bytes must be the bytes sent: serialise once.
            let body = serde_json::to_vec(&payload)
                .map_err(|e| GatewayError::permanent(Stage::Deliver, format!("payload: {e}")))?;
            let host = host_of(&self.url);
            let make = || {
                let mut r = self
                    .http
                    .client
                    .post(self.url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header("Idempotency-Key", job.idempotency_key)
                    .header("X-Correlation-ID", job.message_id)
                    .header("X-CLW-Referral-ID", job.referral_id())
                    .header(
                        "X-CLW-Event",
                        format!(
                            "referral.{}",
                            job.operation
                                .map(|o| o.change.event_name())
                                .unwrap_or("created")
                        ),
                    );
                if let Some(s) = &self.signer {
                    let now = chrono::Utc::now().timestamp();
                    r = r.header(signing::TIMESTAMP_HEADER, now.to_string()).header(
                        signing::SIGNATURE_HEADER,
                        signing::sign(s.secret.as_bytes(), now, &body),
                    );
                    if let Some(k) = &s.key_id {
                        r = r.header(signing::KEY_ID_HEADER, k);
                    }
                }
                r.body(body.clone())
            };
            let resp = self
                .http
                .check(self.auth.send(&self.http, &host, make).await?)?;
            Ok(Sent {
                status: Some(resp.status().as_u16()),
            })
        })
    }
}

