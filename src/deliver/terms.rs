//! Keys every destination kind shares, declared once. serde's `flatten` cannot be used
//! beside `deny_unknown_fields`, so [`destination_config!`] writes them into each kind's
//! config struct: the data terms (`agreement`, `allow`, `constants`) always, and with
//! `@http` the HTTP client keys (timeouts, TLS, proxy, response limit).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// What a destination may receive and under which agreement.
#[derive(Debug, Clone, Copy)]
pub struct DataTerms<'a> {
    /// The data-sharing agreement this destination receives data under (audited).
    pub agreement: Option<&'a str>,
    /// Canonical fields it may receive; a mapping reading anything else is refused.
    pub allow: &'a [String],
    /// Values for the mappings' `%name` constants.
    pub constants: &'a BTreeMap<String, String>,
}

pub trait HasTerms {
    fn terms(&self) -> DataTerms<'_>;
}

/// TLS material for HTTP destinations on HSCN or an internal PKI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra trusted roots (PEM bundle), added to the public web roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS...
    pub client_cert_file: Option<PathBuf>,
    /// ...and its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

/// The HTTP client keys, borrowed from a kind's config.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions<'a> {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub tls: &'a TlsConfig,
    /// An HTTP(S) proxy for every request (CONNECT for https). Without it no proxy is
    /// used, whatever HTTPS_PROXY says: patient data goes only where configured.
    pub proxy: Option<&'a str>,
    /// Most bytes read from a response body.
    pub max_response_bytes: usize,
}

pub trait HasHttp {
    fn http(&self) -> HttpOptions<'_>;
}

pub fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

pub fn default_max_response_bytes() -> usize {
    1024 * 1024
}

/// Declares a destination kind's config struct with the shared keys added.
/// `@data`: agreement, allow, constants. `@http`: those plus the HTTP client keys.
/// The body's fields must end with a comma.
macro_rules! destination_config {
    (@data $(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($body)*
            /// The data-sharing agreement this destination receives data under (audited).
            #[serde(default)]
            pub agreement: Option<String>,
            /// Canonical fields the destination may receive.
            #[serde(default)]
            pub allow: Vec<String>,
            /// Values for the mappings' `%name` constants.
            #[serde(default)]
            pub constants: std::collections::BTreeMap<String, String>,
        }

        impl $crate::deliver::terms::HasTerms for $name {
            fn terms(&self) -> $crate::deliver::terms::DataTerms<'_> {
                $crate::deliver::terms::DataTerms {
                    agreement: self.agreement.as_deref(),
                    allow: &self.allow,
                    constants: &self.constants,
                }
            }
        }
    };
    (@http $(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $crate::deliver::terms::destination_config! { @data $(#[$m])* pub struct $name {
            $($body)*
            /// Whole-request timeout.
            #[serde(default = "crate::deliver::terms::default_timeout", with = "humantime_serde")]
            pub timeout: std::time::Duration,
            #[serde(default = "crate::deliver::terms::default_connect_timeout", with = "humantime_serde")]
            pub connect_timeout: std::time::Duration,
            #[serde(default)]
            pub tls: $crate::deliver::terms::TlsConfig,
            #[serde(default)]
            pub proxy: Option<String>,
            #[serde(default = "crate::deliver::terms::default_max_response_bytes")]
            pub max_response_bytes: usize,
        } }

        impl $crate::deliver::terms::HasHttp for $name {
            fn http(&self) -> $crate::deliver::terms::HttpOptions<'_> {
                $crate::deliver::terms::HttpOptions {
                    timeout: self.timeout,
                    connect_timeout: self.connect_timeout,
                    tls: &self.tls,
                    proxy: self.proxy.as_deref(),
                    max_response_bytes: self.max_response_bytes,
                }
            }
        }
    };
}

pub(crate) use destination_config;
