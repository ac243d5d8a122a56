//! FHIR datatypes (CodeableConcept, HumanName, Address, ContactPoint, Identifier,
//! Organization, UK Core contact preferences) read into the canonical model's parts.

use serde_json::Value;

use super::UKCORE_EXT;
use crate::error::{GatewayError, Result, Stage};
use crate::intake::Rules;
use crate::intake::json::Node;
use crate::model::identifiers::{
    ODS_ORGANIZATION_SYSTEM, ODS_SITE_SYSTEM, is_scottish_practice_code,
};
use crate::model::{
    Address, Coded, ContactPoint, ContactPreferences, Identifier, Organisation, PersonName,
};

const SNOMED: &str = "http://snomed.info/sct";

pub(super) fn coding(c: &Node) -> Result<Coded> {
    Ok(Coded {
        system: c.string("system")?,
        code: c.string("code")?,
        display: c.string("display")?,
        text: None,
    })
}

/// A CodeableConcept as one Coded: its SNOMED coding if there is one, else the first,
/// plus its text.
pub(crate) fn codeable(cc: &Node) -> Result<Coded> {
    let codings = cc.items("coding")?;
    let chosen = codings
        .iter()
        .find(|c| c.value.get("system").and_then(Value::as_str) == Some(SNOMED))
        .or(codings.first());
    let mut out = match chosen {
        Some(c) => coding(c)?,
        None => Coded::default(),
    };
    out.text = cc.string("text")?;
    Ok(out)
}

pub(super) fn human_name(n: &Node) -> Result<PersonName> {
    Ok(PersonName {
        prefix: n.strings("prefix")?,
        given: n.strings("given")?,
        family: n.string("family")?,
    })
}

pub(super) fn address(a: &Node) -> Result<Address> {
    Ok(Address {
        lines: a.strings("line")?,
        city: a.string("city")?,
        district: a.string("district")?,
        postcode: a.string("postalCode")?,
    })
}

pub(super) fn telecoms(n: &Node) -> Result<Vec<ContactPoint>> {
    let mut out = Vec::new();
    for t in n.items("telecom")? {
        let (Some(system), Some(value)) = (t.string("system")?, t.string("value")?) else {
            continue;
        };
        out.push(ContactPoint {
            system,
            value,
            use_: t.string("use")?,
        });
    }
    Ok(out)
}

pub(super) fn identifier(i: &Node) -> Result<Option<Identifier>> {
    Ok(match (i.string("system")?, i.string("value")?) {
        (Some(system), Some(value)) => Some(Identifier { system, value }),
        _ => None,
    })
}

pub(super) fn identifiers_of(n: &Node) -> Result<Vec<Identifier>> {
    let mut out = Vec::new();
    for i in n.items("identifier")? {
        out.extend(identifier(&i)?);
    }
    Ok(out)
}

/// An Organization resource: its ODS code and its Scottish practice code, each read
/// from its own identifier systems (a 5-digit Scottish practice code is checked).
pub(super) fn organisation(o: &Node, rules: &Rules) -> Result<Organisation> {
    let mut org = Organisation {
        name: o.string("name")?,
        telecom: telecoms(o)?,
        ..Default::default()
    };
    for i in o.items("identifier")? {
        let found = identified(&i, rules)?;
        org.ods_code = org.ods_code.or(found.ods_code);
        org.scottish_practice_code = org.scottish_practice_code.or(found.scottish_practice_code);
    }
    Ok(org)
}

/// What one organisation identifier says: an ODS code (its systems, or a bare value with
/// no system, as a MessageHeader.sender often carries), or a Scottish practice code.
/// Identifiers of other systems say nothing.
pub(super) fn identified(i: &Node, rules: &Rules) -> Result<Organisation> {
    let system = i.string("system")?;
    let Some(value) = i.string("value")? else {
        return Ok(Organisation::default());
    };
    let mut org = Organisation::default();
    match system.as_deref() {
        Some(s) if rules.is_scottish_practice_system(s) => {
            if !is_scottish_practice_code(&value) {
                return Err(GatewayError::invalid(
                    Stage::Intake,
                    i.child_path("value"),
                    "a Scottish practice code is 5 digits",
                ));
            }
            org.scottish_practice_code = Some(value);
        }
        Some(ODS_ORGANIZATION_SYSTEM | ODS_SITE_SYSTEM) | None => org.ods_code = Some(value),
        Some(_) => {}
    }
    Ok(org)
}

pub(super) fn contact_preferences(p: &Node) -> Result<Option<ContactPreferences>> {
    let mut prefs = ContactPreferences::default();
    let mut any = false;
    if let Some(ext) = p.extension(&format!("{UKCORE_EXT}Extension-UKCore-ContactPreference"))? {
        if let Some(m) = ext.extension("PreferredContactMethod")? {
            prefs.preferred_contact_method = m
                .get("valueCodeableConcept")
                .map(|c| codeable(&c))
                .transpose()?;
        }
        if let Some(t) = ext.extension("PreferredContactTimes")? {
            prefs.preferred_contact_times = t
                .get("valueTiming")
                .and_then(|v| v.get("code"))
                .and_then(|c| c.string("text").ok().flatten())
                .or(t.string("valueString")?);
        }
        if let Some(w) = ext.extension("PreferredWrittenCommunicationFormat")? {
            prefs.preferred_written_communication_format = w
                .get("valueCodeableConcept")
                .map(|c| codeable(&c))
                .transpose()?;
        }
        any = true;
    }
    for comm in p.items("communication")? {
        if comm.bool("preferred")? == Some(true) || prefs.preferred_language.is_none() {
            prefs.preferred_language = Some(codeable(&comm.req("language")?)?);
            any = true;
        }
    }
    if let Some(i) = p.extension(&format!("{UKCORE_EXT}Extension-UKCore-NHSCommunication"))?
        && let Some(ir) = i.extension("interpreterRequired")?
    {
        prefs.interpreter_required = ir.bool("valueBoolean")?;
        any = true;
    }
    Ok(any.then_some(prefs))
}
