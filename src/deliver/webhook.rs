//! Generic JSON webhook: POST with a bearer token and an Idempotency-Key.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use super::{Delivered, DeliveryRequest};
use crate::config::WebhookConfig;
use crate::error::{ErrorClass, GatewayError, Result, Stage};

pub struct WebhookDestination {
    name: String,
    url: reqwest::Url,
    token: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl WebhookDestination {
    pub fn new(name: &str, c: &WebhookConfig) -> Result<Self> {
        let key = |k: &str| format!("destinations.{name}.{k}");
        let url = reqwest::Url::parse(&c.url).map_err(|e| {
            GatewayError::invalid(Stage::Config, key("url"), format!("not a URL: {e}"))
        })?;
        let token = match (&c.token_env, &c.token_file) {
            (Some(var), _) => Some(std::env::var(var).map_err(|_| {
                GatewayError::invalid(
                    Stage::Config,
                    key("token_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        GatewayError::invalid(
                            Stage::Config,
                            key("token_file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        // One client per destination: keeps its connections alive between deliveries.
        let client = reqwest::Client::builder()
            .connect_timeout(c.connect_timeout)
            .timeout(c.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("clw-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GatewayError::permanent(Stage::Config, format!("HTTP client: {e}")))?;
        Ok(WebhookDestination {
            name: name.to_string(),
            url,
            token,
            timeout: c.timeout,
            client,
        })
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        let mut r = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", req.idempotency_key)
            .header("X-Correlation-ID", req.message_id)
            .json(req.payload);
        if let Some(t) = &self.token {
            r = r.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = r.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("no answer within {}s", self.timeout.as_secs_f32())
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            };
            GatewayError::transient(
                Stage::Deliver,
                format!(
                    "{} ({}): {what}",
                    self.name,
                    self.url.host_str().unwrap_or("")
                ),
            )
        })?;
        let status = resp.status();
        match classify_status(status) {
            None => Ok(Delivered {
                status: Some(status.as_u16()),
            }),
            Some(class) => Err(GatewayError::new(
                class,
                Stage::Deliver,
                format!("{} answered {}", self.name, status),
            )
            .with_retry_after(parse_retry_after(resp.headers(), SystemTime::now()))),
        }
    }
}

/// None for success; else the error class of an HTTP status (DESIGN.md error taxonomy):
/// 408, 429 and 5xx are transient, any other non-2xx is permanent.
pub fn classify_status(status: StatusCode) -> Option<ErrorClass> {
    if status.is_success() {
        None
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Some(ErrorClass::Transient)
    } else {
        Some(ErrorClass::Permanent)
    }
}

/// Retry-After as delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(StatusCode::OK), None);
        assert_eq!(classify_status(StatusCode::CREATED), None);
        assert_eq!(
            classify_status(StatusCode::BAD_REQUEST),
            Some(ErrorClass::Permanent)
        );
        assert_eq!(
            classify_status(StatusCode::UNAUTHORIZED),
            Some(ErrorClass::Permanent)
        );
        assert_eq!(
            classify_status(StatusCode::REQUEST_TIMEOUT),
            Some(ErrorClass::Transient)
        );
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS),
            Some(ErrorClass::Transient)
        );
        assert_eq!(
            classify_status(StatusCode::SERVICE_UNAVAILABLE),
            Some(ErrorClass::Transient)
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, later.parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), None);
    }
}
