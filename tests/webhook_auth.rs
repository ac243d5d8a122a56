//! Webhook authentication against local servers that check each mechanism: an OAuth2
//! token endpoint, a receiver that verifies the HMAC signature on its own, a TLS server
//! that demands a client certificate (certificates made by the test), a CONNECT proxy,
//! and the https-only rule.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clw_gateway::deliver::Destination;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ALLOW: &str = "allow = [\"person_demographics\", \"contact_preferences\", \"referral_details\", \"referrer_details\", \"gp_practice\", \"referred_to\", \"consent\"]\n";

async fn deliver(
    d: &Destination,
) -> Result<clw_gateway::deliver::Sent, clw_gateway::error::GatewayError> {
    let (store, _db) = temp_store().await;
    send_payload(
        d,
        &store,
        "msg-auth-1",
        Vec::new(),
        json!({"referral": {"status": "active"}}),
    )
    .await
}

async fn serve_http(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

// ---------------------------------------------------------------- OAuth2

#[derive(Default)]
struct Auth {
    /// Tokens issued, in order.
    issued: Mutex<Vec<String>>,
    /// Tokens the receiver no longer accepts.
    revoked: Mutex<Vec<String>>,
    expires_in: Mutex<u64>,
    /// Requests the receiver accepted, with the token each carried.
    accepted: Mutex<Vec<String>>,
    refused: AtomicUsize,
}

/// RFC 6749 §4.4: client credentials by HTTP Basic, grant_type and scope in the form.
async fn token_endpoint(
    State(s): State<Arc<Auth>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    use base64::Engine;
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).to_string());
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
        || get("grant_type") != Some("client_credentials")
        || get("scope") != Some("referrals.write")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request"})),
        );
    }
    if basic.as_deref() != Some("gateway-client:client-s3cret") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        );
    }
    let mut issued = s.issued.lock().unwrap();
    let token = format!("tok-{}", issued.len() + 1);
    issued.push(token.clone());
    let expires_in = *s.expires_in.lock().unwrap();
    (
        StatusCode::OK,
        axum::Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}),
        ),
    )
}

async fn protected(State(s): State<Arc<Auth>>, headers: HeaderMap) -> StatusCode {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let known = s.issued.lock().unwrap().contains(&token);
    if !known || s.revoked.lock().unwrap().contains(&token) {
        s.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    s.accepted.lock().unwrap().push(token);
    StatusCode::OK
}

async fn oauth_world(expires_in: u64) -> (Arc<Auth>, SocketAddr) {
    let s = Arc::new(Auth::default());
    *s.expires_in.lock().unwrap() = expires_in;
    let app = axum::Router::new()
        .route("/oauth2/token", axum::routing::post(token_endpoint))
        .route("/referrals", axum::routing::post(protected))
        .with_state(s.clone());
    (s.clone(), serve_http(app).await)
}

fn oauth_destination(addr: SocketAddr, secret_env: &str, refresh_before: &str) -> Arc<Destination> {
    build_destination(
        "oauth",
        &format!(
            "kind = \"webhook\"\nurl = \"http://{addr}/referrals\"\n{ALLOW}\
             [oauth2]\ntoken_url = \"http://{addr}/oauth2/token\"\nclient_id = \"gateway-client\"\n\
             client_secret = {{ env = \"{secret_env}\" }}\nscope = \"referrals.write\"\nrefresh_before = \"{refresh_before}\"\n"
        ),
    )
}

#[tokio::test]
async fn oauth2_token_is_cached_refreshed_before_expiry_and_once_after_a_401() {
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_OAUTH_SECRET", "client-s3cret\n") };
    let (s, addr) = oauth_world(3600).await;
    let d = oauth_destination(addr, "CLW_TEST_OAUTH_SECRET", "60s");

    deliver(&d).await.unwrap();
    deliver(&d).await.unwrap();
    assert_eq!(*s.issued.lock().unwrap(), ["tok-1"], "one token for both");
    assert_eq!(*s.accepted.lock().unwrap(), ["tok-1", "tok-1"]);

    // The receiver stops accepting it (revoked or rotated): one 401, one fresh token,
    // one resend.
    s.revoked.lock().unwrap().push("tok-1".into());
    deliver(&d).await.unwrap();
    assert_eq!(*s.issued.lock().unwrap(), ["tok-1", "tok-2"]);
    assert_eq!(s.refused.load(Ordering::SeqCst), 1);
    assert_eq!(s.accepted.lock().unwrap().last().unwrap(), "tok-2");

    // A second 401 for a fresh token is not retried again: the answer stands.
    s.revoked.lock().unwrap().push("tok-2".into());
    s.revoked.lock().unwrap().push("tok-3".into());
    let e = deliver(&d).await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e}");
    assert_eq!(s.issued.lock().unwrap().len(), 3, "exactly one refresh");
}

#[tokio::test]
async fn oauth2_token_is_refreshed_before_it_expires() {
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_OAUTH_SECRET_2", "client-s3cret") };
    // Tokens live 2 s; refresh 1 s before expiry.
    let (s, addr) = oauth_world(2).await;
    let d = oauth_destination(addr, "CLW_TEST_OAUTH_SECRET_2", "1s");
    deliver(&d).await.unwrap();
    deliver(&d).await.unwrap();
    assert_eq!(s.issued.lock().unwrap().len(), 1);
    // Past the refresh point but before expiry: a new token, no 401 first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    deliver(&d).await.unwrap();
    assert_eq!(*s.issued.lock().unwrap(), ["tok-1", "tok-2"]);
    assert_eq!(
        s.refused.load(Ordering::SeqCst),
        0,
        "refreshed before a 401"
    );
}

#[tokio::test]
async fn oauth2_refused_client_credentials_are_a_permanent_error_naming_the_token_endpoint() {
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_OAUTH_WRONG", "not-the-secret") };
    let (s, addr) = oauth_world(3600).await;
    let d = oauth_destination(addr, "CLW_TEST_OAUTH_WRONG", "60s");
    let e = deliver(&d).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.message.contains("token endpoint"), "{e}");
    assert!(e.message.contains("invalid_client"), "{e}");
    assert!(!e.message.contains("not-the-secret"), "{e}");
    assert!(
        s.accepted.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
}

// ---------------------------------------------------------------- HMAC signing

type Signed = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn signed_receiver(State(s): State<Signed>, headers: HeaderMap, body: Bytes) -> StatusCode {
    s.lock().unwrap().push((headers, body));
    StatusCode::ACCEPTED
}

/// What a receiver does, written from the documented scheme (not the gateway's code):
/// HMAC-SHA256 over "<X-CLW-Timestamp>.<body>", hex, after "v1=".
fn receiver_verifies(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let ts = headers["x-clw-timestamp"].to_str().unwrap();
    let sig = headers["x-clw-signature"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    sig == want
}

#[tokio::test]
async fn hmac_signed_requests_verify_at_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hmac.key");
    std::fs::write(&secret_file, "shared-signing-secret\n").unwrap();
    let got: Signed = Arc::default();
    let addr = serve_http(
        axum::Router::new()
            .route("/referrals", axum::routing::post(signed_receiver))
            .with_state(got.clone()),
    )
    .await;
    let d = build_destination(
        "signed",
        &format!(
            "kind = \"webhook\"\nurl = \"http://{addr}/referrals\"\n{ALLOW}\
             [signing]\nsecret = {{ file = {:?} }}\nkey_id = \"2026-12\"\n",
            secret_file.display().to_string()
        ),
    );
    let sent = deliver(&d).await.unwrap();
    assert_eq!(sent.status, Some(202));
    let (headers, body) = got.lock().unwrap()[0].clone();
    assert!(receiver_verifies("shared-signing-secret", &headers, &body));
    assert!(!receiver_verifies("another-secret", &headers, &body));
    assert!(!receiver_verifies("shared-signing-secret", &headers, b"{}"));
    let ts: i64 = headers["x-clw-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(headers["x-clw-key-id"], "2026-12");
    // The same body the receiver got is what was signed, and the gateway's own
    // verifier (used by its event ingress) agrees.
    assert!(
        clw_gateway::secret::signing::verify(
            &[b"shared-signing-secret"],
            Some(&ts.to_string()),
            headers["x-clw-signature"].to_str().ok(),
            &body,
            ts,
            300
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------- TLS: custom CA, mTLS, proxy

fn pem_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// An HTTPS server that answers 200 to any request it completes; with
/// `require_client_cert`, the handshake fails without a certificate the CA signed.
async fn tls_server(pki: &TestPki, require_client_cert: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&pki.path("ca.pem")) {
            roots.add(c).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(
            pem_certs(&pki.path("server.pem")),
            PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"{}")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, served)
}

fn tls_destination(url: &str, tls: &str, extra: &str) -> Arc<Destination> {
    build_destination(
        "tls",
        &format!(
            "kind = \"webhook\"\nurl = \"{url}\"\n{ALLOW}timeout = \"5s\"\n{extra}[tls]\n{tls}"
        ),
    )
}

#[tokio::test]
async fn mutual_tls_with_a_custom_ca_bundle() {
    let pki = TestPki::new();
    let (addr, served) = tls_server(&pki, true).await;
    let url = format!("https://localhost:{}/referrals", addr.port());
    let ca = format!("ca_file = {:?}\n", pki.path("ca.pem").display().to_string());
    let client = format!(
        "client_cert_file = {:?}\nclient_key_file = {:?}\n",
        pki.path("client.pem").display().to_string(),
        pki.path("client.key").display().to_string()
    );

    // The internal CA trusted and the client certificate presented: accepted.
    let d = tls_destination(&url, &format!("{ca}{client}"), "");
    assert_eq!(deliver(&d).await.unwrap().status, Some(200));
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // No client certificate: the server ends the handshake; nothing is served.
    let d = tls_destination(&url, &ca, "");
    let e = deliver(&d).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    // Without the CA bundle the server's certificate is not trusted.
    let d = tls_destination(&url, &client, "");
    assert!(deliver(&d).await.is_err());
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "refused handshakes served nothing"
    );
}

/// A CONNECT proxy that tunnels to the requested port and counts tunnels.
async fn connect_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                log.lock().unwrap().push(line.clone());
                let Some(target) = line
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                };
                let port = target.rsplit(':').next().unwrap_or("443");
                let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")).await else {
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_https_proxy_carries_the_request() {
    let pki = TestPki::new();
    let (addr, served) = tls_server(&pki, false).await;
    let (proxy, seen) = connect_proxy().await;
    let d = tls_destination(
        &format!("https://localhost:{}/referrals", addr.port()),
        &format!("ca_file = {:?}\n", pki.path("ca.pem").display().to_string()),
        &format!("proxy = \"http://{proxy}\"\n"),
    );
    assert_eq!(deliver(&d).await.unwrap().status, Some(200));
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("CONNECT localhost:{} HTTP/1.1", addr.port())]
    );
}

// ---------------------------------------------------------------- https only

#[test]
fn https_is_required_except_for_loopback_addresses() {
    let mappings =
        clw_gateway::mapping::MappingSet::load_configured(&repo_path("mappings")).unwrap();
    let build = |url: &str| {
        let mut schemas = clw_gateway::mapping::schema::SchemaSet::default();
        Destination::build(
            "hook",
            &destination(&format!("kind = \"webhook\"\nurl = \"{url}\"\n{ALLOW}")),
            &mappings,
            &mut schemas,
        )
        .map(|_| ())
        .map_err(|e| e.iter().map(|e| e.reason()).collect::<Vec<_>>().join("; "))
    };
    for ok in [
        "https://clw.example.org/referrals",
        "http://127.0.0.1:8080/referrals",
        "http://[::1]:8080/referrals",
        "http://localhost:8080/referrals",
    ] {
        assert_eq!(build(ok), Ok(()), "{ok}");
    }
    for bad in [
        "http://clw.example.org/referrals",
        "http://10.1.2.3/referrals",
        "ftp://clw.example.org/",
    ] {
        let e = build(bad).unwrap_err();
        assert!(
            e.starts_with("destinations.hook.url: must be"),
            "{bad}: {e}"
        );
    }
    // The OAuth2 token endpoint too.
    let mut schemas = clw_gateway::mapping::schema::SchemaSet::default();
    let e = Destination::build(
        "hook",
        &destination(&format!(
            "kind = \"webhook\"\nurl = \"https://x.example.org\"\n{ALLOW}\
             [oauth2]\ntoken_url = \"http://auth.example.org/token\"\nclient_id = \"c\"\nclient_secret = {{ env = \"CLW_TEST_OAUTH_SECRET_X\" }}\n"
        )),
        &mappings,
        &mut schemas,
    )
    .map(|_| ())
    .unwrap_err();
    let keys: Vec<_> = e.iter().filter_map(|e| e.field.clone()).collect();
    assert!(
        keys.contains(&"destinations.hook.oauth2.token_url".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"destinations.hook.oauth2.client_secret".to_string()),
        "{keys:?}"
    );
}
