//! What every HTTP destination shares: one pooled client per destination built from
//! the shared HTTP keys (timeouts, extra CA roots, a client certificate, a proxy),
//! endpoint URLs that must be https (http only to a loopback address), bodies read up
//! to a limit, and failures sorted into the error classes.

pub mod auth;

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

use super::Build;
use super::terms::HttpOptions;
use crate::error::{ErrorClass, GatewayError, Result, Stage};

pub struct Http {
    name: String,
    pub client: reqwest::Client,
    timeout: Duration,
    max_response_bytes: usize,
}

impl Http {
    /// Builds the client; problems name the `tls.*` / `proxy` key.
    pub fn build(b: &mut Build<'_>, o: HttpOptions<'_>) -> Option<Http> {
        if o.timeout.is_zero() {
            b.problem("timeout", "must be above zero");
        }
        // One client per destination keeps its connections alive between deliveries.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(o.connect_timeout)
            .timeout(o.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("clw-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &o.tls.ca_file {
            match read_file(path).and_then(|pem| {
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())
            }) {
                Ok(certs) if certs.is_empty() => {
                    b.problem("tls.ca_file", "holds no PEM certificate");
                }
                Ok(certs) => {
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                Err(e) => b.problem("tls.ca_file", e),
            }
        }
        match (&o.tls.client_cert_file, &o.tls.client_key_file) {
            (Some(cert), Some(key)) => {
                match read_file(cert).and_then(|mut pem| {
                    pem.push(b'\n');
                    pem.extend(read_file(key)?);
                    reqwest::Identity::from_pem(&pem).map_err(|e| e.to_string())
                }) {
                    Ok(id) => builder = builder.identity(id),
                    Err(e) => b.problem("tls.client_cert_file", e),
                }
            }
            (Some(_), None) => b.problem("tls.client_key_file", "is needed with client_cert_file"),
            (None, Some(_)) => b.problem("tls.client_cert_file", "is needed with client_key_file"),
            (None, None) => {}
        }
        builder = match o.proxy {
            Some(p) => match Url::parse(p)
                .map_err(|e| e.to_string())
                .and_then(|u| reqwest::Proxy::all(u).map_err(|e| e.to_string()))
            {
                Ok(proxy) => builder.proxy(proxy),
                Err(e) => {
                    b.problem("proxy", format!("not a proxy URL: {e}"));
                    builder
                }
            },
            // Not HTTPS_PROXY from the environment: data goes only where configured.
            None => builder.no_proxy(),
        };
        match builder.build() {
            Ok(client) => Some(Http {
                name: b.name.to_string(),
                client,
                timeout: o.timeout,
                max_response_bytes: o.max_response_bytes,
            }),
            Err(e) => {
                b.problem("tls", format!("cannot build the HTTP client: {e}"));
                None
            }
        }
    }

    /// Sends; Ok with the response whatever its status. Errors name the destination
    /// and host, never a body.
    pub async fn send_raw(&self, request: RequestBuilder, host: &str) -> Result<Response> {
        request.send().await.map_err(|e| {
            let what = if e.is_connect() {
                "cannot connect"
            } else if e.is_timeout() {
                &format!("no answer within {}s", self.timeout.as_secs_f32())
            } else {
                "request failed"
            };
            let mut err =
                GatewayError::transient(Stage::Deliver, format!("{} ({host}): {what}", self.name));
            // A request that may have reached the server leaves its effect unknown.
            err.sent = !e.is_connect();
            err
        })
    }

    /// Sends; Ok only for a 2xx.
    pub async fn send(&self, request: RequestBuilder, host: &str) -> Result<Response> {
        let resp = self.send_raw(request, host).await?;
        self.check(resp)
    }

    /// A 2xx response, or the error its status means.
    pub fn check(&self, resp: Response) -> Result<Response> {
        let status = resp.status();
        match classify_status(status) {
            None => Ok(resp),
            Some(class) => {
                let mut e = GatewayError::new(
                    class,
                    Stage::Deliver,
                    format!("{} answered {}", self.name, status),
                )
                .with_retry_after(parse_retry_after(resp.headers(), SystemTime::now()));
                e.status = Some(status.as_u16());
                Err(e)
            }
        }
    }

    /// The body, read up to the destination's `max_response_bytes`.
    pub async fn body(&self, mut resp: Response) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|_| {
                let mut e = GatewayError::transient(
                    Stage::Deliver,
                    format!("{}: the answer broke off", self.name),
                );
                e.sent = true;
                e
            })?;
            let Some(chunk) = chunk else { return Ok(out) };
            if out.len() + chunk.len() > self.max_response_bytes {
                let mut e = GatewayError::transient(
                    Stage::Deliver,
                    format!(
                        "{}: the answer is over {} bytes (max_response_bytes)",
                        self.name, self.max_response_bytes
                    ),
                );
                e.sent = true;
                return Err(e);
            }
            out.extend_from_slice(&chunk);
        }
    }
}

fn read_file(path: &std::path::Path) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// An endpoint URL from config: https, or http to a loopback address only (tests, a
/// sidecar). Problems name `key`.
pub fn endpoint(b: &mut Build<'_>, key: &str, url: &str) -> Option<Url> {
    match Url::parse(url) {
        Ok(u) if u.scheme() == "https" => Some(u),
        Ok(u) if u.scheme() == "http" && is_loopback(&u) => Some(u),
        Ok(u) if u.scheme() == "http" => {
            b.problem(
                key,
                "must be https:// (plain http:// is allowed only to a loopback address)",
            );
            None
        }
        Ok(_) => {
            b.problem(key, "must be an https:// URL");
            None
        }
        Err(e) => {
            b.problem(key, format!("not a URL: {e}"));
            None
        }
    }
}

pub fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The host part of a URL, for error messages (never a path: paths can carry values).
pub fn host_of(u: &Url) -> String {
    u.host_str().unwrap_or("").to_string()
}

/// None for success; else the error class of an HTTP status: 408, 409 (a receiver
/// that honours Idempotency-Key still processing the first copy), 429 and 5xx are
/// transient, any other non-2xx is permanent.
pub fn classify_status(status: StatusCode) -> Option<ErrorClass> {
    if status.is_success() {
        None
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::CONFLICT
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

/// The form fields of a mapped payload, as text.
pub fn form_fields(fields: &[(String, serde_json::Value)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
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
            classify_status(StatusCode::CONFLICT),
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
        // A date in the past means "now".
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, past.parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
    }

    #[test]
    fn loopback_hosts() {
        for (u, want) in [
            ("http://127.0.0.1:8080/x", true),
            ("http://127.9.9.9/x", true),
            ("http://[::1]:80/x", true),
            ("http://localhost/x", true),
            ("http://LOCALHOST:1/x", true),
            ("http://10.0.0.1/x", false),
            ("http://example.org/x", false),
            ("http://localhost.example.org/x", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(u).unwrap()), want, "{u}");
        }
    }
}
