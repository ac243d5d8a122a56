//! FHIR `date` and `dateTime` checks: the regex shapes of the R4 spec plus real calendar dates.

use chrono::NaiveDate;

fn year_ok(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) && s != "0000"
}

fn two_digits(s: &str, lo: u32, hi: u32) -> Option<u32> {
    if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = s.parse().ok()?;
    (lo..=hi).contains(&n).then_some(n)
}

/// YYYY, YYYY-MM or YYYY-MM-DD, the day real for its month.
pub fn is_fhir_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [y] => year_ok(y),
        [y, m] => year_ok(y) && two_digits(m, 1, 12).is_some(),
        [y, m, d] => {
            year_ok(y)
                && two_digits(m, 1, 12).is_some()
                && two_digits(d, 1, 31).is_some()
                && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        }
        _ => false,
    }
}

/// A FHIR dateTime: a partial date, or a full date-time with seconds and a zone.
pub fn is_fhir_datetime(s: &str) -> bool {
    match s.split_once('T') {
        None => is_fhir_date(s),
        Some((date, _)) => {
            date.len() == 10
                && is_fhir_date(date)
                && chrono::DateTime::parse_from_rfc3339(s).is_ok()
        }
    }
}

/// A period in words a reader checks at a glance: "30 days", "2922 days (about 8
/// years)", "8 hours"; anything finer as humantime writes it.
pub fn period_in_words(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match (secs % 86_400, secs % 3_600) {
        (0, _) if secs >= 2 * 365 * 86_400 => {
            let days = secs / 86_400;
            format!(
                "{days} days (about {} years)",
                (days as f64 / 365.25).round()
            )
        }
        (0, _) if secs > 0 => match secs / 86_400 {
            1 => "1 day".into(),
            n => format!("{n} days"),
        },
        (_, 0) if secs > 0 => format!("{} hours", secs / 3_600),
        _ => humantime::format_duration(d).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in ["1970", "1970-09", "1970-09-11", "2024-02-29"] {
            assert!(is_fhir_date(ok), "{ok}");
        }
        for bad in [
            "",
            "70-09-11",
            "1970-13-01",
            "1970-02-30",
            "2023-02-29",
            "11/09/1970",
            "yesterday",
            "1970-9-1",
        ] {
            assert!(!is_fhir_date(bad), "{bad}");
        }
    }

    #[test]
    fn datetimes() {
        for ok in [
            "2026-11-22",
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00.123+01:00",
        ] {
            assert!(is_fhir_datetime(ok), "{ok}");
        }
        for bad in [
            "2026-11-22T10:00",
            "2026-11-22T25:00:00Z",
            "2026-11-22 10:00:00Z",
            "now",
        ] {
            assert!(!is_fhir_datetime(bad), "{bad}");
        }
    }
}
