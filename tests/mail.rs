//! The mail record writer (`kind = "mail"`) against a real SMTP server (aiosmtpd,
//! tests/smtp) that requires STARTTLS and AUTH, as NHSmail does: each event one email to
//! the practice's mailbox, the summary as a PDF and the codes in the text, exactly once;
//! what cannot be sent is parked, named.

mod common;

use std::time::Duration;

use clw_gateway::model::Flow;
use clw_gateway::sources::parking::Selection;
use common::smtp::{SmtpServer, read_mail};
use common::*;
use serde_json::{Value, json};

const LINKS_SECRET: &str = "links-signing-secret";
const SMTP_USER: &str = "clw-gateway@nhs.net";
const SMTP_PASSWORD: &str = "mail-password-1";
const PRACTICE_MAILBOX: &str = "gp5.practice@nhs.net";
const RECORD_ALLOW: &str =
    "[\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]";

/// A platform event about `referral_id`'s patient (the example referral's).
fn event(referral_id: &str, id: &str, kind: &str, extra: Value) -> Value {
    let mut e = json!({
        "event_id": id,
        "type": kind,
        "occurred_at": "2026-11-25T10:00:00Z",
        "referral": {"message_id": referral_id,
                     "patient": {"nhs_number": "9912003888", "date_of_birth": "1970-09-11", "family_name": "Smith"}},
        "practitioner": {"name": "Sam Link", "role": "Social prescribing link worker"},
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        e[k] = v.clone();
    }
    e
}

/// Accepted, a contact, a SWEMWBS score, closed.
fn four_events(referral_id: &str) -> Vec<Value> {
    vec![
        event(referral_id, "evt-a1", "referral-accepted", json!({})),
        event(
            referral_id,
            "evt-c1",
            "contact",
            json!({"contact": {"mode": "face-to-face", "date": "2026-11-26", "duration_minutes": 45}}),
        ),
        event(
            referral_id,
            "evt-s1",
            "assessment",
            json!({"assessment": {"instrument": "SWEMWBS", "score": 19, "date": "2026-11-26"}}),
        ),
        event(
            referral_id,
            "evt-x1",
            "closed",
            json!({"closed": {"reason": "completed", "outcome": "Attends the walking group weekly"}}),
        ),
    ]
}

/// `[destinations.gp-mail]` for `server`, its password read from `password_env`.
fn mail_table(server: &SmtpServer, mailboxes: &str, password_env: &str) -> String {
    format!(
        "kind = \"mail\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
         from = \"Leeds Community Links <links@nhs.net>\"\n\
         username = {{ env = \"CLW_TEST_SMTP_USER\" }}\npassword = {{ env = \"{password_env}\" }}\n\
         mailboxes = {mailboxes}\ntimeout = \"5s\"\nread_codes = true\nallow = {RECORD_ALLOW}\n",
        server.port,
        server.ca_file().display()
    )
}

/// `[destinations.gp-mail]` for `server`, writing to GP5's mailbox.
fn gp5_table(server: &SmtpServer, password_env: &str) -> String {
    mail_table(
        server,
        &format!("{{ \"GP5\" = \"{PRACTICE_MAILBOX}\" }}"),
        password_env,
    )
}

/// A gateway on the test broker whose message back is written by `gp-mail`, with a
/// referral delivered that events can name; its id.
async fn gateway(name: &str, table: String) -> (Harness, String) {
    gateway_for(name, table, &referral()).await
}

/// As [`gateway`], with the referral `body` delivered.
async fn gateway_for(name: &str, table: String, body: &Value) -> (Harness, String) {
    // SAFETY: constant values; no test reads a different one.
    unsafe {
        std::env::set_var("CLW_TEST_LINKS_SECRET", LINKS_SECRET);
        std::env::set_var("CLW_TEST_SMTP_USER", SMTP_USER);
        std::env::set_var("CLW_TEST_SMTP_PASSWORD", SMTP_PASSWORD);
        std::env::set_var("CLW_TEST_SMTP_WRONG_PASSWORD", "not-the-password");
    }
    let h = Harness::start_with(name, &[], &["300ms", "1s"], |c| {
        c.mappings.dir = repo_path("mappings");
        c.destinations.insert("gp-mail", destination(&table));
        c.message_back = Some(
            toml::from_str(
                "writers = [\"gp-mail\"]\n[platforms.links]\nsecret = { env = \"CLW_TEST_LINKS_SECRET\" }\ndestinations = [\"clw\"]\n",
            )
            .unwrap(),
        );
        c.ingress.enabled = true;
        c.ingress.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let referral_id = unique("ref");
    h.publish(&referral_id, body).await;
    h.wait_state(&referral_id, "delivered").await;
    (h, referral_id)
}

/// Posts one event to the gateway's signed door, as the platform does.
async fn post(h: &Harness, body: &Value) {
    let port = h.gw.ingress_addr.unwrap().port();
    let sent = signed_post(
        port,
        "/v1/events/links",
        "application/json",
        body.to_string().into_bytes(),
        fresh_timestamp(),
        LINKS_SECRET,
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
}

/// The Message-ID the journal recorded for an event's send.
async fn journalled_id(h: &Harness, id: &str) -> String {
    let (state, value) =
        h.gw.store
            .effect("message-back", id, "gp-mail", "mail-send")
            .await
            .unwrap()
            .expect("the send journalled");
    assert_eq!(state, "done");
    value.expect("with its Message-ID")
}

/// Each event, sent twice, is one email to the practice's mailbox: the readable summary
/// as a PDF, the codes in the text, the patient named only inside; a resend after it
/// was written sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_practice_mailbox_once_with_its_codes_and_the_pdf() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let table = mail_table(
        &smtp,
        &format!("{{ \"GP5\" = \"{PRACTICE_MAILBOX}\", \"GP6\" = \"gp6.practice@nhs.net\" }}"),
        "CLW_TEST_SMTP_PASSWORD",
    );
    let (h, referral_id) = gateway("mail-events", table).await;
    let events = four_events(&referral_id);
    for e in &events {
        post(&h, e).await;
        post(&h, e).await;
    }
    let ids = [
        "links:evt-a1",
        "links:evt-c1",
        "links:evt-s1",
        "links:evt-x1",
    ];
    for id in ids {
        wait_message(&h.gw.store, "message-back", id, "delivered").await;
    }
    post(&h, &events[0]).await;
    h.wait_audit_flow("message-back", "links:evt-a1", "duplicate")
        .await;

    let files = smtp.messages();
    assert_eq!(files.len(), 4, "one email per event");
    let mails: Vec<Value> = files.iter().map(|f| read_mail(f)).collect();
    let mut message_ids = Vec::new();
    for m in &mails {
        let hd = &m["headers"];
        assert_eq!(m["defects"], json!([]), "{m}");
        assert_eq!(hd["To"], PRACTICE_MAILBOX);
        assert_eq!(hd["From"], "Leeds Community Links <links@nhs.net>");
        assert_eq!(
            hd["Subject"],
            format!("Social prescribing: message back (referral {referral_id})")
        );
        assert_eq!(hd["Auto-Submitted"], "auto-generated");
        // No patient detail in any header.
        let headers = hd.to_string();
        for private in [
            "9912003888",
            "991 200 3888",
            "SMITH",
            "Smith",
            "Richard",
            "1970",
        ] {
            assert!(!headers.contains(private), "{private} in {headers}");
        }
        let attachments = m["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["content_type"], "application/pdf");
        assert_eq!(
            attachments[0]["filename"],
            "social-prescribing-2026-11-25.pdf"
        );
        message_ids.push(hd["Message-ID"].as_str().unwrap().to_string());
    }
    message_ids.sort();
    message_ids.dedup();
    assert_eq!(message_ids.len(), 4, "a Message-ID per event");
    for id in ids {
        let journalled = journalled_id(&h, id).await;
        assert!(
            journalled.starts_with('<') && journalled.ends_with("@nhs.net>"),
            "{journalled}"
        );
        assert!(message_ids.contains(&journalled), "{journalled}");
    }

    let by_text = |needle: &str| {
        mails
            .iter()
            .find(|m| m["text"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no email says {needle}"))
    };
    let accepted = by_text("Social prescribing referral accepted");
    let text = accepted["text"].as_str().unwrap();
    assert!(text.contains("871731000000106"), "{text}");
    assert!(text.contains("8T09."), "Read v2 beside: {text}");
    let score = by_text("SWEMWBS score 19");
    let text = score["text"].as_str().unwrap();
    assert!(text.contains("718466001"), "{text}");
    assert!(text.contains("value 19"), "{text}");
    by_text("Social prescribing support ended");
    by_text("Link worker contact (face to face)");
    for m in &mails {
        let pdf = MeshSandbox::pdf_text(m["attachments"][0]["base64"].as_str().unwrap());
        assert!(pdf.contains("SMITH, Richard"), "{pdf}");
        assert!(pdf.contains("NHS number 991 200 3888"), "{pdf}");
    }
    let pdf = MeshSandbox::pdf_text(score["attachments"][0]["base64"].as_str().unwrap());
    assert!(pdf.contains("SWEMWBS score 19"), "{pdf}");
    assert!(pdf.contains("718466001"), "{pdf}");
    h.finish().await;
}

/// The server takes the message but its answer never arrives: the outcome is unknown,
/// so the event is parked for a person and not sent again; resolved as "resend" and
/// replayed, it goes once more under the same Message-ID, so the practice can tell the
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_parked_unknown_and_the_resend_carries_the_same_message_id() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let table = gp5_table(&smtp, "CLW_TEST_SMTP_PASSWORD");
    let (h, referral_id) = gateway("mail-lost", table).await;
    smtp.drop_next_answer();
    post(&h, &four_events(&referral_id)[0]).await;
    let id = "links:evt-a1";
    let row = wait_message(&h.gw.store, "message-back", id, "parked").await;
    let reason = row.last_error.unwrap();
    assert!(
        reason.contains("outcome unknown, so not sent again"),
        "{reason}"
    );
    let d = h.gw.store.deliveries("message-back", id).await.unwrap();
    assert_eq!(d[0].state, "unknown");
    assert!(!smtp.fault_pending());
    assert_eq!(smtp.messages().len(), 1, "it did arrive");
    h.wait_parked("message-back", 1).await;

    // The person finds no email in the mailbox (say), and asks for it to be sent again.
    h.gw.store
        .resolve("message-back", id, "gp-mail", false, "tester")
        .await
        .unwrap();
    let events = h.t.for_flow(Flow::MessageBack);
    dlq_replay(&events, Selection::Id(id), &h.gw.store, "tester")
        .await
        .unwrap();
    wait_message(&h.gw.store, "message-back", id, "delivered").await;
    let files = smtp.wait_messages(2, WAIT).await;
    assert_eq!(files.len(), 2);
    let first = read_mail(&files[0]);
    let second = read_mail(&files[1]);
    assert_eq!(
        first["headers"]["Message-ID"], second["headers"]["Message-ID"],
        "the same Message-ID"
    );
    assert_eq!(
        second["headers"]["Message-ID"].as_str().unwrap(),
        journalled_id(&h, id).await
    );
    h.finish().await;
}

/// A 4xx at the end of the message is a refusal for now: retried, then one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_refusal_is_retried_and_sends_once() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let table = gp5_table(&smtp, "CLW_TEST_SMTP_PASSWORD");
    let (h, referral_id) = gateway("mail-4xx", table).await;
    smtp.refuse_next();
    post(&h, &four_events(&referral_id)[1]).await;
    let id = "links:evt-c1";
    wait_message(&h.gw.store, "message-back", id, "delivered").await;
    assert!(!smtp.fault_pending(), "the first attempt was refused");
    let d = h.gw.store.deliveries("message-back", id).await.unwrap();
    assert!(d[0].attempts >= 2, "{d:?}");
    assert_eq!(smtp.messages().len(), 1, "one email");
    h.finish().await;
}

/// A practice the writer has no mailbox for: parked at once naming `practice` and the
/// `mailboxes` key, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practice_with_no_mailbox_is_parked_naming_practice() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let table = mail_table(
        &smtp,
        "{ \"GP6\" = \"gp6.practice@nhs.net\" }",
        "CLW_TEST_SMTP_PASSWORD",
    );
    let (h, referral_id) = gateway("mail-nobox", table).await;
    post(&h, &four_events(&referral_id)[0]).await;
    let parked = h.wait_parked("message-back", 1).await;
    assert_eq!(parked[0].error_class, "permanent");
    assert_eq!(parked[0].field.as_deref(), Some("practice"));
    assert!(
        parked[0]
            .reason
            .contains("no mailbox for practice GP5 in destinations.gp-mail.mailboxes"),
        "{}",
        parked[0].reason
    );
    assert_eq!(parked[0].attempts, 1, "parked at once");
    assert!(smtp.messages().is_empty());
    h.finish().await;
}

/// The server refuses the gateway's credentials (535): permanent, parked, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_parked_as_permanent() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let table = gp5_table(&smtp, "CLW_TEST_SMTP_WRONG_PASSWORD");
    let (h, referral_id) = gateway("mail-password", table).await;
    post(&h, &four_events(&referral_id)[0]).await;
    let parked = h.wait_parked("message-back", 1).await;
    assert_eq!(parked[0].error_class, "permanent");
    let reason = &parked[0].reason;
    assert!(reason.contains("authentication"), "{reason}");
    assert!(reason.contains("535"), "{reason}");
    assert!(!reason.contains("not-the-password"), "{reason}");
    assert!(smtp.messages().is_empty());
    h.finish().await;
}

/// `tls = "implicit"`: TLS from the first byte (port 465 servers) delivers as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_too() {
    let smtp = SmtpServer::start_implicit(SMTP_USER, SMTP_PASSWORD).await;
    let table = gp5_table(&smtp, "CLW_TEST_SMTP_PASSWORD")
        .replace("kind = \"mail\"\n", "kind = \"mail\"\ntls = \"implicit\"\n");
    let (h, referral_id) = gateway("mail-implicit", table).await;
    post(&h, &four_events(&referral_id)[0]).await;
    wait_message(&h.gw.store, "message-back", "links:evt-a1", "delivered").await;
    let files = smtp.messages();
    assert_eq!(files.len(), 1);
    assert_eq!(read_mail(&files[0])["headers"]["To"], PRACTICE_MAILBOX);
    h.finish().await;
}

/// A server whose certificate the gateway cannot verify (no `ca_file` for the test CA)
/// is sent nothing: retried as a network failure, then parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_it_cannot_verify_is_sent_nothing() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let ca_line = format!("ca_file = \"{}\"\n", smtp.ca_file().display());
    let table = gp5_table(&smtp, "CLW_TEST_SMTP_PASSWORD").replace(&ca_line, "");
    let (h, referral_id) = gateway("mail-untrusted", table).await;
    post(&h, &four_events(&referral_id)[0]).await;
    let parked = h.wait_parked("message-back", 1).await;
    assert_eq!(parked[0].error_class, "transient", "retried, then parked");
    assert!(parked[0].attempts > 1, "{:?}", parked[0]);
    assert!(
        parked[0].reason.contains("STARTTLS"),
        "{}",
        parked[0].reason
    );
    assert!(smtp.messages().is_empty());
    h.finish().await;
}

/// What the gateway meets: the server says nothing of mail before STARTTLS.
#[tokio::test]
async fn the_server_refuses_mail_in_plain_text() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", smtp.port))
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    // The last line of a reply: "NNN " rather than "NNN-".
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "the server closed the connection");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }
    assert!(reply(&mut r).await.starts_with("220"));
    w.write_all(b"EHLO plain.test\r\n").await.unwrap();
    assert!(reply(&mut r).await.starts_with("250"));
    w.write_all(b"AUTH PLAIN AGNsdy1nYXRld2F5QG5ocy5uZXQAbWFpbC1wYXNzd29yZC0x\r\n")
        .await
        .unwrap();
    assert!(reply(&mut r).await.starts_with("530"));
    w.write_all(b"MAIL FROM:<links@nhs.net>\r\n").await.unwrap();
    assert!(reply(&mut r).await.starts_with("530"));
}

/// Every bad key is named at start-up; `tls` has no plain-text choice.
#[test]
fn a_mail_writer_names_each_bad_key_at_start_up() {
    let ca = TestPki::new();
    // SAFETY: constant values; no test reads a different one.
    unsafe {
        std::env::set_var("CLW_TEST_SMTP_USER", SMTP_USER);
        std::env::set_var("CLW_TEST_SMTP_PASSWORD", SMTP_PASSWORD);
    }
    let good = format!(
        "kind = \"mail\"\nhost = \"send.nhs.net\"\nca_file = \"{}\"\nfrom = \"links@nhs.net\"\n\
         username = {{ env = \"CLW_TEST_SMTP_USER\" }}\npassword = {{ env = \"CLW_TEST_SMTP_PASSWORD\" }}\n\
         mailboxes = {{ \"GP5\" = \"gp5.practice@nhs.net\", \"70001\" = \"practice.70001@nhs.scot\" }}\n\
         allow = {RECORD_ALLOW}\n",
        ca.path("ca.pem").display()
    );
    let d = build_destination("gp-mail", &good);
    assert_eq!(d.kind, "mail");
    assert!(!d.resends_safely(), "journalled");

    let mappings =
        clw_gateway::mapping::MappingSet::load_configured(&repo_path("mappings")).unwrap();
    let mut schemas = clw_gateway::mapping::schema::SchemaSet::default();
    let bad = "kind = \"mail\"\nhost = \"send.nhs.net:587\"\nport = 0\nca_file = \"/no/such/ca.pem\"\n\
               from = \"not an address\"\nusername = { env = \"CLW_TEST_SMTP_USER\" }\n\
               password = { env = \"CLW_TEST_SMTP_NOT_SET\" }\ntimeout = \"0s\"\nsubject = \"\"\n\
               mailboxes = { \"GP5\" = \"nobody\", \"G P\" = \"x@nhs.net\", \"GP7\" = \"pr\u{e0}ctice@nhs.net\" }\nallow = [\"event\"]\n";
    let problems = match clw_gateway::deliver::Destination::build(
        "gp-mail",
        &destination(bad),
        &mappings,
        &mut schemas,
    ) {
        Ok(_) => panic!("built"),
        Err(p) => p,
    };
    let mut keys: Vec<String> = problems.iter().filter_map(|e| e.field.clone()).collect();
    keys.sort();
    for key in [
        "host",
        "port",
        "from",
        "password",
        "timeout",
        "subject",
        "mailboxes.GP5",
        "mailboxes.G P",
        "mailboxes.GP7",
    ] {
        assert!(
            keys.contains(&format!("destinations.gp-mail.{key}")),
            "{key} not named: {keys:?}"
        );
    }
    let no_mailboxes = good.replace(
        "mailboxes = { \"GP5\" = \"gp5.practice@nhs.net\", \"70001\" = \"practice.70001@nhs.scot\" }",
        "mailboxes = {}",
    );
    let problems = clw_gateway::deliver::Destination::build(
        "gp-mail",
        &destination(&no_mailboxes),
        &mappings,
        &mut schemas,
    )
    .err()
    .expect("refused");
    assert_eq!(
        problems[0].field.as_deref(),
        Some("destinations.gp-mail.mailboxes")
    );
    let missing_ca = good.replace(&ca.path("ca.pem").display().to_string(), "/no/such/ca.pem");
    let problems = clw_gateway::deliver::Destination::build(
        "gp-mail",
        &destination(&missing_ca),
        &mappings,
        &mut schemas,
    )
    .err()
    .expect("refused");
    assert_eq!(
        problems[0].field.as_deref(),
        Some("destinations.gp-mail.ca_file")
    );
    for plain in ["none", "plain", "none-loopback-test"] {
        let text = good.replace(
            "kind = \"mail\"\n",
            &format!("kind = \"mail\"\ntls = \"{plain}\"\n"),
        );
        assert!(
            toml::from_str::<clw_gateway::config::DestinationConfig>(&text).is_err(),
            "tls = {plain} accepted"
        );
    }
    let implicit = good.replace("kind = \"mail\"\n", "kind = \"mail\"\ntls = \"implicit\"\n");
    build_destination("gp-mail", &implicit);
}

/// A Scottish practice by its practice code, a CHI-only patient: the email goes to the
/// mailbox listed for the practice code, the document names the patient by CHI and the
/// practice by its code, with Read v2 beside SNOMED CT by the practice's nation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scottish_practice_gets_its_chi_only_patient_by_mail() {
    let smtp = SmtpServer::start(SMTP_USER, SMTP_PASSWORD).await;
    let table = mail_table(
        &smtp,
        &format!("{{ \"{PRACTICE}\" = \"practice.{PRACTICE}@nhs.scot\" }}"),
        "CLW_TEST_SMTP_PASSWORD",
    )
    .replace("read_codes = true\n", "");
    let (h, referral_id) = gateway_for("mail-scot", table, &scottish_referral()).await;
    post(
        &h,
        &chi_event(&referral_id, "evt-a", "referral-accepted", json!({})),
    )
    .await;
    wait_message(&h.gw.store, "message-back", "links:evt-a", "delivered").await;
    let files = smtp.messages();
    assert_eq!(files.len(), 1);
    let m = read_mail(&files[0]);
    assert_eq!(m["headers"]["To"], format!("practice.{PRACTICE}@nhs.scot"));
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("8T09."),
        "Read v2 for a Scottish practice: {text}"
    );
    let pdf = MeshSandbox::pdf_text(m["attachments"][0]["base64"].as_str().unwrap());
    assert!(pdf.contains("CHI number 040 256 8877"), "{pdf}");
    assert!(pdf.contains(&format!("practice code {PRACTICE}")), "{pdf}");
    assert!(!pdf.contains("NHS number"), "{pdf}");
    h.finish().await;
}
