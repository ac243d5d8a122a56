//! A contact's NHS Data Model and Dictionary codes, as the PRSB standard asks for each
//! contact: how it took place (CONSULTATION MECHANISM), where (ACTIVITY LOCATION TYPE
//! CODE) and whether it took place (ATTENDED OR DID NOT ATTEND). The national codes are
//! data — the code maps `mappings/codes/nhs-dd-*.yaml`, built in here — and so is how the
//! gateway's own contact mode reads as a mechanism or location when a platform sends only
//! the mode.

use std::sync::LazyLock;

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::CodeMap;
use crate::mapping::spec::CodeMapFile;
use crate::model::Coded;
use crate::model::message_back::{Contact, ContactElement};

/// The code maps' column of national codes.
const NATIONAL: &str = "nhs_dd";

/// Each element's code map file.
fn file(e: ContactElement) -> &'static str {
    match e {
        ContactElement::Method => {
            include_str!("../../mappings/codes/nhs-dd-consultation-mechanism.yaml")
        }
        ContactElement::Location => {
            include_str!("../../mappings/codes/nhs-dd-activity-location-type.yaml")
        }
        ContactElement::Outcome => {
            include_str!("../../mappings/codes/nhs-dd-attendance-outcome.yaml")
        }
    }
}

/// One element's code map, with its national codes listed once each ("01, 02, …").
struct ValueSet {
    element: ContactElement,
    map: CodeMap,
    codes: String,
}

fn build(element: ContactElement) -> std::result::Result<ValueSet, String> {
    let f: CodeMapFile = serde_yaml_ng::from_str(file(element)).map_err(|x| x.to_string())?;
    let mut codes: Vec<&str> = Vec::new();
    for entry in &f.entries {
        if let Some(c) = entry.get(NATIONAL)
            && !codes.contains(&c.code.as_str())
        {
            codes.push(&c.code);
        }
    }
    let codes = codes.join(", ");
    let map = CodeMap::build(f).map_err(|x| x.join("; "))?;
    Ok(ValueSet {
        element,
        map,
        codes,
    })
}

static VALUE_SETS: LazyLock<Vec<ValueSet>> = LazyLock::new(|| {
    ContactElement::ALL
        .into_iter()
        // Built in and checked by the tests below: a broken file cannot ship.
        .map(|e| build(e).unwrap_or_else(|why| panic!("{}: {why}", e.element())))
        .collect()
});

fn value_set(e: ContactElement) -> &'static ValueSet {
    VALUE_SETS
        .iter()
        .find(|v| v.element == e)
        .expect("every element has its code map")
}

/// The code map of one element.
pub fn code_map(e: ContactElement) -> &'static CodeMap {
    &value_set(e).map
}

/// The system URI the gateway writes an element's national codes under.
pub fn system(e: ContactElement) -> &'static str {
    code_map(e)
        .systems
        .get(NATIONAL)
        .map(String::as_str)
        .unwrap_or_default()
}

fn refuse(e: ContactElement, why: String) -> GatewayError {
    GatewayError::invalid(Stage::Intake, e.field(), why)
}

/// Every code a contact carries checked against its element's national codes, with the
/// Dictionary's own system and description put beside it (its text kept: consent decides
/// whether that travels); a mechanism and a location the platform did not send read
/// from the contact's mode where the code maps say (a home visit: face to face, at the
/// patient's home). A code outside the value set is refused naming the field.
pub fn normalise(contact: &mut Contact) -> Result<()> {
    for e in ContactElement::ALL {
        let map = code_map(e);
        let system = system(e);
        let mode = contact.mode.clone();
        match contact.coded_mut(e) {
            Some(c) => {
                let listed = || {
                    format!(
                        "must be an NHS Data Dictionary {} national code ({})",
                        e.element(),
                        value_set(e).codes
                    )
                };
                if c.system.as_deref().is_some_and(|s| s != system) {
                    return Err(refuse(e, format!("{}, under system {system}", listed())));
                }
                let Some(code) = c.code.as_deref() else {
                    return Err(refuse(e, listed()));
                };
                let entry = map
                    .lookup(NATIONAL, code, NATIONAL)
                    .ok()
                    .flatten()
                    .ok_or_else(|| refuse(e, listed()))?;
                c.system = Some(system.to_string());
                c.display = Some(entry.display.clone());
            }
            slot @ None => {
                if let Ok(Some(entry)) = map.lookup("mode", &mode, NATIONAL) {
                    *slot = Some(Coded {
                        system: Some(system.to_string()),
                        code: Some(entry.code.clone()),
                        display: Some(entry.display.clone()),
                        text: None,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The FHIR R4 `Encounter.status` for a contact with this attendance outcome (seen:
/// finished; not seen: cancelled; in the future: planned), from the code map.
pub fn encounter_status(outcome: &Coded) -> Option<&'static str> {
    let code = outcome.code.as_deref()?;
    code_map(ContactElement::Outcome)
        .lookup(NATIONAL, code, "fhir_status")
        .ok()
        .flatten()
        .map(|entry| entry.code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(mode: &str) -> Contact {
        Contact {
            mode: mode.into(),
            ..Contact::default()
        }
    }

    #[test]
    fn the_built_in_code_maps_build_and_every_mode_reads_as_a_mechanism() {
        for e in ContactElement::ALL {
            build(e).unwrap();
            assert!(system(e).starts_with("https://"), "{}", e.element());
        }
        for (mode, method) in [
            ("face-to-face", "01"),
            ("telephone", "02"),
            ("video", "11"),
            ("text", "09"),
            ("email", "05"),
            ("group", "01"),
            ("home-visit", "01"),
        ] {
            let mut c = contact(mode);
            normalise(&mut c).unwrap();
            assert_eq!(c.method.unwrap().code.as_deref(), Some(method), "{mode}");
            assert_eq!(
                c.location.map(|l| l.code.unwrap_or_default()),
                (mode == "home-visit").then(|| "A01".to_string()),
                "{mode}"
            );
            assert_eq!(c.outcome, None, "never guessed");
        }
    }

    #[test]
    fn a_code_outside_the_value_set_is_refused_naming_the_field() {
        let mut c = contact("telephone");
        c.method = Some(Coded {
            code: Some("03".into()),
            ..Coded::default()
        });
        let e = normalise(&mut c).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("contact.method"));
        assert!(
            e.message.contains("CONSULTATION MECHANISM"),
            "{}",
            e.message
        );
        let mut c = contact("telephone");
        c.outcome = Some(Coded {
            system: Some("urn:other".into()),
            code: Some("5".into()),
            ..Coded::default()
        });
        let e = normalise(&mut c).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("contact.outcome"));
        // A national code given alone gets the Dictionary's system and words.
        let mut c = contact("telephone");
        c.outcome = Some(Coded {
            code: Some("3".into()),
            text: Some("No answer twice".into()),
            ..Coded::default()
        });
        normalise(&mut c).unwrap();
        let o = c.outcome.unwrap();
        assert_eq!(o.system.as_deref(), Some(system(ContactElement::Outcome)));
        assert_eq!(
            o.display.as_deref(),
            Some("Did not attend - no advance warning given")
        );
        assert_eq!(encounter_status(&o), Some("cancelled"));
    }
}
