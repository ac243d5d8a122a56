//! `kind = "mail"`: the record writer every practice can receive today — one email per
//! event to the practice's secure mailbox (NHSmail, nhs.scot), the readable summary as a
//! PDF attachment and the same text, with the codes to enter, in the plain-text body.
//! SMTP over TLS only (STARTTLS, or TLS from the first byte), authenticated; the
//! mailbox is looked up by the practice code the record entry carries.
//!
//! SMTP takes no idempotency key: the send runs through the effect journal (step
//! `mail-send`, value the Message-ID), never twice; a send that broke off after the
//! message was handed over is an unknown outcome for a person. Every attempt of one
//! (message, destination) carries the same Message-ID, made from the delivery's
//! idempotency key, so a copy sent again after `resolve --resend` is recognisable.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::Address;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, TlsParameters, TlsParametersBuilder,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use sha2::{Digest, Sha256};

use super::terms::destination_config;
use super::{Build, Job, Sent, Sink};
use crate::error::{ErrorClass, GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::record::{RecordEntry, document, pdf};
use crate::secret::Secret;

pub const FLOW: Flow = Flow::MessageBack;

/// The journal step of the one send.
const STEP: &str = "mail-send";

/// A record writer: it writes events, never a referral's later messages.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// It keeps no files: what it sends is in the practice's mailbox.
pub fn kept(_: &Config) -> Option<super::Kept<'_>> {
    None
}

/// How the connection is encrypted. There is no plain-text choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// A plain connection upgraded with STARTTLS before anything else is said (port
    /// 587); a server that does not offer STARTTLS is sent nothing.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

impl MailTls {
    fn default_port(self) -> u16 {
        match self {
            MailTls::Starttls => 587,
            MailTls::Implicit => 465,
        }
    }
}

destination_config! { @data
    /// `kind = "mail"`
    pub struct Config {
        /// The SMTP server (NHSmail: send.nhs.net).
        pub host: String,
        /// Default: 587 with STARTTLS, 465 with implicit TLS.
        #[serde(default)]
        pub port: Option<u16>,
        #[serde(default)]
        pub tls: MailTls,
        /// Extra trusted roots (PEM bundle), added to the public web roots.
        #[serde(default)]
        pub ca_file: Option<PathBuf>,
        /// The sender: `address` or `Name <address>`.
        pub from: String,
        pub username: Secret,
        pub password: Secret,
        /// Practice code (ODS, or Scottish practice code) → that practice's mailbox.
        pub mailboxes: BTreeMap<String, String>,
        /// The whole SMTP conversation's limit.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        pub timeout: Duration,
        /// Read v2 codes beside SNOMED CT. Unset, the practice's nation decides: on for
        /// Scottish practices (their systems still code in Read v2), off elsewhere.
        #[serde(default)]
        pub read_codes: Option<bool>,
        /// What the subject starts with, before ": message back (referral ID)".
        #[serde(default = "default_subject")]
        pub subject: String,
        /// A json mapping producing the record entry (default: gp-record).
        #[serde(default = "default_mapping")]
        pub mapping: String,
    }
}

/// SMTP over TLS to `host:port`, authenticated with the username and password
/// (`MailWriter` logs in with PLAIN or LOGIN, only once TLS is up).
pub fn channel(c: &Config) -> super::channel::Channel {
    let roots = super::channel::roots(c.ca_file.as_deref());
    super::channel::Channel {
        transport: "SMTP email to each practice's mailbox (summary as text and PDF)".into(),
        endpoint: format!("{}:{}", c.host, c.port.unwrap_or(c.tls.default_port())),
        tls: match c.tls {
            MailTls::Starttls => {
                format!("STARTTLS, required before anything else is said; {roots}")
            }
            MailTls::Implicit => format!("TLS from the first byte (implicit TLS); {roots}"),
        },
        authentication: vec!["SMTP AUTH (PLAIN or LOGIN) with a username and password".into()],
        credentials: Vec::new(),
    }
    .credential("username", &c.username)
    .credential("password", &c.password)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_subject() -> String {
    "Social prescribing".into()
}
fn default_mapping() -> String {
    "gp-record".into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    let host = check_host(b, &c.host);
    let port = match (c.port, c.tls) {
        (Some(0), _) => {
            b.problem("port", "must be above 0");
            None
        }
        (p, tls) => Some(p.unwrap_or(tls.default_port())),
    };
    let tls = host.as_deref().and_then(|h| tls_parameters(b, h, c));
    let from = match c.from.parse::<Mailbox>() {
        Ok(m) if !m.email.to_string().is_ascii() => {
            b.problem("from", "the address must be ASCII (no SMTPUTF8)");
            None
        }
        Ok(m) => Some(m),
        Err(e) => {
            b.problem(
                "from",
                format!("not an email address (`address` or `Name <address>`): {e}"),
            );
            None
        }
    };
    let mailboxes = mailboxes(b, &c.mailboxes);
    let username = b.secret("username", &c.username);
    let password = b.secret("password", &c.password);
    if c.timeout.is_zero() {
        b.problem("timeout", "must be above zero");
    }
    if c.subject.trim().is_empty()
        || c.subject.chars().count() > 100
        || c.subject.chars().any(char::is_control)
    {
        b.problem(
            "subject",
            "must be 1 to 100 characters on one line (never patient details)",
        );
    }
    Some(Box::new(MailWriter {
        name: b.name.to_string(),
        host: host?,
        port: port?,
        tls: c.tls,
        params: tls?,
        hello: ClientId::default(),
        credentials: Credentials::new(username?, password?),
        from: from?,
        mailboxes,
        timeout: c.timeout,
        read_codes: c.read_codes,
        subject: c.subject.trim().to_string(),
    }))
}

/// A host name or an IP address, nothing else (the port is its own key).
fn check_host(b: &mut Build<'_>, host: &str) -> Option<String> {
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if name_ok || host.parse::<IpAddr>().is_ok() {
        Some(host.to_string())
    } else {
        b.problem(
            "host",
            "must be the SMTP server's host name or IP address (the port is `port`)",
        );
        None
    }
}

/// The TLS settings, with `ca_file`'s roots beside the public ones; the server's
/// certificate must name `host`.
fn tls_parameters(b: &mut Build<'_>, host: &str, c: &Config) -> Option<TlsParameters> {
    let mut builder = TlsParametersBuilder::new(host.to_string());
    if let Some(path) = &c.ca_file {
        match std::fs::read(path) {
            Err(e) => {
                b.problem("ca_file", format!("cannot read {}: {e}", path.display()));
                return None;
            }
            Ok(pem) if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
                b.problem("ca_file", "holds no PEM certificate");
                return None;
            }
            Ok(pem) => match Certificate::from_pem(&pem) {
                Ok(cert) => builder = builder.add_root_certificate(cert),
                Err(e) => {
                    b.problem("ca_file", format!("not a PEM certificate bundle: {e}"));
                    return None;
                }
            },
        }
    }
    builder
        .build()
        .map_err(|e| b.problem("tls", format!("cannot set up TLS: {e}")))
        .ok()
}

/// Each practice's mailbox, by its code in capitals.
fn mailboxes(b: &mut Build<'_>, table: &BTreeMap<String, String>) -> BTreeMap<String, Address> {
    if table.is_empty() {
        b.problem(
            "mailboxes",
            "name at least one practice's mailbox: { \"PRACTICE-CODE\" = \"address@nhs.net\" }",
        );
    }
    let mut out = BTreeMap::new();
    for (code, address) in table {
        let key = format!("mailboxes.{code}");
        if code.is_empty() || code.len() > 10 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            b.problem(
                &key,
                "a practice code is 1 to 10 letters and digits (an ODS or Scottish practice code)",
            );
            continue;
        }
        match address.trim().parse::<Address>() {
            Ok(a) if !a.to_string().is_ascii() => {
                b.problem(&key, "the address must be ASCII (no SMTPUTF8)");
            }
            Ok(a) => {
                if out.insert(code.to_ascii_uppercase(), a).is_some() {
                    b.problem(
                        &key,
                        "this practice code is listed twice (codes ignore case)",
                    );
                }
            }
            Err(e) => b.problem(&key, format!("not an email address: {e}")),
        }
    }
    out
}

struct MailWriter {
    name: String,
    host: String,
    port: u16,
    tls: MailTls,
    params: TlsParameters,
    hello: ClientId,
    credentials: Credentials,
    from: Mailbox,
    mailboxes: BTreeMap<String, Address>,
    timeout: Duration,
    read_codes: Option<bool>,
    subject: String,
}

/// The codes the practice may be known by, in the order they are looked up: its
/// Scottish practice code when the entry carries one, then its ODS code.
fn practice_codes(e: &RecordEntry) -> Vec<&str> {
    [
        e.practice.scottish_practice_code.as_deref(),
        e.practice.ods_code.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .filter(|c| !c.is_empty())
    .collect()
}

/// The Message-ID every attempt of one delivery carries: `<32 hex of
/// SHA-256(idempotency key)@sender's domain>`.
fn message_id(idempotency_key: &str, domain: &str) -> String {
    let digest = hex::encode(Sha256::digest(idempotency_key.as_bytes()));
    format!("<{}@{domain}>", &digest[..32])
}

impl MailWriter {
    /// The practice's mailbox, or a permanent error naming `practice`.
    fn mailbox_for(&self, e: &RecordEntry) -> Result<&Address> {
        let codes = practice_codes(e);
        codes
            .iter()
            .find_map(|c| self.mailboxes.get(&c.to_ascii_uppercase()))
            .ok_or_else(|| {
                let why = if codes.is_empty() {
                    "the referral names no practice code to find the practice's mailbox by".into()
                } else {
                    format!(
                        "no mailbox for practice {} in destinations.{}.mailboxes",
                        codes.join(" / "),
                        self.name
                    )
                };
                GatewayError::invalid(Stage::Deliver, "practice", why)
            })
    }

    /// The email: the summary as text (codes included) and as a PDF; no patient detail
    /// in any header.
    fn compose(&self, e: &RecordEntry, to: &Address, id: &str) -> Result<Vec<u8>> {
        let read_codes = self.read_codes.unwrap_or(e.practice.is_scottish());
        let lines = document::lines(e, read_codes);
        let pdf = pdf::render(document::TITLE, &lines);
        let body = format!(
            "An automatic message from the social prescribing service about a patient \
             registered at your practice. The attached PDF holds the same summary, for \
             filing in the patient's record; enter the codes below if your system did not \
             file them.\n\n{}",
            document::text(e, read_codes)
        );
        let file = match crate::model::message_back::day_of(&e.event.occurred_at) {
            Some(day) => format!("social-prescribing-{day}.pdf"),
            None => "social-prescribing.pdf".into(),
        };
        let pdf_type = ContentType::parse("application/pdf").expect("a valid content type");
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(format!(
                "{}: message back (referral {})",
                self.subject, e.referral.message_id
            ))
            .message_id(Some(id.to_string()))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(file).body(pdf, pdf_type)),
            )
            .map_err(|e| {
                GatewayError::permanent(
                    Stage::Deliver,
                    format!("{}: cannot make the email: {e}", self.name),
                )
            })?;
        Ok(message.formatted())
    }

    /// One SMTP conversation within `timeout`; Ok once the server took the message.
    async fn deliver(&self, to: &Address, email: &[u8]) -> Result<()> {
        let handed_over = AtomicBool::new(false);
        match tokio::time::timeout(self.timeout, self.converse(to, email, &handed_over)).await {
            Ok(Ok(mut conn)) => {
                // Taken: a QUIT that goes unanswered changes nothing.
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let sent = handed_over.load(Ordering::SeqCst);
                let mut e = GatewayError::transient(
                    Stage::Deliver,
                    format!(
                        "{} ({}): no answer within {}s{}",
                        self.name,
                        self.host,
                        self.timeout.as_secs_f32(),
                        if sent {
                            " after the message was sent"
                        } else {
                            ""
                        }
                    ),
                );
                e.sent = sent;
                Err(e)
            }
        }
    }

    /// Connects and sends; the connection is dropped (closed) on any failure.
    async fn converse(
        &self,
        to: &Address,
        email: &[u8],
        handed_over: &AtomicBool,
    ) -> Result<AsyncSmtpConnection> {
        let implicit = (self.tls == MailTls::Implicit).then(|| self.params.clone());
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| self.failed("connecting", &e, false))?;
        self.after_connect(&mut conn, to, email, handed_over)
            .await?;
        Ok(conn)
    }

    async fn after_connect(
        &self,
        conn: &mut AsyncSmtpConnection,
        to: &Address,
        email: &[u8],
        handed_over: &AtomicBool,
    ) -> Result<()> {
        if self.tls == MailTls::Starttls {
            if !conn.can_starttls() {
                return Err(GatewayError::transient(
                    Stage::Deliver,
                    format!(
                        "{} ({}): the server does not offer STARTTLS; nothing is sent unencrypted",
                        self.name, self.host
                    ),
                ));
            }
            conn.starttls(self.params.clone(), &self.hello)
                .await
                .map_err(|e| self.failed("STARTTLS", &e, false))?;
        }
        if !conn.is_encrypted() {
            return Err(GatewayError::transient(
                Stage::Deliver,
                format!(
                    "{} ({}): the connection is not encrypted",
                    self.name, self.host
                ),
            ));
        }
        conn.auth(&[Mechanism::Plain, Mechanism::Login], &self.credentials)
            .await
            .map_err(|e| self.failed("authentication", &e, false))?;
        conn.command(Mail::new(Some(self.from.email.clone()), vec![]))
            .await
            .map_err(|e| self.failed("MAIL FROM", &e, false))?;
        conn.command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(|e| self.failed("RCPT TO", &e, false))?;
        conn.command(Data)
            .await
            .map_err(|e| self.failed("DATA", &e, false))?;
        // From here the server may take the message whether or not its answer arrives.
        handed_over.store(true, Ordering::SeqCst);
        conn.message(email)
            .await
            .map_err(|e| self.failed("the message", &e, true))?;
        Ok(())
    }

    /// An SMTP failure in its class: a 5xx answer permanent, a 4xx transient, a refusal
    /// of ours (no mechanism in common) permanent, the network or TLS transient. Only a
    /// failure without an answer after the message was handed over may have delivered it.
    fn failed(&self, step: &str, e: &SmtpError, handed_over: bool) -> GatewayError {
        let answered = e.is_permanent() || e.is_transient();
        let class = if e.is_permanent() || e.is_client() {
            ErrorClass::Permanent
        } else {
            ErrorClass::Transient
        };
        let detail: String = e
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        let mut err = GatewayError::new(
            class,
            Stage::Deliver,
            format!("{} ({}): {step}: {detail}", self.name, self.host),
        );
        err.sent = handed_over && !answered;
        err
    }
}

impl Sink for MailWriter {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let entry = RecordEntry::from_payload(job.payload())?;
            let to = self.mailbox_for(&entry)?;
            let id = message_id(job.idempotency_key, self.from.email.domain());
            let email = self.compose(&entry, to, &id)?;
            job.journal
                .once(STEP, "the email", async {
                    self.deliver(to, &email).await?;
                    Ok(id.clone())
                })
                .await?;
            Ok(Sent { status: None })
        })
    }

    fn resends_safely(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_stable_per_delivery_and_names_no_one() {
        let a = message_id("6f1c0c1e-0000-5000-8000-000000000001", "nhs.net");
        assert_eq!(
            a,
            message_id("6f1c0c1e-0000-5000-8000-000000000001", "nhs.net")
        );
        assert_ne!(
            a,
            message_id("6f1c0c1e-0000-5000-8000-000000000002", "nhs.net")
        );
        assert!(a.starts_with('<') && a.ends_with("@nhs.net>"), "{a}");
        assert_eq!(a.len(), "<@nhs.net>".len() + 32);
    }

    #[test]
    fn a_scottish_practice_is_looked_up_by_its_practice_code_first() {
        let entry = |practice: serde_json::Value| {
            RecordEntry::from_payload(&serde_json::json!({
                "event": {"event_id": "e1", "type": "contact", "occurred_at": "2026-11-25",
                          "referral": {"message_id": "r1"}},
                "headline": "Link worker contact",
                "referral": {"message_id": "r1"},
                "patient": {},
                "practice": practice,
            }))
            .unwrap()
        };
        let scottish =
            entry(serde_json::json!({"ods_code": "S10001", "scottish_practice_code": "70001"}));
        assert_eq!(practice_codes(&scottish), ["70001", "S10001"]);
        let english = entry(serde_json::json!({"ods_code": " GP5 "}));
        assert_eq!(practice_codes(&english), ["GP5"]);
        assert!(practice_codes(&entry(serde_json::json!({}))).is_empty());
    }
}
