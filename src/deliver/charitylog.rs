//! Charitylog / Dizions: `PUT /v2/external_referral`, x-www-form-urlencoded, with the
//! Source, Org and User key headers (wiki.dizions.co.uk "API external referrals",
//! "API Authentication"). Referrals land in the External Referral Manager, where a
//! person imports them and removes duplicates; the API takes no idempotency key, so a
//! retry after a lost answer can stage a second copy for that person to discard.

use super::http::{Http, form_fields, parse_url, require_secret};
use super::{Delivered, DeliveryRequest};
use crate::config::CharitylogConfig;
use crate::error::Result;

pub struct CharitylogDestination {
    url: reqwest::Url,
    source: String,
    org: String,
    user: String,
    http: Http,
}

impl CharitylogDestination {
    pub fn new(name: &str, c: &CharitylogConfig) -> Result<Self> {
        let url = parse_url(name, "url", &c.url)?;
        let secret = |what: &str, env: &Option<String>, file| {
            require_secret(name, what, env.as_deref(), file)
        };
        Ok(CharitylogDestination {
            url,
            source: secret("source_key", &c.source_key_env, c.source_key_file.as_ref())?,
            org: secret("org_key", &c.org_key_env, c.org_key_file.as_ref())?,
            user: secret("user_key", &c.user_key_env, c.user_key_file.as_ref())?,
            http: Http::new(name, c.connect_timeout, c.timeout)?,
        })
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        let r = self
            .http
            .client
            .put(self.url.clone())
            .header("Source", &self.source)
            .header("Org", &self.org)
            .header("User", &self.user)
            // Sets Content-Type: application/x-www-form-urlencoded.
            .form(&form_fields(req.fields));
        let resp = self.http.send(r, self.url.host_str().unwrap_or("")).await?;
        Ok(Delivered {
            status: Some(resp.status().as_u16()),
        })
    }
}
