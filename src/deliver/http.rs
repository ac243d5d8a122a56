//! What every HTTP destination shares: one pooled client per destination, secrets read
//! from the environment or a file, and failures sorted into the DESIGN.md error classes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use reqwest::{RequestBuilder, Response};

use super::webhook::{classify_status, parse_retry_after};
use crate::error::{GatewayError, Result, Stage};

pub struct Http {
    name: String,
    pub client: reqwest::Client,
    timeout: Duration,
}

impl Http {
    pub fn new(name: &str, connect_timeout: Duration, timeout: Duration) -> Result<Http> {
        // One client per destination: keeps its connections alive between deliveries.
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("clw-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GatewayError::permanent(Stage::Config, format!("HTTP client: {e}")))?;
        Ok(Http {
            name: name.to_string(),
            client,
            timeout,
        })
    }

    /// Sends; Ok only for a 2xx. Errors name the destination and the host, never the body.
    pub async fn send(&self, request: RequestBuilder, host: &str) -> Result<Response> {
        let resp = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("no answer within {}s", self.timeout.as_secs_f32())
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            };
            GatewayError::transient(Stage::Deliver, format!("{} ({host}): {what}", self.name))
        })?;
        let status = resp.status();
        match classify_status(status) {
            None => Ok(resp),
            Some(class) => Err(GatewayError::new(
                class,
                Stage::Deliver,
                format!("{} answered {}", self.name, status),
            )
            .with_retry_after(parse_retry_after(resp.headers(), SystemTime::now()))),
        }
    }
}

/// A destination URL from config; the error names the key.
pub fn parse_url(destination: &str, key: &str, url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|e| {
        GatewayError::invalid(
            Stage::Config,
            format!("destinations.{destination}.{key}"),
            format!("not a URL: {e}"),
        )
    })
}

/// A secret named by `<what>_env` (an environment variable) or `<what>_file` (a file,
/// e.g. a mounted secret). Errors name the config key, never the value.
pub fn read_secret(
    destination: &str,
    what: &str,
    env: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<Option<String>> {
    let key = |suffix: &str| format!("destinations.{destination}.{what}_{suffix}");
    match (env, file) {
        (Some(var), _) => std::env::var(var).map(Some).map_err(|_| {
            GatewayError::invalid(
                Stage::Config,
                key("env"),
                format!("environment variable {var} is not set"),
            )
        }),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| {
                GatewayError::invalid(
                    Stage::Config,
                    key("file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            }),
        (None, None) => Ok(None),
    }
}

/// A required secret.
pub fn require_secret(
    destination: &str,
    what: &str,
    env: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<String> {
    read_secret(destination, what, env, file)?.ok_or_else(|| {
        GatewayError::invalid(
            Stage::Config,
            format!("destinations.{destination}.{what}_env"),
            format!("is required (or {what}_file)"),
        )
    })
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
