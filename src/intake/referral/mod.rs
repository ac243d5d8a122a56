//! FHIR R4 UK Core referral Bundle → canonical [`Referral`].

mod consent;
mod datatypes;
pub mod sections;

use serde_json::Value;

use super::bundle::BundleIndex;
use super::json::Node;
use crate::error::{GatewayError, Result, Stage};
use crate::intake::Rules;
use crate::model::dates::{is_fhir_date, is_fhir_datetime};
use crate::model::identifiers::{self, IdentifierKind};
use crate::model::*;
pub(crate) use datatypes::codeable;
use datatypes::{
    address, contact_preferences, human_name, identified, identifier, identifiers_of, organisation,
    telecoms,
};

pub const SOCIAL_PRESCRIBING_REFERRAL: &str = "871731000000106";
const UKCORE_EXT: &str = "https://fhir.hl7.org.uk/StructureDefinition/";

/// A decoded referral and the ids found in its Bundle.
#[derive(Debug, Clone)]
pub struct DecodedReferral {
    pub referral: Referral,
    pub bundle_id: Option<String>,
    pub message_header_id: Option<String>,
    /// The practice's identifier of the referral (ServiceRequest.identifier with the
    /// organisation that made it): what ties later versions to it. None when the
    /// ServiceRequest carries no identifier (each message is then a referral of its own).
    pub identity: Option<crate::model::lifecycle::Identity>,
}

/// Decodes a referral under the default rules (today's CHI check, Scotland's own practice
/// code system).
pub fn decode_referral(body: &[u8]) -> Result<DecodedReferral> {
    decode_referral_with(body, &Rules::default())
}

/// Decodes a referral under a deployment's rules.
pub fn decode_referral_with(body: &[u8], rules: &Rules) -> Result<DecodedReferral> {
    super::json::check_shape(body)?;
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(Stage::Intake, "$", format!("body is not valid JSON ({e})"))
    })?;
    let root = Node::root(&value, "Bundle");
    if !value.is_object() {
        return Err(root.err("body must be a JSON object (a FHIR Bundle)"));
    }
    match root.resource_type() {
        Some("Bundle") => {}
        Some(other) => {
            return Err(GatewayError::invalid(
                Stage::Intake,
                "resourceType",
                format!("expected a Bundle, found {other}"),
            ));
        }
        None => {
            return Err(GatewayError::invalid(
                Stage::Intake,
                "resourceType",
                "is required but missing (expected Bundle)",
            ));
        }
    }
    let btype = root.req_str("type")?;
    if !matches!(btype, "message" | "transaction" | "collection") {
        return Err(GatewayError::invalid(
            Stage::Intake,
            "Bundle.type",
            format!("must be message, transaction or collection, found {btype}"),
        ));
    }
    let index = BundleIndex::new(&root)?;
    let header = if btype == "message" {
        match index.first() {
            Some(h) if h.resource_type() == Some("MessageHeader") => Some(h.clone()),
            _ => {
                return Err(GatewayError::invalid(
                    Stage::Intake,
                    "Bundle.entry[0].resource",
                    "a message Bundle must start with a MessageHeader",
                ));
            }
        }
    } else {
        None
    };

    let sr = find_service_request(&index, header.as_ref())?;
    let referral = Decoder {
        index: &index,
        rules,
    }
    .referral(&sr, header.as_ref())?;
    let identity = identifiers_of(&sr)?.into_iter().next().map(|i| {
        let org = |o: &Option<Organisation>| {
            o.as_ref()
                .and_then(|o| o.ods_code.clone().or(o.scottish_practice_code.clone()))
        };
        crate::model::lifecycle::Identity {
            organisation: referral
                .referrer_details
                .as_ref()
                .and_then(|r| org(&r.organisation))
                .or_else(|| org(&referral.gp_practice))
                .unwrap_or_else(|| "-".into()),
            system: i.system,
            value: i.value,
        }
    });
    Ok(DecodedReferral {
        identity,
        referral,
        bundle_id: root.string("id")?,
        message_header_id: match &header {
            Some(h) => h.string("id")?,
            None => None,
        },
    })
}

fn find_service_request<'a>(
    index: &BundleIndex<'a>,
    header: Option<&Node<'a>>,
) -> Result<Node<'a>> {
    if let Some(h) = header {
        for focus in h.items("focus")? {
            if let Some(r) = index.resolve(h, &focus)?
                && r.resource_type() == Some("ServiceRequest")
            {
                return Ok(r);
            }
        }
    }
    let all = index.of_type("ServiceRequest");
    let is_sp = |n: &&Node| {
        n.value["code"]["coding"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["code"] == SOCIAL_PRESCRIBING_REFERRAL))
    };
    let sp: Vec<&Node> = all.iter().copied().filter(is_sp).collect();
    match (sp.as_slice(), all.as_slice()) {
        ([one], _) | ([], [one]) => Ok((*one).clone()),
        ([], []) => Err(GatewayError::invalid(
            Stage::Intake,
            "Bundle.entry",
            "no ServiceRequest (the referral) in the Bundle",
        )),
        _ => Err(GatewayError::invalid(
            Stage::Intake,
            "Bundle.entry",
            "more than one ServiceRequest and none is named by MessageHeader.focus",
        )),
    }
}

struct Decoder<'i, 'a> {
    index: &'i BundleIndex<'a>,
    rules: &'i Rules,
}

impl<'a> Decoder<'_, 'a> {
    fn referral(&self, sr: &Node<'a>, header: Option<&Node<'a>>) -> Result<Referral> {
        let status = sr.req_str("status")?.to_string();
        sr.req_str("intent")?;
        let subject_ref = sr.req("subject")?;
        let patient = self
            .index
            .resolve_typed(sr, &subject_ref, &["Patient"])?
            .ok_or_else(|| subject_ref.err("must reference the Patient entry in the Bundle"))?;

        let referral_date = match sr.str("authoredOn")? {
            Some(d) if is_fhir_datetime(d) => Some(d.to_string()),
            Some(_) => {
                return Err(GatewayError::invalid(
                    Stage::Intake,
                    sr.child_path("authoredOn"),
                    "is not a valid FHIR dateTime (YYYY-MM-DDThh:mm:ss+zz:zz)",
                ));
            }
            None => None,
        };

        let mut reasons = Vec::new();
        for rc in sr.items("reasonCode")? {
            reasons.push(codeable(&rc)?);
        }
        for rr in sr.items("reasonReference")? {
            if let Some(cond) = self.index.resolve(sr, &rr)?
                && let Some(code) = cond.get("code")
            {
                reasons.push(codeable(&code)?);
            }
        }
        let notes: Vec<String> = sr
            .items("note")?
            .iter()
            .map(|n| n.string("text"))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();

        let source_of_referral = match sr.extension(&format!(
            "{UKCORE_EXT}Extension-UKCore-SourceOfServiceRequest"
        ))? {
            Some(ext) => ext
                .get("valueCodeableConcept")
                .map(|c| codeable(&c))
                .transpose()?,
            None => None,
        };

        let referrer = match sr.get("requester") {
            Some(r) => self.referrer(sr, &r)?,
            None => None,
        };
        let referred_to = match sr.items("performer")?.first() {
            Some(p) => self.organisation_ref(sr, p)?,
            None => None,
        };
        let gp_practice = self.practice(header, referrer.as_ref(), &patient)?;
        let (person, prefs) = self.person(&patient)?;
        let consent = self.consent(sr, &patient)?;
        let flags = self.flags(&patient)?;
        let gender_history = sections::gender_history(&patient, person.gender.as_deref())?;
        let requirements = IndividualRequirements {
            reasonable_adjustments: flags.adjustments,
        };

        Ok(Referral {
            person_demographics: person,
            contact_preferences: prefs,
            referral_details: ReferralDetails {
                service_request_id: sr.string("id")?,
                referral_date,
                status,
                priority: sr.string("priority")?,
                service_requested: match sr.get("code") {
                    Some(c) => codeable(&c)?,
                    None => Coded::default(),
                },
                source_of_referral,
                reasons_for_referral: reasons,
                what_matters_to_me: (!notes.is_empty()).then(|| notes.join("\n")),
                referral_method: sections::referral_method(sr)?,
                return_response_to: sections::return_response_to(sr)?,
            },
            referrer_details: referrer,
            gp_practice,
            referred_to,
            referral_to: self.referral_to(sr)?,
            risks: flags.risks,
            safeguarding: flags.safeguarding,
            individual_requirements: (!requirements.is_empty()).then_some(requirements),
            gender_history,
            consent,
            not_recorded: Vec::new(),
        })
    }

    fn person(&self, p: &Node<'a>) -> Result<(PersonDemographics, Option<ContactPreferences>)> {
        let mut nhs = None;
        let mut chi = None;
        for id in p.items("identifier")? {
            let Some(kind) = id.str("system")?.and_then(IdentifierKind::from_system) else {
                continue;
            };
            let value = id.req_str("value")?;
            let valid = identifiers::validate_with(kind, value, self.rules.chi_check).map_err(
                |problem| {
                    GatewayError::invalid(
                        Stage::Intake,
                        id.child_path("value"),
                        problem.describe(kind),
                    )
                },
            )?;
            match kind {
                IdentifierKind::Nhs => nhs = Some(valid),
                IdentifierKind::Chi => chi = Some(valid),
            }
        }
        if nhs.is_none() && chi.is_none() {
            return Err(GatewayError::invalid(
                Stage::Intake,
                p.child_path("identifier"),
                "the Patient needs an NHS number (https://fhir.nhs.uk/Id/nhs-number) or a CHI number",
            ));
        }

        let names = p.items("name")?;
        let name_node = names
            .iter()
            .find(|n| n.value.get("use").and_then(Value::as_str) == Some("official"))
            .or(names.first())
            .ok_or_else(|| {
                GatewayError::invalid(
                    Stage::Intake,
                    p.child_path("name"),
                    "is required but missing",
                )
            })?;
        let name = human_name(name_node)?;
        if name.family.is_none() && name.given.is_empty() {
            return Err(name_node.err("needs a family or given name"));
        }

        let dob = p.req_str("birthDate")?;
        if !is_fhir_date(dob) {
            return Err(GatewayError::invalid(
                Stage::Intake,
                p.child_path("birthDate"),
                "is not a valid FHIR date (YYYY-MM-DD)",
            ));
        }
        let gender = p.string("gender")?;
        if let Some(g) = &gender
            && !matches!(g.as_str(), "male" | "female" | "other" | "unknown")
        {
            return Err(GatewayError::invalid(
                Stage::Intake,
                p.child_path("gender"),
                "must be one of male, female, other, unknown",
            ));
        }
        let addresses = p.items("address")?;
        let address = addresses
            .iter()
            .find(|a| a.value.get("use").and_then(Value::as_str) == Some("home"))
            .or(addresses.first())
            .map(address)
            .transpose()?;
        let ethnic = match p.extension(&format!("{UKCORE_EXT}Extension-UKCore-EthnicCategory"))? {
            Some(e) => e
                .get("valueCodeableConcept")
                .map(|c| codeable(&c))
                .transpose()?,
            None => None,
        };

        let person = PersonDemographics {
            nhs_number: nhs,
            chi_number: chi,
            name,
            date_of_birth: dob.to_string(),
            gender,
            address,
            telecom: telecoms(p)?,
            ethnic_category: ethnic,
        };
        Ok((person, contact_preferences(p)?))
    }

    fn referrer(&self, sr: &Node<'a>, reference: &Node<'a>) -> Result<Option<Referrer>> {
        let Some(who) = self.index.resolve_typed(
            sr,
            reference,
            &[
                "Practitioner",
                "PractitionerRole",
                "Organization",
                "Patient",
                "RelatedPerson",
            ],
        )?
        else {
            // Identifier-only reference: keep the identifier, nothing to resolve.
            return Ok(reference.get("identifier").map(|i| Referrer {
                identifiers: identifier(&i).ok().flatten().into_iter().collect(),
                ..Default::default()
            }));
        };
        let mut r = Referrer::default();
        match who.resource_type() {
            Some("PractitionerRole") => {
                if let Some(code) = who.items("code")?.first() {
                    r.role = Some(codeable(code)?);
                }
                r.specialty = who.items("specialty")?.first().map(codeable).transpose()?;
                r.service = self.role_service(&who)?;
                r.identifiers.extend(identifiers_of(&who)?);
                r.telecom = telecoms(&who)?;
                if let Some(pr) = who.get("practitioner")
                    && let Some(pract) = self.index.resolve_typed(&who, &pr, &["Practitioner"])?
                {
                    self.fill_practitioner(&mut r, &pract)?;
                }
                if let Some(org) = who.get("organization") {
                    r.organisation = self.organisation_ref(&who, &org)?;
                }
            }
            Some("Practitioner") => self.fill_practitioner(&mut r, &who)?,
            Some("Organization") => r.organisation = Some(organisation(&who, self.rules)?),
            _ => {
                // Self-referral or a relative: the role says so, no personal details copied.
                r.role = Some(Coded {
                    text: who.resource_type().map(str::to_string),
                    ..Default::default()
                });
            }
        }
        Ok(Some(r))
    }

    fn fill_practitioner(&self, r: &mut Referrer, p: &Node<'a>) -> Result<()> {
        if let Some(n) = p.items("name")?.first() {
            r.name = Some(human_name(n)?);
        }
        r.identifiers.extend(identifiers_of(p)?);
        if r.telecom.is_empty() {
            r.telecom = telecoms(p)?;
        }
        Ok(())
    }

    fn organisation_ref(
        &self,
        from: &Node<'a>,
        reference: &Node<'a>,
    ) -> Result<Option<Organisation>> {
        match self.index.resolve_typed(
            from,
            reference,
            &[
                "Organization",
                "HealthcareService",
                "PractitionerRole",
                "Practitioner",
            ],
        )? {
            Some(n) if n.resource_type() == Some("Organization") => {
                Ok(Some(organisation(&n, self.rules)?))
            }
            Some(n) if n.resource_type() == Some("HealthcareService") => Ok(Some(Organisation {
                name: n.string("name")?,
                ..Default::default()
            })),
            Some(_) => Ok(None),
            None => match reference.get("identifier") {
                Some(i) => Ok(Some(Organisation {
                    name: reference.str("display")?.map(str::to_string),
                    ..identified(&i, self.rules)?
                })),
                None => Ok(None),
            },
        }
    }

    /// The referring practice: MessageHeader.sender, else the referrer's organisation,
    /// else the Patient's registered GP practice.
    fn practice(
        &self,
        header: Option<&Node<'a>>,
        referrer: Option<&Referrer>,
        patient: &Node<'a>,
    ) -> Result<Option<Organisation>> {
        Ok(self
            .practice_organisation(header, referrer, patient)?
            .map(|mut p| {
                p.nation = nation_of(&p);
                p
            }))
    }

    fn practice_organisation(
        &self,
        header: Option<&Node<'a>>,
        referrer: Option<&Referrer>,
        patient: &Node<'a>,
    ) -> Result<Option<Organisation>> {
        if let Some(h) = header
            && let Some(sender) = h.get("sender")
            && let Some(org) = self.organisation_ref(h, &sender)?
        {
            return Ok(Some(org));
        }
        if let Some(org) = referrer.and_then(|r| r.organisation.clone()) {
            return Ok(Some(org));
        }
        for gp in patient.items("generalPractitioner")? {
            if let Some(org) = self.organisation_ref(patient, &gp)? {
                return Ok(Some(org));
            }
        }
        Ok(None)
    }
}

/// The nation a practice's code places it in: a Scottish practice code is Scotland's.
fn nation_of(p: &Organisation) -> Option<crate::model::Nation> {
    match (&p.scottish_practice_code, &p.ods_code) {
        (Some(_), _) => Some(crate::model::Nation::Scotland),
        (None, Some(ods)) => Some(crate::model::Nation::of_ods(ods)),
        (None, None) => None,
    }
}
