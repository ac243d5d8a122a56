use serde_json::Value;

use super::*;

/// A record entry as the `gp-record` mapping writes it (a golden record's payload).
fn entry() -> RecordEntry {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/record-golden/contact.full.folder.json");
    let payload: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    RecordEntry::from_payload(&payload).unwrap()
}

const SENDER: Sender<'static> = Sender {
    ods_code: "X99CLW",
    name: "Links",
    mailbox: "CLWGW0001",
};

fn json(version: SendDocument) -> Value {
    message_for(version, &entry(), "m1", &SENDER, "2026-11-25T10:00:00Z").to_json()
}

/// The JSON pointer to a string handling key's value in the message's header.
fn handling_key(message: &Value, key: &str) -> String {
    let keys = message["entry"][0]["resource"]["extension"][0]["extension"]
        .as_array()
        .unwrap();
    let i = keys
        .iter()
        .position(|k| k["url"] == key)
        .unwrap_or_else(|| panic!("no handling key {key}"));
    format!("/entry/0/resource/extension/0/extension/{i}/valueString")
}

#[test]
fn the_workflow_chooses_the_version() {
    assert_eq!(version_of("GPFED_CONSULT_REPORT"), SendDocument::V1);
    assert_eq!(version_of("GPCONNECT_SEND_DOCUMENT"), SendDocument::V2);
    assert_eq!(version_of("GPCONNECT_SEND_DOCUMENT_ACK"), SendDocument::V2);
    assert_eq!(version_of("GPFED_CONSULT_REPORT_ACK"), SendDocument::V1);
    // Any other workflow keeps the shape the gateway has always sent.
    assert_eq!(version_of("LOCAL_TEST_WORKFLOW"), SendDocument::V1);
    for v in [SendDocument::V1, SendDocument::V2] {
        assert_eq!(version_of(v.workflow()), v);
        assert_eq!(version_of(v.ack_workflow()), v);
    }
}

#[test]
fn message_is_the_1x_shape() {
    let e = entry();
    let at = "2026-11-25T10:00:00Z";
    assert_eq!(
        message(&e, "m1", &SENDER, at),
        message_for(SendDocument::V1, &e, "m1", &SENDER, at)
    );
}

#[test]
fn two_x_differs_only_in_local_extension_and_care_setting() {
    let v1 = json(SendDocument::V1);
    let mut v2 = json(SendDocument::V2);
    let local = handling_key(&v1, "LocalExtension");
    assert_eq!(
        v1.pointer(&local).unwrap(),
        "SendDocument-ConsultationReport"
    );
    assert_eq!(v2.pointer(&local).unwrap(), "None");
    let composition = &mut v2["entry"][2]["resource"]["entry"][0]["resource"];
    let care = composition
        .as_object_mut()
        .unwrap()
        .remove("extension")
        .expect("2.x names the care setting");
    assert_eq!(
        care[0]["url"],
        "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-CareSettingType-1"
    );
    assert_eq!(
        care[0]["valueCodeableConcept"]["coding"][0]["code"],
        CARE_SETTING.0
    );
    assert!(
        v1["entry"][2]["resource"]["entry"][0]["resource"]
            .get("extension")
            .is_none()
    );
    // Everything else is the same message.
    *v2.pointer_mut(&local).unwrap() = "SendDocument-ConsultationReport".into();
    assert_eq!(v1, v2);
}

#[test]
fn the_care_setting_sits_where_xml_order_puts_extensions() {
    // id, meta, … extension, … identifier: FHIR's XML form is order-sensitive.
    let xml = message_for(
        SendDocument::V2,
        &entry(),
        "m1",
        &SENDER,
        "2026-11-25T10:00:00Z",
    )
    .to_xml();
    let composition = &xml[xml.find("<Composition>").unwrap()..];
    let meta = composition.find("<meta>").unwrap();
    let extension = composition.find("<extension url=").unwrap();
    let identifier = composition.find("<identifier>").unwrap();
    assert!(meta < extension && extension < identifier, "{composition}");
}
