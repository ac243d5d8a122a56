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

/// Validates a number, returning the normalised 10-digit form. Spaces are allowed
/// between groups ("943 476 5919") as printed on letters.
pub fn validate(kind: IdentifierKind, value: &str) -> Result<String, IdentifierProblem> {
    let compact: String = value.chars().filter(|c| *c != ' ').collect();
    if compact.len() != 10 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentifierProblem::NotTenDigits);
    }
    let mut digits = [0u8; 10];
    for (i, b) in compact.bytes().enumerate() {
        digits[i] = b - b'0';
    }
    let check = mod11_check_digit(&digits).ok_or(IdentifierProblem::CheckDigitTen)?;
    if check != digits[9] {
        return Err(IdentifierProblem::CheckDigitMismatch);
    }
    if kind == IdentifierKind::Chi {
        let day = digits[0] * 10 + digits[1];
        let month = digits[2] * 10 + digits[3];
        if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
            return Err(IdentifierProblem::ChiDateInvalid);
        }
    }
    Ok(compact)
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
}
