//! Generic JSON webhook: POST with a bearer token and an Idempotency-Key.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use super::http::{Http, parse_url, read_secret};
use super::{Delivered, DeliveryRequest};
use crate::config::WebhookConfig;
use crate::error::{ErrorClass, Result};

pub struct WebhookDestination {
    url: reqwest::Url,
    token: Option<String>,
    http: Http,
}

impl WebhookDestination {
    pub fn new(name: &str, c: &WebhookConfig) -> Result<Self> {
        let url = parse_url(name, "url", &c.url)?;
        let token = read_secret(name, "token", c.token_env.as_deref(), c.token_file.as_ref())?;
        Ok(WebhookDestination {
            url,
            token,
            http: Http::new(name, c.connect_timeout, c.timeout)?,
        })
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        let mut r = self
            .http
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", req.idempotency_key)
            .header("X-Correlation-ID", req.message_id)
            .json(req.payload);
        if let Some(t) = &self.token {
            r = r.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = self.http.send(r, self.url.host_str().unwrap_or("")).await?;
        Ok(Delivered {
            status: Some(resp.status().as_u16()),
        })
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
