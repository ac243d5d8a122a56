//! NHS and CHI numbers: ten digits, the last a modulus-11 check digit.

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// CHI has no single canonical system URI: NHS Scotland's national one, the NHS England
/// style one and the HL7 OID are all met in practice, so all three are accepted on input.
pub const CHI_SYSTEMS: [&str; 3] = [
    "https://fhir.nhs.uk/Id/chi-number",
    "urn:oid:2.16.840.1.113883.2.1.3.2.4.16.53",
    "http://fhir.nhs.scot.uk/Id/national/chi-number",
];

pub const ODS_ORGANIZATION_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const ODS_SITE_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-site-code";
/// A Scottish GP practice's code (5 digits), as Scotland's Digital Health and Care
/// platform names it. Deployments may accept more systems (`intake.scottish_practice_systems`).
pub const SCOTTISH_PRACTICE_SYSTEM: &str = "https://digitalhealthplatform.scot/fhir/GpPracticeCode";

/// How CHI numbers are checked: set per deployment, as Scotland moves to a new CHI
/// number format whose first digits are no longer a date of birth. NHS numbers are
/// always checked by modulus 11. Neither date of birth nor sex is ever derived from
/// CHI digits, whichever rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChiCheck {
    /// Today's rule: the first six digits a real DDMMYY date, and the check digit.
    #[default]
    #[serde(rename = "date-and-modulus-11")]
    DateAndModulus11,
    /// The check digit only.
    #[serde(rename = "modulus-11")]
    Modulus11,
    /// Ten digits.
    FormatOnly,
}

impl ChiCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            ChiCheck::DateAndModulus11 => "date-and-modulus-11",
            ChiCheck::Modulus11 => "modulus-11",
            ChiCheck::FormatOnly => "format-only",
        }
    }
}

/// Whether `code` has the form of a Scottish practice code: five digits.
pub fn is_scottish_practice_code(code: &str) -> bool {
    code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    Nhs,
    Chi,
}

impl IdentifierKind {
    pub fn from_system(system: &str) -> Option<Self> {
        if system == NHS_NUMBER_SYSTEM {
            Some(IdentifierKind::Nhs)
        } else if CHI_SYSTEMS.contains(&system) {
            Some(IdentifierKind::Chi)
        } else {
            None
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            IdentifierKind::Nhs => "NHS number",
            IdentifierKind::Chi => "CHI number",
        }
    }
}

/// Why a number was refused. Never carries the number itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierProblem {
    NotTenDigits,
    CheckDigitTen,
    CheckDigitMismatch,
    ChiDateInvalid,
}

impl IdentifierProblem {
    pub fn describe(self, kind: IdentifierKind) -> String {
        let label = kind.label();
        match self {
            IdentifierProblem::NotTenDigits => format!("{label} must be exactly 10 digits"),
            IdentifierProblem::CheckDigitTen => {
                format!(
                    "{label} is not valid (modulus-11 check gives 10, which no issued number has)"
                )
            }
            IdentifierProblem::CheckDigitMismatch => {
                format!("{label} check digit is wrong (modulus-11)")
            }
            IdentifierProblem::ChiDateInvalid => {
                format!("{label} must start with a date of birth as DDMMYY")
            }
        }
    }
}

/// The modulus-11 check digit for the first nine digits, or None when it would be 10.
fn mod11_check_digit(digits: &[u8; 10]) -> Option<u8> {
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

/// Validates a number under today's CHI rule (see [`validate_with`]).
pub fn validate(kind: IdentifierKind, value: &str) -> Result<String, IdentifierProblem> {
    validate_with(kind, value, ChiCheck::default())
}

/// Validates a number, returning the normalised 10-digit form. Spaces are allowed
/// between groups ("943 476 5919") as printed on letters. `chi` says how a CHI number
/// is checked; an NHS number is always checked by modulus 11.
pub fn validate_with(
    kind: IdentifierKind,
    value: &str,
    chi: ChiCheck,
) -> Result<String, IdentifierProblem> {
    let compact: String = value.chars().filter(|c| *c != ' ').collect();
    if compact.len() != 10 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentifierProblem::NotTenDigits);
    }
    let mut digits = [0u8; 10];
    for (i, b) in compact.bytes().enumerate() {
        digits[i] = b - b'0';
    }
    let chi = (kind == IdentifierKind::Chi).then_some(chi);
    if chi == Some(ChiCheck::FormatOnly) {
        return Ok(compact);
    }
    let check = mod11_check_digit(&digits).ok_or(IdentifierProblem::CheckDigitTen)?;
    if check != digits[9] {
        return Err(IdentifierProblem::CheckDigitMismatch);
    }
    if chi == Some(ChiCheck::DateAndModulus11) && !is_ddmmyy(&digits) {
        return Err(IdentifierProblem::ChiDateInvalid);
    }
    Ok(compact)
}

/// Whether the first six digits are a real date as DDMMYY. The century is not known, so
/// 29 February counts in any year divisible by four (00 included: 2000 was a leap year).
fn is_ddmmyy(d: &[u8; 10]) -> bool {
    let day = d[0] * 10 + d[1];
    let month = d[2] * 10 + d[3];
    let year = d[4] * 10 + d[5];
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A stable key for finding a patient's referrals without indexing the number itself:
/// SHA-256 of "nhs:<number>" or "chi:<number>".
pub fn patient_key(kind: IdentifierKind, number: &str) -> String {
    use sha2::{Digest, Sha256};
    let tag = match kind {
        IdentifierKind::Nhs => "nhs",
        IdentifierKind::Chi => "chi",
    };
    let compact: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    hex::encode(Sha256::digest(format!("{tag}:{compact}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_nhs_numbers() {
        assert_eq!(
            validate(IdentifierKind::Nhs, "9912003888").as_deref(),
            Ok("9912003888")
        );
        assert_eq!(
            validate(IdentifierKind::Nhs, "943 476 5919").as_deref(),
            Ok("9434765919")
        );
    }

    #[test]
    fn wrong_check_digit() {
        assert_eq!(
            validate(IdentifierKind::Nhs, "9912003889"),
            Err(IdentifierProblem::CheckDigitMismatch)
        );
    }

    #[test]
    fn check_digit_ten_is_invalid() {
        // 1000000010: sum = 10 + 1*2 = 12 → 11 - 1 = 10
        assert_eq!(
            validate(IdentifierKind::Nhs, "1000000010"),
            Err(IdentifierProblem::CheckDigitTen)
        );
    }

    #[test]
    fn wrong_length_or_letters() {
        assert_eq!(
            validate(IdentifierKind::Nhs, "99120038"),
            Err(IdentifierProblem::NotTenDigits)
        );
        assert_eq!(
            validate(IdentifierKind::Nhs, "99120038AB"),
            Err(IdentifierProblem::NotTenDigits)
        );
    }

    #[test]
    fn chi_numbers() {
        // 0402568877 is valid mod-11 and starts 04/02/56.
        assert_eq!(
            validate(IdentifierKind::Chi, "0402568877").as_deref(),
            Ok("0402568877")
        );
        // a valid mod-11 number that cannot be a date
        assert_eq!(
            validate(IdentifierKind::Chi, "9912003888"),
            Err(IdentifierProblem::ChiDateInvalid)
        );
    }

    #[test]
    fn systems() {
        assert_eq!(
            IdentifierKind::from_system(NHS_NUMBER_SYSTEM),
            Some(IdentifierKind::Nhs)
        );
        for s in CHI_SYSTEMS {
            assert_eq!(IdentifierKind::from_system(s), Some(IdentifierKind::Chi));
        }
        assert_eq!(IdentifierKind::from_system("urn:other"), None);
    }

    #[test]
    fn each_chi_check_rule_takes_what_it_says() {
        // 3102... : 31 February is no date, whatever the check digit says.
        let no_date = "3102561234";
        let digits: Vec<u8> = no_date.bytes().map(|b| b - b'0').collect();
        let mut d = [0u8; 10];
        d.copy_from_slice(&digits);
        let check = mod11_check_digit(&d).unwrap();
        let no_date = format!("{}{check}", &no_date[..9]);
        assert_eq!(
            validate_with(IdentifierKind::Chi, &no_date, ChiCheck::DateAndModulus11),
            Err(IdentifierProblem::ChiDateInvalid)
        );
        assert!(validate_with(IdentifierKind::Chi, &no_date, ChiCheck::Modulus11).is_ok());
        assert!(validate_with(IdentifierKind::Chi, &no_date, ChiCheck::FormatOnly).is_ok());
        // A wrong check digit passes only the format check.
        let wrong = "0402568878";
        assert_eq!(
            validate_with(IdentifierKind::Chi, wrong, ChiCheck::Modulus11),
            Err(IdentifierProblem::CheckDigitMismatch)
        );
        assert!(validate_with(IdentifierKind::Chi, wrong, ChiCheck::FormatOnly).is_ok());
        assert_eq!(
            validate_with(IdentifierKind::Chi, "04025688", ChiCheck::FormatOnly),
            Err(IdentifierProblem::NotTenDigits)
        );
        // NHS numbers are checked by modulus 11 whatever the CHI rule.
        assert_eq!(
            validate_with(IdentifierKind::Nhs, "9434765918", ChiCheck::FormatOnly),
            Err(IdentifierProblem::CheckDigitMismatch)
        );
    }

    #[test]
    fn a_chi_date_is_a_real_date() {
        let real = |s: &str| {
            let mut d = [0u8; 10];
            for (i, b) in s.bytes().enumerate() {
                d[i] = b - b'0';
            }
            is_ddmmyy(&d)
        };
        assert!(real("2902960000"));
        assert!(!real("2902970000"));
        assert!(real("3112990000"));
        assert!(!real("3104990000"));
        assert!(!real("0013990000"));
        assert!(!real("0001990000"));
    }
}
