//! The PRSB sections a GP referral carries beyond demographics and the request itself:
//! risks (with "no known risks"), safeguarding and reasonable adjustments (read from the
//! patient's Flags), "referral to" (the ServiceRequest's performer and performerType),
//! the referral method and "return response to" (extensions), and what would disclose
//! gender history (Patient extensions). docs/prsb-mapping.md says each path.

use serde_json::Value;

use super::Decoder;
use super::datatypes::{codeable, coding, human_name, telecoms};
use crate::error::{GatewayError, Result, Stage};
use crate::intake::json::Node;
use crate::model::*;

/// The gateway's code system for the PRSB section a Flag belongs to (`Flag.category`)
/// and for "no known risks" (`Flag.code`).
pub const PRSB_SECTION_SYSTEM: &str = "https://clw-gateway.org/CodeSystem/prsb-section";
/// Extensions on the ServiceRequest for PRSB items FHIR R4 has no element for.
pub const REFERRAL_METHOD_EXT: &str =
    "https://clw-gateway.org/fhir/StructureDefinition/referral-method";
pub const RETURN_RESPONSE_TO_EXT: &str =
    "https://clw-gateway.org/fhir/StructureDefinition/return-response-to";
/// FHIR R4's core gender-identity extension on Patient.
pub const GENDER_IDENTITY_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/patient-genderIdentity";

/// What the Flags for the referral's patient say, by PRSB section.
#[derive(Debug, Default)]
pub(super) struct Flags {
    pub risks: Option<Risks>,
    pub safeguarding: Vec<SafeguardingConcern>,
    pub adjustments: Vec<ReasonableAdjustment>,
}

/// The PRSB section a Flag's category puts it in.
fn section_of(flag: &Node) -> Result<&'static str> {
    for cat in flag.items("category")? {
        for c in cat.items("coding")? {
            let system = c.str("system")?;
            let code = c.str("code")?;
            match (system, code) {
                (Some(PRSB_SECTION_SYSTEM), Some("safeguarding")) => return Ok("safeguarding"),
                (Some(PRSB_SECTION_SYSTEM), Some("reasonable-adjustment")) => {
                    return Ok("reasonable-adjustment");
                }
                (Some(PRSB_SECTION_SYSTEM), Some("risk")) => return Ok("risk"),
                // NHS England's Reasonable Adjustment Flag category.
                (_, Some("NRAF")) => return Ok("reasonable-adjustment"),
                _ => {}
            }
        }
    }
    Ok("risk")
}

fn says_no_known_risks(code: &Coded) -> bool {
    (code.system.as_deref() == Some(PRSB_SECTION_SYSTEM)
        && code.code.as_deref() == Some("no-known-risks"))
        || code
            .text
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("no known risks"))
}

impl<'a> Decoder<'_, 'a> {
    /// Every Flag in the Bundle about the referral's patient, by section. A Flag about
    /// someone else stops the referral (fail closed: it cannot be sent on a guess);
    /// one entered in error is left out.
    pub(super) fn flags(&self, patient: &Node<'a>) -> Result<Flags> {
        let mut out = Flags::default();
        let mut risks = Risks::default();
        let mut any_risk_flag = false;
        for flag in self.index.of_type("Flag") {
            let status = flag.req_str("status")?;
            if status == "entered-in-error" {
                continue;
            }
            if !self.about_patient(flag, "subject", patient)? {
                return Err(GatewayError::invalid(
                    Stage::Intake,
                    flag.child_path("subject"),
                    "this Flag is not about the referred Patient: nothing was sent; correct the \
                     referral at the practice, then replay",
                ));
            }
            let code = codeable(&flag.req("code")?)?;
            let period = flag.get("period");
            let at = |k: &str| -> Result<Option<String>> {
                match &period {
                    Some(p) => p.string(k),
                    None => Ok(None),
                }
            };
            match section_of(flag)? {
                "safeguarding" => out.safeguarding.push(SafeguardingConcern {
                    concern: code,
                    start: at("start")?,
                    end: at("end")?,
                    ..Default::default()
                }),
                "reasonable-adjustment" => out.adjustments.push(ReasonableAdjustment {
                    adjustment: code,
                    detail: None,
                }),
                _ => {
                    any_risk_flag = true;
                    if says_no_known_risks(&code) {
                        risks.no_known_risks = true;
                    } else {
                        risks.entries.push(Risk {
                            risk: code,
                            start: at("start")?,
                            end: at("end")?,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        if risks.no_known_risks && !risks.entries.is_empty() {
            // Risks listed beside "no known risks": the risks stand.
            risks.no_known_risks = false;
        }
        if any_risk_flag {
            out.risks = Some(risks);
        }
        Ok(out)
    }

    /// PRSB "Referral to": `SR.performer[0]` (an Organization, HealthcareService,
    /// PractitionerRole or Practitioner) and `SR.performerType` (the service).
    pub(super) fn referral_to(&self, sr: &Node<'a>) -> Result<Option<ReferralTo>> {
        let mut to = ReferralTo {
            service: sr.get("performerType").map(|c| codeable(&c)).transpose()?,
            ..Default::default()
        };
        if let Some(p) = sr.items("performer")?.first() {
            match self.index.resolve_typed(
                sr,
                p,
                &[
                    "Organization",
                    "HealthcareService",
                    "PractitionerRole",
                    "Practitioner",
                ],
            )? {
                Some(n) => self.fill_referral_to(&mut to, &n)?,
                None => to.organisation = self.organisation_ref(sr, p)?,
            }
        }
        Ok(to.is_named().then_some(to))
    }

    fn fill_referral_to(&self, to: &mut ReferralTo, n: &Node<'a>) -> Result<()> {
        match n.resource_type() {
            Some("HealthcareService") => {
                if to.service.is_none() {
                    to.service = Some(self.service_of(n)?);
                }
                if let Some(org) = n.get("providedBy") {
                    to.organisation = self.organisation_ref(n, &org)?;
                }
                to.telecom = telecoms(n)?;
            }
            Some("PractitionerRole") => {
                to.role = n.items("code")?.first().map(codeable).transpose()?;
                to.specialty = n.items("specialty")?.first().map(codeable).transpose()?;
                if let Some(pr) = n.get("practitioner")
                    && let Some(p) = self.index.resolve_typed(n, &pr, &["Practitioner"])?
                {
                    to.name = full_name(&p)?;
                }
                if let Some(org) = n.get("organization") {
                    to.organisation = self.organisation_ref(n, &org)?;
                }
                if to.service.is_none() {
                    to.service = self.role_service(n)?;
                }
                to.telecom = telecoms(n)?;
            }
            Some("Practitioner") => {
                to.name = full_name(n)?;
                to.telecom = telecoms(n)?;
            }
            _ => {
                to.organisation = Some(super::datatypes::organisation(n, self.rules)?);
                to.telecom = Vec::new();
            }
        }
        Ok(())
    }

    /// A HealthcareService as a service: its type, coded, with its name as the text.
    fn service_of(&self, hs: &Node<'a>) -> Result<Coded> {
        let mut service = match hs.items("type")?.first() {
            Some(t) => codeable(t)?,
            None => Coded::default(),
        };
        if service.text.is_none() {
            service.text = hs.string("name")?;
        }
        Ok(service)
    }

    /// The service a PractitionerRole works in: its first `healthcareService`.
    pub(super) fn role_service(&self, role: &Node<'a>) -> Result<Option<Coded>> {
        for hs in role.items("healthcareService")? {
            if let Some(n) = self
                .index
                .resolve_typed(role, &hs, &["HealthcareService"])?
            {
                return Ok(Some(self.service_of(&n)?));
            }
            if let Some(d) = hs.string("display")? {
                return Ok(Some(Coded {
                    text: Some(d),
                    ..Default::default()
                }));
            }
        }
        Ok(None)
    }
}

/// A Practitioner's first name as one string ("Dr Jane Smith").
fn full_name(p: &Node) -> Result<Option<String>> {
    let Some(n) = p.items("name")?.into_iter().next() else {
        return Ok(None);
    };
    if let Some(t) = n.string("text")? {
        return Ok(Some(t));
    }
    let name = human_name(&n)?;
    let words: Vec<String> = name
        .prefix
        .into_iter()
        .chain(name.given)
        .chain(name.family)
        .collect();
    Ok((!words.is_empty()).then(|| words.join(" ")))
}

/// PRSB "Referral method": the ServiceRequest's referral-method extension.
pub(super) fn referral_method(sr: &Node) -> Result<Option<Coded>> {
    match sr.extension(REFERRAL_METHOD_EXT)? {
        Some(e) => e
            .get("valueCodeableConcept")
            .map(|c| codeable(&c))
            .transpose(),
        None => Ok(None),
    }
}

/// PRSB "Return response to": the extension's string, or its reference's display.
pub(super) fn return_response_to(sr: &Node) -> Result<Option<String>> {
    let Some(e) = sr.extension(RETURN_RESPONSE_TO_EXT)? else {
        return Ok(None);
    };
    if let Some(s) = e.string("valueString")? {
        return Ok(Some(s));
    }
    match e.get("valueReference") {
        Some(r) => r.string("display"),
        None => Ok(None),
    }
}

/// What in the Patient would disclose gender history: a gender-identity extension
/// (R4 core `patient-genderIdentity`, or any extension whose URL names gender
/// identity), or a sex recorded at birth (an extension whose URL names birth sex) that
/// differs from `Patient.gender`. A birth sex the same as the gender discloses nothing
/// and is not carried.
pub(super) fn gender_history(
    patient: &Node,
    gender: Option<&str>,
) -> Result<Option<GenderHistory>> {
    let mut out = GenderHistory::default();
    for ext in patient.items("extension")? {
        let url = ext.str("url")?.unwrap_or_default().to_ascii_lowercase();
        let value = ext_value(&ext)?;
        if url == GENDER_IDENTITY_EXT.to_ascii_lowercase() || url.contains("genderidentity") {
            out.gender_identity = value.or(Some(Coded {
                text: Some("gender identity recorded".into()),
                ..Default::default()
            }));
        } else if (url.contains("birthsex") || url.contains("birth-sex"))
            && let Some(v) = value
            && !same_sex_as_gender(&v, gender)
        {
            out.sex_recorded_at_birth = Some(v);
        }
    }
    Ok((out.gender_identity.is_some() || out.sex_recorded_at_birth.is_some()).then_some(out))
}

/// An extension's value as a Coded: valueCodeableConcept, valueCoding or valueCode, or
/// (the R5-style complex extension) its `value` sub-extension.
fn ext_value(ext: &Node) -> Result<Option<Coded>> {
    if let Some(c) = ext.get("valueCodeableConcept") {
        return Ok(Some(codeable(&c)?));
    }
    if let Some(c) = ext.get("valueCoding") {
        return Ok(Some(coding(&c)?));
    }
    if let Some(c) = ext.string("valueCode")? {
        return Ok(Some(Coded {
            code: Some(c),
            ..Default::default()
        }));
    }
    for sub in ext.items("extension")? {
        if sub.value.get("url").and_then(Value::as_str) == Some("value") {
            return ext_value(&sub);
        }
    }
    Ok(None)
}

/// Whether a birth-sex value says the same as the administrative gender (M / F codes,
/// or the gender's own word).
fn same_sex_as_gender(v: &Coded, gender: Option<&str>) -> bool {
    let Some(g) = gender else {
        return false;
    };
    let said = v
        .code
        .as_deref()
        .or(v.display.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(
        (said.as_str(), g),
        ("m" | "male", "male") | ("f" | "female", "female")
    )
}
