//! A Docman stand-in for the record writer's tests: checks the Inbound Document Model
//! field by field (docs/decisions/0008) and the bearer token, and keeps what it accepted.

use serde_json::{Value, json};

/// Starts the stand-in on a free port: its documents URL, and what it accepted.
pub async fn start() -> (String, Posted) {
    let posted: Posted = Default::default();
    let app = axum::Router::new()
        .route("/api/documents", axum::routing::post(docman_post))
        .with_state(posted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/documents", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posted)
}

pub type Posted = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A Docman stand-in: checks the Inbound Document Model field by field (docs/decisions/
/// 0008) and the bearer token; keeps what it accepted.
pub async fn docman_post(
    axum::extract::State(posted): axum::extract::State<Posted>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer docman-token") {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON".into());
    };
    let problems = docman_problems(&doc);
    if !problems.is_empty() {
        return (StatusCode::BAD_REQUEST, problems.join("; "));
    }
    posted.lock().unwrap().push(doc);
    (StatusCode::OK, json!({"DocumentId": "d-1"}).to_string())
}

pub fn docman_problems(d: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            p.push(what.to_string());
        }
    };
    need(
        d["CaptureSource"] == 2,
        "CaptureSource must be 2 for Docman Connect",
    );
    need(d["Sender"].is_object(), "Sender object");
    need(d["Sender"]["OdsCode"].is_string(), "Sender.OdsCode");
    let ods = d["RecipientOdsCode"].as_str().unwrap_or_default();
    need(
        !ods.is_empty() && ods.len() <= 10,
        "RecipientOdsCode, at most 10",
    );
    need(
        d["Patient"].is_object(),
        "Patient object (mandatory for Connect)",
    );
    need(
        d["Patient"]["NhsNumber"].is_string() || d["Patient"]["ChiNumber"].is_string(),
        "Patient NHS or CHI number",
    );
    need(d["Patient"]["FamilyName"].is_string(), "Patient.FamilyName");
    need(
        d["Patient"]["DateOfBirth"].is_string(),
        "Patient.DateOfBirth",
    );
    need(d["Document"].is_object(), "Document object");
    need(
        d["Document"]["FileExtension"] == "pdf",
        "Document.FileExtension",
    );
    need(
        d["Document"]["FileContent"].is_string(),
        "Document.FileContent",
    );
    for flag in [
        "ActionRequired",
        "MedicationChanged",
        "Urgent",
        "Revision",
        "Inpatient",
    ] {
        need(d[flag].is_boolean(), flag);
    }
    need(d["ClinicalCodes"].is_array(), "ClinicalCodes list");
    for c in d["ClinicalCodes"].as_array().into_iter().flatten() {
        need(
            ["SNOMED", "READ2", "LOCAL"].contains(&c["Scheme"].as_str().unwrap_or_default()),
            "ClinicalCode.Scheme",
        );
        need(
            c["Code"].is_string() && c["Description"].is_string(),
            "ClinicalCode.Code/Description",
        );
    }
    need(
        d["Notes"]
            .as_str()
            .is_some_and(|n| n.chars().count() <= 255),
        "Notes, at most 255",
    );
    let known = [
        "CaptureSource",
        "Sender",
        "RecipientOdsCode",
        "Patient",
        "Document",
        "ActionRequired",
        "MedicationChanged",
        "Urgent",
        "ClinicalCodes",
        "Notes",
        "Revision",
        "MRNNumber",
        "Inpatient",
    ];
    for k in d.as_object().into_iter().flat_map(|o| o.keys()) {
        need(known.contains(&k.as_str()), &format!("unknown field {k}"));
    }
    p
}
