//! Charitylog / Dizions: `PUT /v2/external_referral`, x-www-form-urlencoded, with the
//! Source, Org and User key headers (wiki.dizions.co.uk "API external referrals",
//! "API Authentication"). Referrals land in the External Referral Manager, where a
//! person imports them and removes duplicates. The API takes no idempotency key: the
//! PUT is journalled in the store, so it is never repeated once it may have arrived;
//! a PUT whose answer was lost is an unknown outcome for a person to check.

use futures_util::future::BoxFuture;
use reqwest::Url;

use super::http::{Http, endpoint, form_fields, host_of};
use super::terms::{HasHttp, destination_config};
use super::{Build, Job, Sent, Sink};
use crate::error::Result;
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::secret::Secret;

pub const FLOW: Flow = Flow::Referral;

/// None: its external referral form takes new referrals only; a later message is held
/// for a person, who makes the change in Charitylog.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// It keeps no files of its own.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// The form PUT, with the three keys in headers as `Charitylog::send` sends them.
pub fn channel(c: &Config) -> super::channel::Channel {
    super::channel::Channel::http("PUT (form fields)", &c.url, c.http())
        .auth("API keys in the Source, Org and User request headers")
        .credential("source_key", &c.source_key)
        .credential("org_key", &c.org_key)
        .credential("user_key", &c.user_key)
}

destination_config! { @http
    /// `kind = "charitylog"`
    pub struct Config {
        #[serde(default = "default_url")]
        pub url: String,
        /// The three API keys Charitylog authenticates with (headers Source, Org, User).
        pub source_key: Secret,
        pub org_key: Secret,
        pub user_key: Secret,
        /// A mapping with `output.format: form`.
        pub mapping: String,
    }
}

fn default_url() -> String {
    "https://api.dizions.co.uk/v2/external_referral".into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Form);
    let url = endpoint(b, "url", &c.url);
    let http = Http::build(b, c.http());
    let source = b.secret("source_key", &c.source_key);
    let org = b.secret("org_key", &c.org_key);
    let user = b.secret("user_key", &c.user_key);
    Some(Box::new(Charitylog {
        url: url?,
        source: source?,
        org: org?,
        user: user?,
        http: http?,
    }))
}

struct Charitylog {
    url: Url,
    source: String,
    org: String,
    user: String,
    http: Http,
}

impl Sink for Charitylog {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let status = job
                .journal
                .once("charitylog-referral", "the external referral PUT", async {
                    let r = self
                        .http
                        .client
                        .put(self.url.clone())
                        .header("Source", &self.source)
                        .header("Org", &self.org)
                        .header("User", &self.user)
                        // Sets Content-Type: application/x-www-form-urlencoded.
                        .form(&form_fields(job.fields()));
                    let resp = self.http.send(r, &host_of(&self.url)).await?;
                    Ok(resp.status().as_u16().to_string())
                })
                .await?;
            Ok(Sent {
                status: status.parse().ok(),
            })
        })
    }

    fn resends_safely(&self) -> bool {
        false
    }
}
