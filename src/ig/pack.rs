//! The information-governance pack as data: what the running configuration says about
//! where patient data goes, under which agreement, how it travels, how long it is kept,
//! who can see it and which hazards bear on each route. Built once by
//! [`super::build`]; rendered as Markdown, HTML, JSON and an SVG data-flow diagram. It
//! holds names, field names, periods and places — never a credential or patient value.

use serde::Serialize;

pub use crate::config::{Finding, Level};
pub use crate::deliver::channel::Channel;

/// Everything the pack says, in the order the documents say it.
#[derive(Debug, Clone, Serialize)]
pub struct Pack {
    pub about: About,
    /// Problems `check` reports about agreements (missing, fields or retention beyond).
    pub findings: Vec<Finding>,
    /// Every agreement declared in `[agreements]`, and any a destination names without
    /// a declaration (`declared = false`).
    pub agreements: Vec<Agreement>,
    /// Practice → programme → destinations, from the routes file (or every practice to
    /// `[referrals] destinations`).
    pub routes: Vec<Route>,
    /// Referral destinations (GP → CLW), each with its fields, consent, channel, resting
    /// places and hazards.
    pub destinations: Vec<Destination>,
    /// Record writers (CLW → GP): what is written back, to which practices.
    pub writers: Vec<Destination>,
    /// The platforms whose events are written back, and the doors they use.
    pub platforms: Vec<Platform>,
    /// How consent decides what is sent, per flow.
    pub consent: Vec<ConsentRule>,
    /// Each kind of data the gateway keeps, for how long and where.
    pub retention: Vec<Retention>,
    pub console: Console,
    pub dataset: Dataset,
    /// The hazards of the clinical safety case that bear on some route of this
    /// configuration, with the routes they bear on.
    pub hazards: Vec<Hazard>,
}

/// What the pack was made from.
#[derive(Debug, Clone, Serialize)]
pub struct About {
    /// `clw-gateway` and its version.
    pub gateway_version: String,
    /// `sha256:` of the effective configuration (file and environment overrides, with
    /// any credentials in URLs removed) and the routes file: two packs with the same
    /// digest describe the same configuration.
    pub config_digest: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// `[gateway] instance`.
    pub instance: String,
    /// "RabbitMQ" or "spool folders".
    pub source: String,
    /// `[ig] require_agreements`.
    pub require_agreements: bool,
    /// The IG contact named in `[ig]` (a role or team, not a person's details), if any.
    pub contact: Option<String>,
}

/// One data-sharing agreement.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub id: String,
    /// False: a destination names it but `[agreements]` does not declare it.
    pub declared: bool,
    pub title: Option<String>,
    pub controllers: Vec<String>,
    /// UK GDPR Article 6 basis.
    pub lawful_basis: Option<String>,
    /// UK GDPR Article 9 condition for health data.
    pub special_category: Option<String>,
    /// The common-law duty of confidentiality: on what basis it is set aside.
    pub confidentiality: Option<String>,
    pub purposes: Vec<String>,
    pub processors: Vec<String>,
    pub sub_processors: Vec<String>,
    /// The field schedule it permits (canonical names; an entry covers what is under
    /// it); None: the agreement declares no schedule.
    pub fields: Option<Vec<String>>,
    /// The longest any data received under it may be kept, e.g. "400d".
    pub max_retention: Option<String>,
    pub review_by: Option<String>,
    /// The destinations and record writers that name it.
    pub used_by: Vec<String>,
}

/// Where referrals from a practice go.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// An ODS code or Scottish practice code; `*` for every practice (no routes file).
    pub practice: String,
    /// England, Scotland, or "" when the code does not say.
    pub nation: String,
    pub programme: String,
    pub destinations: Vec<String>,
    /// The record writers the message back uses for this practice.
    pub record_writers: Vec<String>,
    /// What the gateway does when the programme does not answer (`[lifecycle]`), in words;
    /// None: nothing but the awaiting-response gauge.
    pub unanswered: Option<String>,
}

/// A referral destination or a record writer.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    pub name: String,
    /// The destination kind (`webhook`, `lamplight`, `fhir-record`, ...).
    pub kind: String,
    /// `referral` or `message-back`.
    pub flow: String,
    /// The programmes it serves (referrals), from the routes.
    pub programmes: Vec<String>,
    /// The practices it writes to (record writers) or receives referrals from; `*`:
    /// every practice.
    pub practices: Vec<String>,
    pub agreement: Option<String>,
    /// The referral's consent states under which it is sent, and how.
    pub sent_under: Vec<String>,
    /// Its allow-list, as configured: the agreement's field list.
    pub allow: Vec<String>,
    /// Every canonical field the allow-list lets it receive.
    pub fields: Vec<Field>,
    /// Sensitive sections (risks, safeguarding, gender history) it is agreed for; the
    /// rest are withheld from it.
    pub sensitive_agreed: Vec<String>,
    pub sensitive_withheld: Vec<String>,
    pub channel: Channel,
    /// Where it keeps patient data of its own (a folder), and for how long.
    pub rests: Vec<Resting>,
    /// What it is sent of a referral's later messages (updates, cancellations, consent
    /// withdrawn, reminders, closes), in words; empty for a record writer.
    pub later: Vec<String>,
    /// Hazard ids that bear on it.
    pub hazards: Vec<String>,
}

/// One canonical field a destination may receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// The canonical name, e.g. `person_demographics.nhs_number`.
    pub canonical: String,
    /// The PRSB Social Prescribing standard's item (path of names), or "" when the
    /// field is the gateway's own (e.g. the event's id).
    pub prsb: String,
    /// Identifies the person on its own or with other fields (names, numbers, date of
    /// birth, address, contact details).
    pub identifiable: bool,
    /// Words someone wrote (not a code or a date): sent only under full consent.
    pub free_text: bool,
    /// A sensitive section: sent only where the agreement names it.
    pub sensitive: bool,
    /// The allow-list entry that lets it through.
    pub allowed_by: String,
}

/// Where some data rests, for how long.
#[derive(Debug, Clone, Serialize)]
pub struct Resting {
    /// The kind of data, e.g. "referral files written to the outbox".
    pub what: String,
    /// A folder, or the store (backend and host; no credentials).
    pub place: String,
    /// A humantime period ("30d"), or "" when nothing removes it.
    pub kept_for: String,
    /// The `[retention]` key that sets it.
    pub key: String,
}

/// A platform whose events come back.
#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    pub name: String,
    pub programme: Option<String>,
    /// The referral destinations it answers for.
    pub answers_for: Vec<String>,
    /// "signed HTTP door", "AMQP door as broker user X", "spool folder".
    pub doors: Vec<String>,
    /// What each event must say of the patient.
    pub require_patient: Vec<String>,
}

/// What is sent under one consent state.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRule {
    pub flow: String,
    /// e.g. "given", "codes-only", "not recorded", "declined or withdrawn".
    pub state: String,
    /// What is sent then.
    pub sends: String,
}

/// One kind of data kept, and its period.
#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    /// The `[retention]` key.
    pub key: String,
    pub what: String,
    pub period: String,
    /// The same period in seconds, for machines (0: not a fixed period).
    pub seconds: u64,
    /// Where it rests.
    pub place: String,
    /// Holds patient-identifiable data.
    pub identifiable: bool,
}

/// The operator console and who may use it.
#[derive(Debug, Clone, Serialize)]
pub struct Console {
    pub enabled: bool,
    pub session_ttl: String,
    /// "own secret" per operator, or the trusted proxy header's name.
    pub sign_in: String,
    pub operators: Vec<Operator>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub name: String,
    /// `viewer` or `operator`.
    pub role: String,
    /// What the role may do, in words.
    pub may: String,
    /// The programmes they see; empty: every programme.
    pub programmes: Vec<String>,
}

/// The programme dataset and its extract.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub enabled: bool,
    /// Who receives the extracts (`[dataset] recipients`).
    pub recipients: Vec<String>,
    /// Who holds the pseudonym key (`[dataset] key_holder`).
    pub key_holder: Option<String>,
    /// Where the gateway reads the key from (a variable's or file's name), or None:
    /// row-level extracts refused.
    pub key_source: Option<String>,
    pub agreement: Option<String>,
    /// The opt-out list's file, if one is configured.
    pub opt_out: Option<String>,
    pub suppress_below: u64,
    pub round_to: u64,
    /// The scheduled extract's folder and period, if scheduled.
    pub schedule: Option<String>,
    pub kept_for: String,
}

/// A hazard of the clinical safety case that bears on this configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Hazard {
    /// As the hazard log states it: id, title, residual risk, status, and the flows and
    /// destination kinds it applies to.
    #[serde(flatten)]
    pub logged: super::hazards::LoggedHazard,
    /// The destinations and record writers of this configuration it bears on.
    pub routes: Vec<String>,
}
