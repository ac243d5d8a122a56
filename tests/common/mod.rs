//! Shared test harness: a scriptable HTTP receiver, a RabbitMQ helper that cleans up
//! after itself, configuration builders and polling with deadlines (never sleeps as
//! synchronisation).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clw_gateway::config::Config;
use clw_gateway::sources::broker::Topology;
use futures_util::future::try_join_all;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::Connection as _;
use tokio::sync::Notify;

pub mod docman;
pub mod itk;
pub mod smtp;
pub mod standins;

/// Every section of the canonical referral: what a destination receiving the whole
/// PRSB referral is allowed (TOML array).
pub const PRSB_ALLOW: &str = "[\"person_demographics\", \"contact_preferences\", \"referral_details\", \"referrer_details\", \"gp_practice\", \"referred_to\", \"consent\"]";

/// A `[destinations.NAME]` table written as TOML.
pub fn destination(text: &str) -> clw_gateway::config::DestinationConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A destination built from TOML with the repository's mappings, as the wiring plan
/// builds it.
pub fn build_destination(
    name: &str,
    text: &str,
) -> std::sync::Arc<clw_gateway::deliver::Destination> {
    let mappings =
        clw_gateway::mapping::MappingSet::load_configured(&repo_path("mappings")).unwrap();
    let mut schemas = clw_gateway::mapping::schema::SchemaSet::default();
    clw_gateway::deliver::Destination::build(name, &destination(text), &mappings, &mut schemas)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// A SQLite store in its own folder (kept as long as the returned TempDir).
pub async fn temp_store() -> (clw_gateway::store::Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gw.db?mode=rwc", dir.path().display());
    (
        clw_gateway::store::Store::connect(&url, 2, 16)
            .await
            .unwrap(),
        dir,
    )
}

/// Sends a payload made by hand to a destination, as the engine would.
pub async fn send_payload(
    d: &clw_gateway::deliver::Destination,
    store: &clw_gateway::store::Store,
    id: &str,
    fields: Vec<(String, Value)>,
    document: Value,
) -> Result<clw_gateway::deliver::Sent, clw_gateway::error::GatewayError> {
    let rendered =
        clw_gateway::deliver::Rendered::single(clw_gateway::mapping::Output { fields, document });
    d.send(&clw_gateway::deliver::Job {
        flow: clw_gateway::model::Flow::Referral,
        message_id: id,
        idempotency_key: "k",
        rendered: &rendered,
        journal: clw_gateway::deliver::Journal {
            store,
            flow: clw_gateway::model::Flow::Referral,
            message_id: id,
            destination: &d.name,
        },
        operation: None,
    })
    .await
}

/// A PostgreSQL schema of its own for one test, dropped at the end.
pub struct PgSchema {
    name: String,
}

impl PgSchema {
    pub async fn create() -> (PgSchema, String) {
        let name = unique("t").replace('-', "_");
        let mut c = sqlx::PgConnection::connect(&pg_url())
            .await
            .expect("PostgreSQL is running");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let sep = if pg_url().contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-c%20search_path%3D{name}", pg_url());
        (PgSchema { name }, url)
    }

    pub async fn drop_it(self) {
        let mut c = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

pub fn amqp_url() -> String {
    std::env::var("CLW_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn pg_url() -> String {
    std::env::var("CLW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// The example referral (a UK Core message Bundle) as JSON to vary per test.
pub fn referral() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_path("examples/referral-bundle.json")).unwrap(),
    )
    .unwrap()
}

/// The example referral under another message id (its MessageHeader's id, which a
/// spool file without a `ce-id` is known by).
pub fn referral_with_id(id: &str) -> Value {
    let mut r = referral();
    for e in r["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "MessageHeader" {
            e["resource"]["id"] = Value::String(id.to_string());
        }
    }
    r
}

/// Polls `check` until it returns Some or the deadline passes.
/// Waits (up to `WAIT`) until the store records message `id` of `flow` in state `want`.
pub async fn wait_message(
    store: &clw_gateway::store::Store,
    flow: &str,
    id: &str,
    want: &str,
) -> clw_gateway::store::MessageRow {
    eventually(
        &format!("{flow} message {id} to be {want}"),
        WAIT,
        || async {
            store
                .message(flow, id)
                .await
                .unwrap()
                .filter(|m| m.state == want)
        },
    )
    .await
}

pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------- child gateways

/// A gateway binary run as an operator runs it; killed (SIGKILL) when dropped, so a
/// failing test leaves nothing running.
pub struct ChildGateway(pub std::process::Child);

impl ChildGateway {
    pub fn start(config: &std::path::Path) -> ChildGateway {
        ChildGateway(
            std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
                .args(["serve", "--config"])
                .arg(config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- MESH sandbox

/// NHS England's mesh-sandbox (tests/mesh), in memory with full NHSMESH auth; stops
/// when dropped (its stdin closes).
pub struct MeshSandbox {
    child: std::process::Child,
    pub base: String,
}

pub fn mesh_python() -> PathBuf {
    std::env::var("CLW_TEST_MESH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_path("tests/mesh/.venv/bin/python"))
}

impl MeshSandbox {
    pub async fn start() -> MeshSandbox {
        let python = mesh_python();
        assert!(
            python.exists(),
            "mesh-sandbox is not installed: run scripts/test (it makes tests/mesh/.venv)"
        );
        let mut child = std::process::Command::new(python)
            .arg(repo_path("tests/mesh/run_sandbox.py"))
            .arg("0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python runs");
        let port = announced_port(&mut child, "listening ", "mesh-sandbox").await;
        MeshSandbox {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// An NHSMESH-authorised request as `mailbox` (a fresh single-use token).
    pub fn request(
        &self,
        method: reqwest::Method,
        mailbox: &str,
        password: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let nonce = uuid::Uuid::new_v4().to_string();
        let time = chrono::Utc::now().format("%Y%m%d%H%M").to_string();
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"TestKey").unwrap();
        hmac::Mac::update(
            &mut mac,
            format!("{mailbox}:{nonce}:0:{password}:{time}").as_bytes(),
        );
        let digest = hex::encode(hmac::Mac::finalize(mac).into_bytes());
        reqwest::Client::new()
            .request(
                method,
                format!("{}/messageexchange/{mailbox}{path}", self.base),
            )
            .header(
                "Authorization",
                format!("NHSMESH {mailbox}:{nonce}:0:{time}:{digest}"),
            )
            .header("Accept", "application/vnd.mesh.v2+json")
    }

    /// An NHSMESH-authorised GET as `mailbox`.
    pub async fn get(&self, mailbox: &str, password: &str, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, mailbox, password, path)
            .send()
            .await
            .unwrap()
    }

    /// Sends `body` from `from`'s outbox to `to` under `workflow` (as a practice's system
    /// sends its acknowledgements); the MESH message id.
    pub async fn send(
        &self,
        from: &str,
        password: &str,
        to: &str,
        workflow: &str,
        body: &str,
    ) -> String {
        let r = self
            .request(reqwest::Method::POST, from, password, "/outbox")
            .header("Mex-From", from)
            .header("Mex-To", to)
            .header("Mex-WorkflowID", workflow)
            .header("Mex-FileName", "response.xml")
            .header("Content-Type", "application/fhir+xml")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let v: serde_json::Value = r.json().await.unwrap();
        v["message_id"].as_str().unwrap_or_default().to_string()
    }

    /// How many handshakes `mailbox` made (counted by tests/mesh/run_sandbox.py).
    pub async fn handshakes(&self, mailbox: &str) -> u64 {
        let v: serde_json::Value = reqwest::get(format!("{}/test/handshakes/{mailbox}", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["count"].as_u64().unwrap()
    }

    /// The text of a PDF given as base64, extracted by pypdf (tests/mesh/pdf_text.py).
    pub fn pdf_text(base64: &str) -> String {
        use std::io::Write as _;
        let mut child = std::process::Command::new(mesh_python())
            .arg(repo_path("tests/mesh/pdf_text.py"))
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(base64.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "not a valid PDF");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for MeshSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- FHIR test server

/// The Node FHIR server on a free port; killed when dropped.
pub struct FhirServer {
    child: std::process::Child,
    pub base: String,
}

impl FhirServer {
    pub async fn start() -> FhirServer {
        let dir = repo_path("tests/fhir-server");
        assert!(
            dir.join("node_modules/@medplum/fhir-router").is_dir(),
            "the FHIR test server is not installed: run scripts/test (or npm ci in tests/fhir-server)"
        );
        let mut child = std::process::Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg("0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs");
        let port = announced_port(&mut child, "listening ", "the FHIR server").await;
        FhirServer {
            child,
            base: format!("http://127.0.0.1:{port}/fhir"),
        }
    }

    pub async fn search(&self, query: &str) -> Vec<Value> {
        let b: Value = reqwest::get(format!("{}/{query}", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        b["entry"]
            .as_array()
            .map(|e| e.iter().map(|x| x["resource"].clone()).collect())
            .unwrap_or_default()
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// FHIR.js on its own (tests/fhir-server/validate.cjs): Ok or its messages.
pub fn fhir_js_validate(resources: &[Value]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = dir.path().join(format!("r{i}.json"));
            std::fs::write(&p, r.to_string()).unwrap();
            p
        })
        .collect();
    let out = std::process::Command::new("node")
        .arg(repo_path("tests/fhir-server/validate.cjs"))
        .args(&files)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

// ---------------------------------------------------------------- HTTP receiver

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
    /// While held, requests wait here before answering (a slow or stuck receiver).
    hold: Mutex<bool>,
    /// Answer time of every request (a receiver doing real work).
    delay: Mutex<Duration>,
    release: Notify,
    arrived: Notify,
}

/// A CLW platform's webhook: answers from a script of status codes, then 200; records
/// every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(s): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.received.lock().unwrap().push(Received { headers, body });
    s.arrived.notify_waiters();
    while *s.hold.lock().unwrap() {
        let wait = s.release.notified();
        if !*s.hold.lock().unwrap() {
            break;
        }
        wait.await;
    }
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let code = s.script.lock().unwrap().pop_front().unwrap_or(200);
    let mut h = HeaderMap::new();
    if code == 429 || code == 503 {
        h.insert("retry-after", "0".parse().unwrap());
    }
    (StatusCode::from_u16(code).unwrap(), h)
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Receiver {
        let state = Arc::new(ReceiverState::default());
        state.script.lock().unwrap().extend(script.iter().copied());
        let app = axum::Router::new()
            .route("/referrals", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/referrals", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    pub fn set_script(&self, script: &[u16]) {
        let mut s = self.state.script.lock().unwrap();
        s.clear();
        s.extend(script.iter().copied());
    }

    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    pub fn hold(&self) {
        *self.state.hold.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.state.hold.lock().unwrap() = false;
        self.state.release.notify_waiters();
    }
}

// ---------------------------------------------------------------- configuration

pub struct Setup {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub store_url: String,
}

impl Setup {
    pub fn new(name: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}/gw.db?mode=rwc", dir.path().display());
        Setup {
            prefix: unique(name),
            dir,
            store_url,
        }
    }

    /// A broker-mode configuration delivering to `hook` with short retry tiers.
    pub fn broker_config(&self, hook: &str, tiers: &[&str]) -> Config {
        self.broker_config_with(hook, tiers, "", PRSB_ALLOW)
    }

    /// [`Setup::broker_config`] with more keys for the `clw` webhook (`mapping = ...`)
    /// and its own allow-list.
    pub fn broker_config_with(
        &self,
        hook: &str,
        tiers: &[&str],
        keys: &str,
        allow: &str,
    ) -> Config {
        let tiers: Vec<String> = tiers.iter().map(|t| format!("\"{t}\"")).collect();
        self.config(&format!(
            "[broker]\nurl = \"{}\"\nprefix = \"{}\"\nprefetch = 16\n\
             [retry]\ntiers = [{}]\n[referrals]\ndestinations = [\"clw\"]\n\
             [destinations.clw]\nkind = \"webhook\"\nurl = \"{hook}\"\ntoken = {{ env = \"CLW_TEST_TOKEN\" }}\nagreement = \"DSA-TEST-1\"\n\
             timeout = \"5s\"\nallow = {allow}\n{keys}",
            amqp_url(),
            self.prefix,
            tiers.join(", "),
        ))
    }

    pub fn config(&self, extra: &str) -> Config {
        // SAFETY: tests set the same constant value; no test reads a different one.
        unsafe { std::env::set_var("CLW_TEST_TOKEN", "test-token-123") };
        let text = format!(
            "[gateway]\ninstance = \"{}\"\ndata_dir = \"{}\"\n[store]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}",
            self.prefix,
            self.dir.path().display(),
            self.store_url
        );
        let mut c = Config::from_toml(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        if c.referrals.consent_covers.is_empty() {
            c.referrals.consent_covers = test_consent_covers();
        }
        c
    }
}

/// The example referral's id (its MessageHeader id: spool files carry no ce-id).
pub const EXAMPLE_REFERRAL_ID: &str = "5b2e6f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";

/// What every event says of the example patient (require_patient's default items).
pub fn example_patient() -> Value {
    serde_json::json!({"nhs_number": "9912003888", "date_of_birth": "1970-09-11"})
}

/// A canonical `contact` event about the example referral, with `extra` fields set.
pub fn example_event(id: &str, extra: Value) -> Value {
    let mut e = serde_json::json!({
        "event_id": id,
        "type": "contact",
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": EXAMPLE_REFERRAL_ID, "patient": example_patient()},
        "contact": {"mode": "telephone", "date": "2026-11-25"},
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        e[k] = v.clone();
    }
    e
}

/// Puts `body` in a spool folder as `name`: written whole under a dot name, then renamed
/// in, so the spool never sees it half written.
pub fn drop_file(dir: &std::path::Path, name: &str, body: &Value) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A spool-mode gateway on the embedded default's destinations (outbox, practice
/// folder) with the event door on and the message back configured by `toml`.
pub async fn door_gateway(s: &Setup, toml: &str) -> clw_gateway::app::Running {
    let mut c = s.config(&format!(
        "{toml}
[mappings]
dir = \"{}\"\n",
        repo_path("mappings").display()
    ));
    c.ingress.enabled = true;
    c.ingress.listen = "127.0.0.1:0".parse().unwrap();
    c.destinations = clw_gateway::config::Destinations::embedded(&c.gateway.data_dir);
    clw_gateway::app::start(c).await.unwrap()
}

/// The example referral dropped in the spool and delivered: events can name it.
pub async fn refer_example(gw: &clw_gateway::app::Running, data: &std::path::Path) {
    drop_file(&data.join("spool/referrals/inbox"), "r1.json", &referral());
    wait_message(&gw.store, "referral", EXAMPLE_REFERRAL_ID, "delivered").await;
}

/// `clw-gateway check` on a configuration file: whether it passed, and all it printed.
pub fn check_config(config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .arg("--config")
        .arg(config)
        .arg("check")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// What a signed request to the event door was answered.
pub struct Sent {
    pub status: u16,
    pub body: Value,
}

/// POSTs `bytes` to the gateway's event door at `path`, signed at `ts` with `sign_with`
/// as platforms sign (X-CLW-Timestamp, X-CLW-Signature).
pub async fn signed_post(
    port: u16,
    path: &str,
    media: &str,
    bytes: Vec<u8>,
    ts: i64,
    sign_with: &str,
) -> Sent {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", media)
        .header("X-CLW-Timestamp", ts.to_string())
        .header(
            "X-CLW-Signature",
            clw_gateway::secret::signing::sign(sign_with.as_bytes(), ts, &bytes),
        )
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    Sent {
        status,
        body: r.json().await.unwrap_or(Value::Null),
    }
}

/// POSTs `body` as platform `platform`'s event, signed with `secret` at a fresh
/// timestamp (a second post of one event is a resend, not a replay).
pub async fn post_event(port: u16, platform: &str, secret: &str, body: &Value) -> Sent {
    signed_post(
        port,
        &format!("/v1/events/{platform}"),
        "application/json",
        body.to_string().into_bytes(),
        fresh_timestamp(),
        secret,
    )
    .await
}

/// A timestamp no request of this process signed before (the door refuses a second use
/// of one signature as a replay, so two identical bodies in one second need two).
pub fn fresh_timestamp() -> i64 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicI64, Ordering};
    static BASE: OnceLock<i64> = OnceLock::new();
    static NEXT: AtomicI64 = AtomicI64::new(0);
    *BASE.get_or_init(|| chrono::Utc::now().timestamp()) - NEXT.fetch_add(1, Ordering::SeqCst)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The test bed's example Consent is for information access (category `INFA`): these
/// tests run as a deployment that decided such a Consent covers sharing with its social
/// prescribing service (`referrals.consent_covers`) would.
pub fn test_consent_covers() -> Vec<clw_gateway::policy::CodeRef> {
    vec![clw_gateway::policy::CodeRef {
        system: "http://terminology.hl7.org/CodeSystem/v3-ActCode".into(),
        code: "INFA".into(),
    }]
}

/// The TOML line a configuration file written by a test carries for the same decision.
pub const TEST_CONSENT_COVERS: &str = "consent_covers = [{ system = \"http://terminology.hl7.org/CodeSystem/v3-ActCode\", code = \"INFA\" }]";

// ---------------------------------------------------------------- RabbitMQ

/// One message to publish: body and `ce-*`/custom headers.
pub type Outgoing<'a> = (Vec<u8>, Vec<(&'a str, String)>);

pub struct Rabbit {
    pub conn: Connection,
    pub ch: Channel,
}

pub fn ce_headers(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ce-id", id.to_string()),
        ("ce-specversion", "1.0".into()),
        ("ce-type", "uk.nhs.socialprescribing.referral.v1".into()),
        ("ce-source", "urn:test:practice-system".into()),
        ("ce-time", "2026-11-22T10:00:00Z".into()),
    ]
}

/// A RabbitMQ user of the test's own, allowed everything on vhost `/` (made with
/// rabbitmqctl, as an operator makes a platform's broker user); the URL to connect as it.
pub fn broker_user(name: &str) -> String {
    let ctl = |args: &[&str]| {
        std::process::Command::new("rabbitmqctl")
            .arg("-q")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let password = format!("{name}-password");
    // Made by an earlier run: its password is set again.
    if !ctl(&["add_user", name, &password]) {
        assert!(
            ctl(&["change_password", name, &password]),
            "rabbitmqctl change_password {name}"
        );
    }
    assert!(
        ctl(&["set_permissions", "-p", "/", name, ".*", ".*", ".*"]),
        "rabbitmqctl set_permissions {name}"
    );
    format!("amqp://{name}:{password}@127.0.0.1:5672/%2f")
}

impl Rabbit {
    pub async fn connect() -> Rabbit {
        Self::connect_to(&amqp_url()).await
    }

    pub async fn connect_to(url: &str) -> Rabbit {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Rabbit { conn, ch }
    }

    /// Publishes with a broker confirm.
    pub async fn publish(&self, exchange: &str, body: &[u8], headers: &[(&str, String)]) {
        self.publish_many(exchange, &[(body.to_vec(), headers.to_vec())])
            .await;
    }

    pub async fn publish_many(&self, exchange: &str, messages: &[Outgoing<'_>]) {
        self.publish_many_as(exchange, messages, None).await
    }

    /// Publishes as `user_id` (RabbitMQ refuses one that is not the connection's user:
    /// this connection's is `guest`), so the broker vouches for who published.
    pub async fn publish_as(
        &self,
        exchange: &str,
        body: &[u8],
        headers: &[(&str, String)],
        user_id: &str,
    ) {
        self.publish_many_as(
            exchange,
            &[(body.to_vec(), headers.to_vec())],
            Some(user_id),
        )
        .await;
    }

    pub async fn publish_many_as(
        &self,
        exchange: &str,
        messages: &[Outgoing<'_>],
        user_id: Option<&str>,
    ) {
        let mut confirms = Vec::new();
        for (body, headers) in messages {
            let mut t = FieldTable::default();
            for (k, v) in headers {
                t.insert(
                    ShortString::from(*k),
                    AMQPValue::LongString(LongString::from(v.as_str())),
                );
            }
            let mut props = BasicProperties::default()
                .with_content_type(ShortString::from("application/fhir+json"))
                .with_delivery_mode(2)
                .with_headers(t);
            if let Some(u) = user_id {
                props = props.with_user_id(ShortString::from(u));
            }
            confirms.push(
                self.ch
                    .basic_publish(
                        ShortString::from(exchange),
                        ShortString::from("referral.new"),
                        BasicPublishOptions::default(),
                        body,
                        props,
                    )
                    .await
                    .unwrap(),
            );
        }
        try_join_all(confirms).await.unwrap();
    }

    pub async fn queue_len(&self, queue: &str) -> u32 {
        self.ch
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Declares the topology a configuration's gateway uses (as deploy/rabbitmq/definitions.json
    /// would in production), so a test can publish before the gateway has connected.
    pub async fn declare(&self, config: &Config) -> Topology {
        let t = config
            .transport()
            .topology(clw_gateway::model::Flow::Referral)
            .expect("broker config");
        t.declare(&self.ch).await.unwrap();
        t
    }

    /// Deletes every queue and exchange of a test's topology — and of its event flow's,
    /// which a gateway with the message back declares beside it — then closes the
    /// connection.
    pub async fn cleanup(&self, t: &Topology) {
        let events = t.for_flow(clw_gateway::model::Flow::MessageBack);
        for t in [t, &events] {
            for q in t.queue_names() {
                let _ = self
                    .ch
                    .queue_delete(ShortString::from(q), QueueDeleteOptions::default())
                    .await;
            }
            for e in t.exchange_names() {
                let _ = self
                    .ch
                    .exchange_delete(ShortString::from(e), ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = self.conn.close(200, ShortString::from("test done")).await;
    }
}

/// Closes the broker connection(s) whose client-given name is `name`, as a network
/// failure or a broker restart would (uses rabbitmqctl, as root on the test machine).
pub fn close_connections_named(name: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut closed = 0;
    for line in text.lines() {
        if line.contains(&format!("\"{name}\"")) {
            let pid = line.split_whitespace().next().unwrap_or("");
            let ok = std::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "test: connection dropped"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                closed += 1;
            }
        }
    }
    closed
}

// ---------------------------------------------------------------- a running gateway on RabbitMQ

/// One test's world: a receiver, a declared topology, a running gateway.
pub struct Harness {
    pub s: Setup,
    pub hook: Receiver,
    pub rabbit: Rabbit,
    pub t: Topology,
    pub gw: clw_gateway::app::Running,
    cleaned: bool,
}

pub const WAIT: Duration = Duration::from_secs(30);

impl Harness {
    pub async fn start(name: &str, script: &[u16], tiers: &[&str]) -> Harness {
        Self::start_with(name, script, tiers, |_| {}).await
    }

    pub async fn start_with(
        name: &str,
        script: &[u16],
        tiers: &[&str],
        adjust: impl FnOnce(&mut Config),
    ) -> Harness {
        Self::start_configured(name, script, |s, hook| {
            let mut config = s.broker_config(hook, tiers);
            adjust(&mut config);
            config
        })
        .await
    }

    /// A harness whose configuration `make` writes, given the setup and the hook's URL.
    pub async fn start_configured(
        name: &str,
        script: &[u16],
        make: impl FnOnce(&Setup, &str) -> Config,
    ) -> Harness {
        let s = Setup::new(name);
        let hook = Receiver::start(script).await;
        let config = make(&s, &hook.url);
        let rabbit = Rabbit::connect().await;
        let t = rabbit.declare(&config).await;
        let gw = clw_gateway::app::start(config).await.unwrap();
        Harness {
            s,
            hook,
            rabbit,
            t,
            gw,
            cleaned: false,
        }
    }

    pub async fn publish(&self, id: &str, body: &Value) {
        self.rabbit
            .publish(
                &self.t.exchange(),
                body.to_string().as_bytes(),
                &ce_headers(id),
            )
            .await;
    }

    pub async fn wait_state(&self, id: &str, want: &str) -> clw_gateway::store::MessageRow {
        wait_message(&self.gw.store, "referral", id, want).await
    }

    pub async fn wait_queue_len(&self, queue: &str, len: u32) {
        eventually(&format!("{queue} to hold {len}"), WAIT, || async {
            (self.rabbit.queue_len(queue).await == len).then_some(())
        })
        .await
    }

    /// Waits until the store holds `len` messages of `flow` parked and waiting (the
    /// gateway's recorder moves them there from the parking queue).
    pub async fn wait_parked(&self, flow: &str, len: usize) -> Vec<clw_gateway::store::ParkedRow> {
        eventually(&format!("{len} {flow} messages parked"), WAIT, || async {
            let rows = self
                .gw
                .store
                .parked(Some(flow), Some(clw_gateway::store::PARKED), 10_000)
                .await
                .unwrap();
            (rows.len() == len).then_some(rows)
        })
        .await
    }

    pub async fn wait_audit(&self, id: &str, action: &str) -> clw_gateway::store::AuditRow {
        eventually(&format!("{action} audited for {id}"), WAIT, || async {
            let audit = self.gw.store.audit("referral", id).await.unwrap();
            audit
                .into_iter()
                .find(|a| a.entry.action.as_str() == action)
        })
        .await
    }

    pub async fn wait_audit_flow(
        &self,
        flow: &str,
        id: &str,
        action: &str,
    ) -> clw_gateway::store::AuditRow {
        eventually(&format!("{action} audited for {id}"), WAIT, || async {
            let audit = self.gw.store.audit(flow, id).await.unwrap();
            audit
                .into_iter()
                .find(|a| a.entry.action.as_str() == action)
        })
        .await
    }

    pub async fn state(&self, id: &str) -> Option<String> {
        self.gw
            .store
            .message("referral", id)
            .await
            .unwrap()
            .map(|m| m.state)
    }

    /// Stops the gateway and removes the test's queues and exchanges.
    pub async fn finish(mut self) {
        self.gw.stop_in_place().await.unwrap();
        self.rabbit.cleanup(&self.t).await;
        self.cleaned = true;
    }
}

/// A test that failed before `finish` still removes its queues (with rabbitmqctl, as
/// the async client cannot run in a destructor).
impl Drop for Harness {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let events = self.t.for_flow(clw_gateway::model::Flow::MessageBack);
        for q in self.t.queue_names().into_iter().chain(events.queue_names()) {
            let _ = std::process::Command::new("rabbitmqctl")
                .args(["-q", "delete_queue", &q])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------- a TCP link that can fail

/// A loopback TCP proxy in front of a service (the store, a platform) that a test can
/// cut: `blackhole` keeps every connection open but silent (a dead network, no RST),
/// `refuse` closes them all and refuses new ones; `pass` restores service.
pub struct Link {
    pub addr: std::net::SocketAddr,
    mode: Arc<std::sync::atomic::AtomicU8>,
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

const PASS: u8 = 0;
const BLACKHOLE: u8 = 1;
const REFUSE: u8 = 2;

impl Link {
    pub async fn start(target: std::net::SocketAddr) -> Link {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(PASS));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (m, c) = (mode.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (m, c) = (m.clone(), c.clone());
                tokio::spawn(async move {
                    match m.load(Ordering::SeqCst) {
                        REFUSE => {}
                        BLACKHOLE => hold_until_pass(&m, &c, client).await,
                        _ => {
                            if let Ok(server) = tokio::net::TcpStream::connect(target).await {
                                relay(&m, &c, client, server).await;
                            }
                        }
                    }
                });
            }
        });
        Link {
            addr,
            mode,
            changed,
            task,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub fn blackhole(&self) {
        self.set(BLACKHOLE);
    }

    pub fn refuse(&self) {
        self.set(REFUSE);
    }

    pub fn pass(&self) {
        self.set(PASS);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.set(REFUSE);
        self.task.abort();
    }
}

/// Keeps a connection open and silent until the link passes again, then closes it (a
/// connection that lived through an outage is dead to both ends).
async fn hold_until_pass(
    mode: &std::sync::atomic::AtomicU8,
    changed: &tokio::sync::Notify,
    sockets: impl Send,
) {
    loop {
        let wait = changed.notified();
        if mode.load(std::sync::atomic::Ordering::SeqCst) != BLACKHOLE {
            break;
        }
        wait.await;
    }
    drop(sockets);
}

async fn relay(
    mode: &std::sync::atomic::AtomicU8,
    changed: &tokio::sync::Notify,
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut a, mut b) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        let wait = changed.notified();
        match mode.load(std::sync::atomic::Ordering::SeqCst) {
            BLACKHOLE => return hold_until_pass(mode, changed, (client, server)).await,
            REFUSE => return,
            _ => {}
        }
        tokio::select! {
            n = client.read(&mut a) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&a[..n]).await.is_err() { return },
            },
            n = server.read(&mut b) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&b[..n]).await.is_err() { return },
            },
            _ = wait => {}
        }
    }
}

/// The gateway's transport on the test broker for a topology (as `dlq` and the console
/// reach it).
pub fn broker_transport(t: &Topology) -> clw_gateway::sources::Transport {
    use clw_gateway::sources::transport::{Broker, Transport};
    Transport::Broker(Broker {
        config: clw_gateway::sources::broker::BrokerConfig {
            url: amqp_url(),
            prefix: t.prefix.clone(),
            prefetch: 16,
            delivery_limit: t.delivery_limit,
            confirm_timeout: Duration::from_secs(30),
        },
        tiers: t.tiers.clone(),
        instance: "tester".into(),
        max_in_flight_bytes: 16 << 20,
    })
}

/// What `dlq list` shows for a topology's flow: swept in from its parking queue, then read
/// from the store.
pub async fn dlq_list(
    t: &Topology,
    store: &clw_gateway::store::Store,
) -> clw_gateway::error::Result<Vec<clw_gateway::store::ParkedRow>> {
    broker_transport(t).parked(t.flow, store).await
}

/// What `dlq replay` does for a topology's flow.
pub async fn dlq_replay(
    t: &Topology,
    selection: clw_gateway::sources::parking::Selection<'_>,
    store: &clw_gateway::store::Store,
    actor: &str,
) -> clw_gateway::error::Result<clw_gateway::sources::parking::Replayed> {
    broker_transport(t)
        .replay(t.flow, store, selection, actor)
        .await
}

// ---------------------------------------------------------------- Scotland

/// A CHI number that passes today's rule (04/02/56, check digit right).
pub const CHI: &str = "0402568877";
pub const PRACTICE: &str = "43210";

/// The example referral as a Scottish practice sends it: the practice Organization
/// carries only its Scottish practice code, and the patient only a CHI number.
pub fn scottish_referral() -> Value {
    let mut b = referral();
    for e in b["entry"].as_array_mut().unwrap() {
        let r = &mut e["resource"];
        match r["resourceType"].as_str() {
            Some("Organization") if r["identifier"][0]["value"] == "GP5" => {
                r["identifier"] = serde_json::json!([{"system": clw_gateway::model::identifiers::SCOTTISH_PRACTICE_SYSTEM, "value": PRACTICE}]);
            }
            Some("Patient") => {
                r["identifier"] = serde_json::json!([{"system": "http://fhir.nhs.scot.uk/Id/national/chi-number", "value": CHI}]);
            }
            _ => {}
        }
    }
    b
}

/// A platform event about `referral_id`, naming the patient by CHI only.
pub fn chi_event(referral_id: &str, id: &str, kind: &str, extra: Value) -> Value {
    let mut e = serde_json::json!({
        "event_id": id,
        "type": kind,
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": referral_id,
                     "patient": {"chi_number": CHI, "date_of_birth": "1970-09-11", "family_name": "Smith"}},
        "practitioner": {"name": "Sam Link", "role": "Community link worker"},
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        e[k] = v.clone();
    }
    e
}

/// Waits until something listens on 127.0.0.1:`port` (a child gateway's ingress).
pub async fn listening(port: u16) {
    eventually("the ingress to listen", WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await
}

/// Waits until `n` messages of `flow` are delivered.
pub async fn wait_delivered(store: &clw_gateway::store::Store, flow: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = store.count_by_state(flow).await.unwrap();
        let delivered = counts
            .iter()
            .find(|(st, _)| st == "delivered")
            .map(|(_, n)| *n)
            .unwrap_or(0);
        if delivered == n {
            return;
        }
        if Instant::now() >= deadline {
            let parked: Vec<String> = store
                .parked(Some(flow), None, 20)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|p| format!("{} {:?}: {}", p.message_id, p.field, p.reason))
                .collect();
            panic!(
                "timed out after 60 s waiting for {n} {flow} messages delivered; by state: {counts:?}; parked: {parked:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The port a test server child announces as its first line, `{prefix}{port}` (it binds
/// port 0 and says which it got), waiting up to 60 s.
pub async fn announced_port(
    child: &mut std::process::Child,
    prefix: &'static str,
    what: &str,
) -> u16 {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .unwrap_or_else(|_| panic!("{what} started within 60 s"))
        .unwrap();
    line.trim()
        .strip_prefix(prefix)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{what} said where it listens: {line:?}"))
}

/// A test CA with a server certificate for localhost / 127.0.0.1 and a client
/// certificate, all signed by the CA, written as PEM files (`ca.pem`, `server.pem`,
/// `server.key`, `client.pem`, `client.key`).
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "clw-gateway test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        write("ca.pem", ca.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca, ca_key);
        for (name, sans, usage) in [
            (
                "server",
                vec!["localhost".to_string(), "127.0.0.1".to_string()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            (
                "client",
                vec!["clw-gateway.test".to_string()],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.extended_key_usages = vec![usage];
            write(
                &format!("{name}.pem"),
                p.signed_by(&key, &issuer).unwrap().pem(),
            );
            write(&format!("{name}.key"), key.serialize_pem());
        }
        TestPki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A child gateway's configuration file in `s`'s folder, on the test broker: referrals to
/// the webhook `hook`, events through the ingress on `port` from platform `links` (its
/// secret in `secret_env`), written by `writers` (`[destinations.NAME]` tables). Its path.
pub fn child_message_back_config(
    s: &Setup,
    hook: &str,
    port: u16,
    secret_env: &str,
    writers: &[(&str, String)],
) -> PathBuf {
    let tables: String = writers
        .iter()
        .map(|(name, table)| format!("[destinations.{name}]\n{table}"))
        .collect();
    let names: Vec<String> = writers.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let path = s.dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ninstance = \"{p}\"\ndata_dir = \"{d}\"\nclaim_ttl = \"2s\"\n[store]\nurl = \"{u}\"\n\
             [http]\nenabled = false\n[mappings]\ndir = \"{m}\"\n\
             [broker]\nurl = \"{a}\"\nprefix = \"{p}\"\nprefetch = 8\n[retry]\ntiers = [\"300ms\", \"1s\", \"2s\", \"3s\"]\n\
             [referrals]\ndestinations = [\"clw\"]\n{TEST_CONSENT_COVERS}\n\
             [destinations.clw]\nkind = \"webhook\"\nurl = \"{hook}\"\nallow = {PRSB_ALLOW}\n\
             {tables}\
             [message_back]\nwriters = [{names}]\n\
             [message_back.platforms.links]\nsecret = {{ env = \"{secret_env}\" }}\ndestinations = [\"clw\"]\n\
             [ingress]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n",
            p = s.prefix,
            d = s.dir.path().display(),
            u = s.store_url,
            m = repo_path("mappings").display(),
            a = amqp_url(),
            names = names.join(", "),
        ),
    )
    .unwrap();
    path
}

// ---------------------------------------------------------------- the binary

/// The gateway binary run from the repository with `args` and `env` (no `CLW_CONFIG`
/// from the caller's environment), to completion.
pub fn gateway(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_clw-gateway"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CLW_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Its standard output then standard error, as text.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
