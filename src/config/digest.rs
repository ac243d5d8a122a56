//! The configuration's digest: what an IG pack (or anyone comparing two instances) names
//! to say which configuration it describes. Taken over the effective table — the file
//! with its environment overrides — with user information and queries removed from
//! every URL, so a password in a store or broker URL never feeds it.

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `table`, credentials in URLs removed.
pub fn of(table: &toml::Table) -> String {
    let mut clean = table.clone();
    for (_, v) in clean.iter_mut() {
        scrub(v);
    }
    let text = toml::to_string(&clean).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn scrub(v: &mut toml::Value) {
    match v {
        toml::Value::String(s) if s.contains("://") => *s = without_credentials(s),
        toml::Value::Array(a) => a.iter_mut().for_each(scrub),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| scrub(v)),
        _ => {}
    }
}

/// A URL without user information or query; anything unparseable reduced to its scheme.
fn without_credentials(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => s.split("://").next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn a_password_in_a_url_does_not_change_the_digest_but_the_host_does() {
        let a = of(&table("[store]\nurl = \"postgres://clw:one@db/clw\"\n"));
        let b = of(&table("[store]\nurl = \"postgres://clw:two@db/clw\"\n"));
        let c = of(&table("[store]\nurl = \"postgres://clw:two@other/clw\"\n"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
    }
}
