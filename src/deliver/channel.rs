//! How a destination's data travels and is protected, as the information-governance pack
//! reports it (`clw-gateway ig`): the transport, where it goes, its TLS and the kinds of
//! authentication — never a credential's value. Each kind describes its own
//! (`$module::channel` in the kinds table), so a new kind cannot be left out.

use std::path::Path;

use reqwest::Url;
use serde::Serialize;

use super::http::auth::OAuth2Config;
use super::terms::HttpOptions;
use crate::secret::Secret;

/// One destination's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// What carries the data, in words: "HTTPS POST (JSON)", "files in a folder on the
    /// gateway's disk", "SMTP email to each practice's mailbox ...", "HTTPS MESH API ...".
    pub transport: String,
    /// Where it goes: a URL with no user information, query or fragment; a mail host; a
    /// folder path. Never a credential.
    pub endpoint: String,
    /// How it is protected in transit (or, for a folder, at rest): e.g. "TLS, server
    /// certificate checked against the public web roots; mutual TLS (client certificate
    /// PATH)", "STARTTLS, required ...", "none in transit (local disk); files readable and
    /// writable by the gateway's user only (mode 0600)".
    pub tls: String,
    /// The kinds of authentication used, in words ("bearer token", "OAuth2 client
    /// credentials", "HMAC-SHA256 request signature", "API key"); empty: none.
    pub authentication: Vec<String>,
    /// Where each credential is read from — an environment variable's or a file's name,
    /// never its value: "token: environment variable LEEDS_LINKS_TOKEN".
    pub credentials: Vec<String>,
}

impl Channel {
    /// An HTTP kind sending `what` ("POST (JSON)") to `url` with its client keys' TLS and
    /// proxy. A client certificate is an authentication of its own; its key file is a
    /// credential like any other.
    pub fn http(what: &str, url: &str, o: HttpOptions<'_>) -> Channel {
        // `http::endpoint` admits plain http only to a loopback address.
        let plain = Url::parse(url).is_ok_and(|u| u.scheme() == "http");
        let mut ch = Channel {
            transport: format!("{} {what}", if plain { "HTTP" } else { "HTTPS" }),
            endpoint: endpoint_of(url),
            tls: if plain {
                "none: plain HTTP, which the gateway allows only to a loopback address".into()
            } else {
                format!("TLS, {}", roots(o.tls.ca_file.as_deref()))
            },
            authentication: Vec::new(),
            credentials: Vec::new(),
        };
        if let Some(cert) = &o.tls.client_cert_file {
            let mutual = format!("; mutual TLS (client certificate {})", cert.display());
            ch.tls.push_str(&mutual);
            ch.authentication.push("TLS client certificate".into());
        }
        if let Some(key) = &o.tls.client_key_file {
            let key = format!("tls.client_key_file: file {}", key.display());
            ch.credentials.push(key);
        }
        if let Some(proxy) = o.proxy {
            // A CONNECT tunnel carries TLS end to end; plain HTTP is read by the proxy.
            let seen = if plain {
                "which reads the requests"
            } else {
                "a CONNECT tunnel: it sees the host name, not the data"
            };
            let through = format!("; through the proxy {} ({seen})", host_port(proxy));
            ch.tls.push_str(&through);
        }
        ch
    }

    /// A kind writing files into `dir` on the gateway's own disk (`write_private`, and
    /// CSV's appends, open them with mode 0600).
    pub fn folder(dir: &Path) -> Channel {
        Channel {
            transport: "files in a folder on the gateway's disk".into(),
            endpoint: dir.display().to_string(),
            tls: "none in transit (local disk); files readable and writable by the gateway's \
                  user only (mode 0600)"
                .into(),
            authentication: Vec::new(),
            credentials: Vec::new(),
        }
    }

    /// Adds a kind of authentication, in words.
    pub fn auth(mut self, kind: impl Into<String>) -> Channel {
        self.authentication.push(kind.into());
        self
    }

    /// Names where the credential configured under `key` is read from.
    pub fn credential(mut self, key: &str, secret: &Secret) -> Channel {
        self.credentials.push(format!("{key}: {}", secret.source()));
        self
    }

    /// The `token` / `oauth2` keys, as `Auth::build` uses them.
    pub fn bearer(mut self, token: Option<&Secret>, oauth2: Option<&OAuth2Config>) -> Channel {
        if let Some(t) = token {
            self = self.auth("bearer token").credential("token", t);
        }
        if let Some(o) = oauth2 {
            let from = host_port(&o.token_url);
            self = self
                .auth(format!(
                    "OAuth2 client credentials (bearer tokens from {from})"
                ))
                .credential("oauth2.client_secret", &o.client_secret);
        }
        self
    }
}

/// How a server's certificate is checked: the public web roots (Mozilla's, built in),
/// and the extra roots of `ca_file` when it is set.
pub fn roots(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(f) => format!(
            "server certificate checked against the public web roots and the extra roots in {}",
            f.display()
        ),
        None => "server certificate checked against the public web roots".into(),
    }
}

/// A URL as the pack may print it: without user information, query or fragment, which
/// can carry credentials (`https://user:password@host/path?token=...`). What does not
/// parse is cut by hand: from the first `?` or `#`, and up to the last `@`.
pub fn endpoint_of(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            // Neither fails for a URL with a host.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        _ => {
            let url = &url[..url.find(['?', '#']).unwrap_or(url.len())];
            let Some(at) = url.rfind('@') else {
                return url.to_string();
            };
            // Keep a scheme only if it is one: a password may hold "://" too.
            let scheme = url[..at]
                .find("://")
                .filter(|&i| {
                    i > 0
                        && url[..i]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                })
                .map_or("", |i| &url[..i + 3]);
            format!("{scheme}{}", &url[at + 1..])
        }
    }
}

/// `host` or `host:port` of a URL (a proxy, a token endpoint), nothing else.
fn host_port(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) if u.has_host() => {
            let host = u.host_str().unwrap_or_default();
            match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            }
        }
        _ => endpoint_of(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::DestinationConfig;

    #[test]
    fn endpoints_lose_user_information_query_and_fragment() {
        for (url, want) in [
            ("https://user:pw@host/path?token=x#f", "https://host/path"),
            ("https://host/fhir", "https://host/fhir"),
            ("http://127.0.0.1:8080/in?k=v", "http://127.0.0.1:8080/in"),
            // What does not parse is cut by hand.
            ("not a url", "not a url"),
            ("user:pw@host/path?token=x", "host/path"),
            ("https://user:p@ss@host:99999/x#f", "https://host:99999/x"),
            ("us://er:pw@host x", "us://host x"),
            ("user:p://w@host x", "host x"),
        ] {
            assert_eq!(endpoint_of(url), want, "{url}");
        }
    }

    /// A destination of `kind` from its TOML keys.
    fn channel_of(kind: &str, keys: &str) -> Channel {
        let c: DestinationConfig = toml::from_str(&format!("kind = \"{kind}\"\n{keys}"))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        c.channel()
    }

    /// Every credential is named by its variable, and no value is read: the variables
    /// are unset, and the one file's content appears nowhere.
    fn names_sources_only(ch: &Channel, vars: &[&str]) {
        let shown = format!("{ch:?} {}", serde_json::to_string(ch).unwrap());
        for var in vars {
            assert!(
                ch.credentials
                    .iter()
                    .any(|c| c.ends_with(&format!("environment variable {var}"))),
                "{var} not named: {ch:?}"
            );
        }
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn http_kinds_name_their_transport_tls_and_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("signing");
        std::fs::write(&secret, "s3cret-signing-value").unwrap();
        let ch = channel_of(
            "webhook",
            &format!(
                r#"url = "https://u:s3cret@links.example/referrals?key=s3cret"
                proxy = "http://proxyuser:s3cret@proxy.example:3128"
                token = {{ env = "LINKS_TOKEN" }}
                signing = {{ secret = {{ file = "{}" }}, key_id = "k1" }}
                tls = {{ ca_file = "/etc/clw/hscn.pem", client_cert_file = "/etc/clw/me.pem", client_key_file = "/etc/clw/me.key" }}"#,
                secret.display()
            ),
        );
        assert_eq!(ch.transport, "HTTPS POST (JSON)");
        assert_eq!(ch.endpoint, "https://links.example/referrals");
        for part in [
            "public web roots",
            "/etc/clw/hscn.pem",
            "mutual TLS (client certificate /etc/clw/me.pem)",
            "proxy proxy.example:3128",
        ] {
            assert!(ch.tls.contains(part), "{part}: {}", ch.tls);
        }
        assert_eq!(
            ch.authentication,
            [
                "TLS client certificate",
                "bearer token",
                "HMAC-SHA256 request signature (key id k1)"
            ]
        );
        assert!(
            ch.credentials
                .contains(&"tls.client_key_file: file /etc/clw/me.key".into())
        );
        assert!(
            ch.credentials
                .contains(&format!("signing.secret: file {}", secret.display()))
        );
        names_sources_only(&ch, &["LINKS_TOKEN"]);

        let ch = channel_of(
            "webhook",
            r#"url = "http://127.0.0.1:9000/in"
            oauth2 = { token_url = "https://login.example/oauth2/token?x=1", client_id = "gw", client_secret = { env = "LINKS_OAUTH" } }"#,
        );
        assert_eq!(ch.transport, "HTTP POST (JSON)");
        assert!(ch.tls.starts_with("none: plain HTTP"), "{}", ch.tls);
        assert_eq!(
            ch.authentication,
            ["OAuth2 client credentials (bearer tokens from login.example)"]
        );
        names_sources_only(&ch, &["LINKS_OAUTH"]);

        let ch = channel_of(
            "charitylog",
            r#"mapping = "m"
            source_key = { env = "CL_SOURCE" }
            org_key = { env = "CL_ORG" }
            user_key = { env = "CL_USER" }"#,
        );
        assert_eq!(ch.transport, "HTTPS PUT (form fields)");
        assert_eq!(
            ch.endpoint,
            "https://api.dizions.co.uk/v2/external_referral"
        );
        assert_eq!(
            ch.tls,
            "TLS, server certificate checked against the public web roots"
        );
        assert!(ch.authentication[0].contains("Source, Org and User"));
        names_sources_only(&ch, &["CL_SOURCE", "CL_ORG", "CL_USER"]);

        let ch = channel_of(
            "lamplight",
            r#"lampid = "1"
            project = "2"
            key = { env = "LL_KEY" }
            person_mapping = "p"
            mapping = "m""#,
        );
        assert_eq!(
            (ch.transport.as_str(), ch.endpoint.as_str()),
            ("HTTPS POST (form fields)", "https://lamplight.online/api")
        );
        assert!(ch.authentication[0].starts_with("API key in the form body"));
        names_sources_only(&ch, &["LL_KEY"]);

        for kind in ["fhir", "fhir-record"] {
            let ch = channel_of(
                kind,
                r#"base_url = "https://record.example/fhir"
                mapping = "m"
                token = { env = "FHIR_TOKEN" }"#,
            );
            assert_eq!(
                ch.transport, "HTTPS POST (FHIR R4 transaction Bundle)",
                "{kind}"
            );
            assert_eq!(ch.authentication, ["bearer token"], "{kind}");
            names_sources_only(&ch, &["FHIR_TOKEN"]);
        }
        let ch = channel_of(
            "fhir",
            r#"base_url = "https://clw.example/fhir"
            mapping = "m"
            poll_every = "5m""#,
        );
        assert!(ch.transport.ends_with("GET of its Tasks when polling"));
        assert!(ch.authentication.is_empty() && ch.credentials.is_empty());

        let ch = channel_of(
            "docman",
            r#"url = "https://docman.example/api/documents"
            token = { env = "DOCMAN_TOKEN" }
            sender_ods = "X1"
            sender_name = "CLW""#,
        );
        assert!(
            ch.transport
                .starts_with("HTTPS POST (JSON Inbound Document"),
            "{}",
            ch.transport
        );
        assert_eq!(ch.authentication, ["bearer token"]);
        names_sources_only(&ch, &["DOCMAN_TOKEN"]);
    }

    #[test]
    fn mesh_names_its_mailbox_certificate_and_authorisation() {
        let ch = channel_of(
            "mesh",
            r#"base_url = "https://msg.intspineservices.nhs.uk"
            mailbox = "x26ot001"
            password = { env = "MESH_PASSWORD" }
            shared_key = { env = "MESH_SHARED_KEY" }
            sender_ods = "X26"
            sender_name = "CLW"
            tls = { client_cert_file = "/etc/mesh/cert.pem", client_key_file = "/etc/mesh/key.pem" }"#,
        );
        assert_eq!(ch.transport, "HTTPS MESH API (ITK3 message)");
        assert_eq!(
            ch.endpoint,
            "https://msg.intspineservices.nhs.uk/ (mailbox X26OT001)"
        );
        assert!(ch.tls.contains("mutual TLS"), "{}", ch.tls);
        assert_eq!(ch.authentication[0], "TLS client certificate");
        assert!(
            ch.authentication[1]
                .starts_with("MESH authorisation header (mailbox and password, HMAC")
        );
        names_sources_only(&ch, &["MESH_PASSWORD", "MESH_SHARED_KEY"]);
    }

    #[test]
    fn mail_names_its_server_tls_mode_and_login() {
        let keys = r#"host = "send.nhs.net"
            from = "clw@nhs.net"
            username = { env = "SMTP_USER" }
            password = { env = "SMTP_PASSWORD" }
            mailboxes = { A81001 = "gp@nhs.net" }"#;
        let ch = channel_of("mail", keys);
        assert_eq!(ch.endpoint, "send.nhs.net:587");
        assert!(ch.tls.starts_with("STARTTLS, required"), "{}", ch.tls);
        assert!(ch.authentication[0].starts_with("SMTP AUTH"));
        names_sources_only(&ch, &["SMTP_USER", "SMTP_PASSWORD"]);
        let ch = channel_of(
            "mail",
            &format!("{keys}\ntls = \"implicit\"\nca_file = \"/etc/clw/ca.pem\""),
        );
        assert_eq!(ch.endpoint, "send.nhs.net:465");
        assert!(
            ch.tls.starts_with("TLS from the first byte") && ch.tls.contains("/etc/clw/ca.pem"),
            "{}",
            ch.tls
        );
    }

    #[test]
    fn folder_kinds_say_where_and_who_may_read() {
        for (kind, keys) in [
            ("file", ""),
            ("csv", "mapping = \"m\""),
            ("practice-folder", ""),
        ] {
            let ch = channel_of(kind, &format!("dir = \"/var/lib/clw/out\"\n{keys}"));
            assert_eq!(
                ch.transport, "files in a folder on the gateway's disk",
                "{kind}"
            );
            assert_eq!(ch.endpoint, "/var/lib/clw/out");
            assert!(ch.tls.contains("mode 0600"), "{}", ch.tls);
            assert!(ch.authentication.is_empty() && ch.credentials.is_empty());
        }
    }
}
