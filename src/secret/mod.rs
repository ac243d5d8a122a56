//! One secret type for every credential: the name of an environment variable or a
//! file (a mounted secret), never the value itself. Read once, at start-up.

pub mod seal;
pub mod signing;

use std::path::PathBuf;

use serde::Deserialize;

/// `{ env = "VAR" }` or `{ file = "/run/secrets/name" }` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// An environment variable holding the value.
    pub env: Option<String>,
    /// A file holding the value (e.g. a Kubernetes or systemd credential).
    pub file: Option<PathBuf>,
}

impl Secret {
    pub fn from_env(var: &str) -> Secret {
        Secret {
            env: Some(var.to_string()),
            file: None,
        }
    }

    /// Where the value is read from, in words — never the value: "environment variable
    /// NAME" or "file PATH" (for the information-governance pack and messages).
    pub fn source(&self) -> String {
        match (&self.env, &self.file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "nowhere (neither env nor file is set)".into(),
        }
    }

    /// The value, trimmed of surrounding white space (a trailing newline from `echo`
    /// or a file editor). The error says what is wrong without the value.
    pub fn read(&self) -> Result<String, String> {
        let raw = match (&self.env, &self.file) {
            (Some(_), Some(_)) => return Err("set env or file, not both".into()),
            (None, None) => {
                return Err("set env (an environment variable's name) or file".into());
            }
            (Some(var), None) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        };
        let value = raw.trim();
        if value.is_empty() {
            return Err(format!("{} is empty", self.origin()));
        }
        // Credentials travel in headers and forms: a control character would be refused
        // by the HTTP layer on every request, or split a header.
        if value.chars().any(char::is_control) {
            return Err(format!(
                "{} holds a control character, which cannot be sent",
                self.origin()
            ));
        }
        Ok(value.to_string())
    }

    fn origin(&self) -> String {
        match (&self.env, &self.file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "the secret".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_file_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let s = Secret {
            env: None,
            file: Some(file.clone()),
        };
        assert_eq!(s.read().unwrap(), "s3cret");

        let both = Secret {
            env: Some("X".into()),
            file: Some(file.clone()),
        };
        assert!(both.read().unwrap_err().contains("not both"));
        let neither = Secret {
            env: None,
            file: None,
        };
        assert!(neither.read().is_err());

        std::fs::write(&file, "  \n").unwrap();
        assert!(s.read().unwrap_err().contains("is empty"));
        std::fs::write(&file, "abc\u{7}def\n").unwrap();
        let e = s.read().unwrap_err();
        assert!(e.contains("control character") && !e.contains("abc"), "{e}");
        let missing = Secret::from_env("CLW_SECRET_TEST_SURELY_UNSET_4821");
        assert!(missing.read().unwrap_err().contains("is not set"));
    }
}
