//! The independent ITK3 validator (tests/itk/validate.py): base FHIR STU3 by the
//! `fhir.resources` STU3 models, then the ITK3 and GP Connect Send Document rules of the
//! version the MESH workflow names, each failure naming its requirement. Run on what the
//! gateway wrote, so a message is shown valid by code that is not the gateway's own.

use std::path::PathBuf;

use serde_json::Value;

use super::repo_path;

/// The venv's python that runs the validator (scripts/test makes it).
pub fn itk_python() -> PathBuf {
    std::env::var("CLW_TEST_ITK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_path("tests/itk/.venv/bin/python"))
}

/// One message, in FHIR's JSON or XML form.
pub enum Itk<'a> {
    Json(&'a Value),
    Xml(&'a str),
}

/// What the validator found: failures, and the requirements the message knowingly does
/// not meet (which do not fail it). With several messages each line names its file,
/// `message-<i>.json` or `.xml` (`i` its place in the list).
#[derive(Debug)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Validates one message in its JSON form, sent on `workflow`.
pub fn validate_itk(json: &Value, workflow: &str) -> Result<(), Vec<String>> {
    check(&[Itk::Json(json)], workflow, None)
}

/// Validates one message in its XML form (the form ITK3 sends), sent on `workflow`.
pub fn validate_itk_xml(xml: &str, workflow: &str) -> Result<(), Vec<String>> {
    check(&[Itk::Xml(xml)], workflow, None)
}

/// Validates `messages`, sent on `workflow` from `mailbox` (when given, the
/// MessageHeader's source must be it, GPCM-SD-046): every failure, or nothing.
pub fn check(
    messages: &[Itk<'_>],
    workflow: &str,
    mailbox: Option<&str>,
) -> Result<(), Vec<String>> {
    let report = report(messages, workflow, mailbox);
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(report.errors)
    }
}

/// Validates each message in both its forms, JSON and XML (`forms[i]` is one message),
/// and that the two read as the same STU3 content. Failures name `message-<i>.json` or
/// `.xml`.
pub fn check_forms(
    forms: &[(&Value, &str)],
    workflow: &str,
    mailbox: Option<&str>,
) -> Result<(), Vec<String>> {
    let files = forms
        .iter()
        .enumerate()
        .flat_map(|(i, (json, xml))| {
            [
                (
                    format!("message-{i}.json"),
                    serde_json::to_vec(json).unwrap(),
                ),
                (format!("message-{i}.xml"), xml.as_bytes().to_vec()),
            ]
        })
        .collect();
    let report = run(files, workflow, mailbox, true);
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(report.errors)
    }
}

/// Runs the validator once over all of `messages`.
pub fn report(messages: &[Itk<'_>], workflow: &str, mailbox: Option<&str>) -> Report {
    let files = messages
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Itk::Json(v) => (format!("message-{i}.json"), serde_json::to_vec(v).unwrap()),
            Itk::Xml(x) => (format!("message-{i}.xml"), x.as_bytes().to_vec()),
        })
        .collect();
    run(files, workflow, mailbox, false)
}

/// The validator over `files` (name, body), written to a folder of their own.
fn run(files: Vec<(String, Vec<u8>)>, workflow: &str, mailbox: Option<&str>, same: bool) -> Report {
    let python = itk_python();
    assert!(
        python.exists(),
        "the ITK3 validator is not installed: run scripts/test (it makes tests/itk/.venv)"
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in &files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let out = std::process::Command::new(python)
        .arg(repo_path("tests/itk/validate.py"))
        .args(["--workflow", workflow])
        .args(mailbox.map(|m| ["--mailbox", m]).into_iter().flatten())
        .args(same.then_some("--same"))
        .args(files.iter().map(|(name, _)| name))
        .current_dir(dir.path())
        .output()
        .expect("python runs");
    let said: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "the ITK3 validator did not answer ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let lines = |key: &str| -> Vec<String> {
        said[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    let report = Report {
        errors: lines("errors"),
        warnings: lines("warnings"),
    };
    // The exit status and the answer must agree: a validator that cannot fail proves
    // nothing.
    assert_eq!(
        out.status.success(),
        report.errors.is_empty(),
        "the ITK3 validator's exit status disagrees with its answer: {report:?}"
    );
    report
}
