//! How an HTTP destination proves who is calling: a static bearer token, or OAuth2
//! client credentials (RFC 6749 §4.4) with the token cached, refreshed before it
//! expires, and refreshed once more when the destination answers 401.

use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{Http, endpoint, host_of};
use crate::deliver::Build;
use crate::error::{GatewayError, Result, Stage};
use crate::secret::Secret;

/// `[destinations.NAME.oauth2]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The authorisation server's token endpoint.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Space-separated scopes to ask for.
    pub scope: Option<String>,
    /// Some servers (e.g. Azure AD v1, Auth0) want an `audience` / `resource` too.
    pub audience: Option<String>,
    /// How the client authenticates to the token endpoint: `basic` (HTTP Basic, the
    /// RFC's default) or `post` (client_id and client_secret in the form).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Fetch a new token this long before the current one expires.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Basic,
    Post,
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

pub enum Auth {
    None,
    Bearer(String),
    // Boxed: holds its config and token cache.
    OAuth2(Box<OAuth2>),
}

impl Auth {
    /// From a kind's `token` and `oauth2` keys (at most one of them).
    pub fn build(
        b: &mut Build<'_>,
        token: Option<&Secret>,
        oauth2: Option<&OAuth2Config>,
    ) -> Option<Auth> {
        match (token, oauth2) {
            (Some(_), Some(_)) => {
                b.problem("token", "set token or oauth2, not both");
                None
            }
            (Some(t), None) => b.secret("token", t).map(Auth::Bearer),
            (None, Some(o)) => {
                let url = endpoint(b, "oauth2.token_url", &o.token_url);
                let secret = b.secret("oauth2.client_secret", &o.client_secret);
                if o.client_id.is_empty() {
                    b.problem("oauth2.client_id", "must not be empty");
                }
                Some(Auth::OAuth2(Box::new(OAuth2 {
                    url: url?,
                    secret: secret?,
                    config: o.clone(),
                    token: Mutex::new(None),
                })))
            }
            (None, None) => Some(Auth::None),
        }
    }

    /// Sends the request `make` builds, authorised; after a 401 with an OAuth2 token,
    /// fetches a fresh token and sends once more (the 401 means nothing was done).
    pub async fn send(
        &self,
        http: &Http,
        host: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let resp = http.send_raw(self.apply(http, make()).await?, host).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Auth::OAuth2(o) = self else {
            return Ok(resp);
        };
        o.forget().await;
        http.send_raw(self.apply(http, make()).await?, host).await
    }

    async fn apply(&self, http: &Http, r: RequestBuilder) -> Result<RequestBuilder> {
        Ok(match self {
            Auth::None => r,
            Auth::Bearer(t) => r.header(AUTHORIZATION, format!("Bearer {t}")),
            Auth::OAuth2(o) => r.header(AUTHORIZATION, format!("Bearer {}", o.token(http).await?)),
        })
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub struct OAuth2 {
    url: Url,
    secret: String,
    config: OAuth2Config,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: String,
    /// When to fetch the next one (None: until a 401).
    refresh_at: Option<Instant>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: String,
}

impl OAuth2 {
    /// The cached token, or a new one. Callers arriving together share one fetch.
    pub async fn token(&self, http: &Http) -> Result<String> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && t.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch(http).await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    async fn forget(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch(&self, http: &Http) -> Result<Token> {
        let c = &self.config;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = &c.scope {
            form.push(("scope", s));
        }
        if let Some(a) = &c.audience {
            form.push(("audience", a));
        }
        let mut r = http.client.post(self.url.clone());
        match c.client_auth {
            // RFC 6749 §2.3.1: both form-urlencoded before they are joined and encoded.
            ClientAuth::Basic => {
                r = r.basic_auth(form_encode(&c.client_id), Some(form_encode(&self.secret)))
            }
            ClientAuth::Post => {
                form.push(("client_id", &c.client_id));
                form.push(("client_secret", &self.secret));
            }
        }
        let host = host_of(&self.url);
        let resp = http.send_raw(r.form(&form), &host).await.map_err(|mut e| {
            e.message = format!("token endpoint: {}", e.message);
            // Asking for a token has no effect on the destination.
            e.sent = false;
            e
        })?;
        let status = resp.status();
        let body = http.body(resp).await.map_err(|mut e| {
            e.sent = false;
            e
        })?;
        if !status.is_success() {
            // RFC 6749 §5.2 error codes (invalid_client, ...) name no patient data.
            let code = serde_json::from_slice::<TokenRefusal>(&body)
                .map(|r| format!(" ({})", r.error.chars().take(40).collect::<String>()))
                .unwrap_or_default();
            let mut e = GatewayError::new(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    crate::error::ErrorClass::Transient
                } else {
                    crate::error::ErrorClass::Permanent
                },
                Stage::Deliver,
                format!("token endpoint {host} answered {status}{code}"),
            );
            e.status = Some(status.as_u16());
            return Err(e);
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            GatewayError::transient(
                Stage::Deliver,
                format!("token endpoint {host} answered without an access_token"),
            )
        })?;
        if let Some(t) = &answer.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(GatewayError::permanent(
                Stage::Deliver,
                format!(
                    "token endpoint {host} issued a {t:?} token; only bearer tokens are supported"
                ),
            ));
        }
        let refresh_at = answer.expires_in.map(|secs| {
            let life = Duration::from_secs(secs);
            // Leave `refresh_before` of margin, or half the lifetime for short-lived tokens.
            let margin = c.refresh_before.min(life / 2);
            Instant::now() + (life - margin)
        });
        Ok(Token {
            value: answer.access_token,
            refresh_at,
        })
    }
}
