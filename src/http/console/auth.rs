//! Who is asking: sign-in with its per-name and per-client throttle, the session cookie
//! kept (by digest) in the store, a trusted proxy's header, or HTTP Basic credentials.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::pages::page;
use super::{Console, SESSION, Shared, Who, form};

impl Console {
    /// Whether sign-ins for any of `keys` are refused for now (too many failures).
    fn locked(&self, keys: &[String]) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let lockout = self.access.lockout;
        f.retain(|_, (_, since)| since.elapsed() < lockout);
        // Behind a proxy every operator shares its address: that count has more room.
        let limit = |k: &str| {
            let n = self.access.max_failed_logins;
            if k.starts_with("addr:") {
                n.saturating_mul(4)
            } else {
                n
            }
        };
        keys.iter()
            .any(|k| f.get(k).is_some_and(|(n, _)| *n >= limit(k)))
    }

    fn failed(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            let e = f.entry(k.clone()).or_insert((0, Instant::now()));
            e.0 += 1;
        }
    }

    fn succeeded(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            f.remove(k);
        }
    }

    /// The operator named, if their secret is `secret`.
    fn check(&self, name: &str, secret: &str) -> Option<Who> {
        let o = self.access.operators.get(name)?;
        let expected = o.secret.as_deref()?;
        same(secret, expected).then(|| Who::of(o))
    }

    /// A digest of the operator's current secret (empty without one), kept with each
    /// session.
    fn fingerprint(&self, name: &str) -> String {
        self.access
            .operators
            .get(name)
            .and_then(|o| o.secret.as_deref())
            .map(|s| digest(&format!("clw-console-secret:{s}")))
            .unwrap_or_default()
    }

    fn who(&self, name: &str) -> Option<Who> {
        self.access.operators.get(name).map(Who::of)
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn digest(session: &str) -> String {
    hex::encode(Sha256::digest(session.as_bytes()))
}

/// The operator: named by the trusted proxy header (when configured), by a session
/// the store still holds, or by HTTP Basic credentials.
pub(super) async fn operator(c: &Console, headers: &HeaderMap) -> Option<Who> {
    if let Some(h) = &c.access.trusted_user_header {
        let named = headers.get(h.as_str()).and_then(|v| v.to_str().ok());
        if let Some(name) = named {
            return c.who(name.trim());
        }
    }
    if let Some(s) = cookie(headers, SESSION) {
        let session = c.store.session_operator(&digest(s)).await.ok().flatten();
        // Held only while the operator is configured with the secret they signed in
        // with: removing them, or changing it, ends their sessions.
        if let Some((name, signed_with)) = session
            && same(&c.fingerprint(&name), &signed_with)
            && let Some(who) = c.who(&name)
        {
            return Some(who);
        }
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())?;
    let (name, secret) = basic.split_once(':')?;
    let keys = [format!("name:{name}")];
    if c.locked(&keys) {
        return None;
    }
    let who = c.check(name, secret);
    if who.is_none() {
        c.failed(&keys);
    }
    who
}

/// A form POST from another site is refused: the browser says where it came from.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser cross-site request (those carry Origin)
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

pub(super) async fn login_form() -> Response {
    page(
        "Sign in",
        "<form method=\"post\" action=\"/console/login\">\
         <p><label>Operator <input name=\"operator\" id=\"operator\" required maxlength=\"64\" autocomplete=\"username\"></label></p>\
         <p><label>Secret <input name=\"secret\" id=\"secret\" type=\"password\" required autocomplete=\"current-password\"></label></p>\
         <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>",
    )
}

pub(super) async fn login(
    State(c): State<Shared>,
    peer: Option<axum::Extension<crate::sources::listener::Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let f = form(&body);
    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(secret), Some(name)) = (get("secret"), get("operator").map(str::trim)) else {
        return (StatusCode::BAD_REQUEST, "name and secret are needed").into_response();
    };
    let mut keys = vec![format!("name:{name}")];
    if let Some(axum::Extension(p)) = peer {
        keys.push(format!("addr:{}", p.0.ip()));
    }
    if c.locked(&keys) {
        let minutes = c.access.lockout.as_secs().div_ceil(60);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page(
                "Sign in",
                &format!("<p class=\"warn\" id=\"locked\">Too many failed sign-ins: try again in {minutes} minutes.</p>"),
            ),
        )
            .into_response();
    }
    let Some(who) = c.check(name, secret) else {
        c.failed(&keys);
        return (
            StatusCode::UNAUTHORIZED,
            page("Sign in", "<p class=\"warn\">That operator and secret do not match.</p><p><a href=\"/console/login\">Try again</a></p>"),
        )
            .into_response();
    };
    c.succeeded(&keys);
    let session = hex::encode(crate::secret::seal::new_key());
    let ttl = c.access.session_ttl;
    let until = crate::store::now_ms() + ttl.as_millis() as i64;
    if let Err(e) = c
        .store
        .session_start(
            &digest(&session),
            &who.name,
            &c.fingerprint(&who.name),
            until,
        )
        .await
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store did not answer: {}", e.reason()),
        )
            .into_response();
    }
    let mut r = Redirect::to("/console").into_response();
    let secure = if c.access.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let v = format!(
        "{SESSION}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        ttl.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Ends the session in the store (so no copy of the cookie works anywhere) and clears
/// the cookie.
pub(super) async fn logout(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(s) = cookie(&headers, SESSION) {
        let _ = c.store.session_end(&digest(s)).await;
    }
    let mut r = Redirect::to("/console/login").into_response();
    let secure = if c.access.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
