//! Ages, age bands, months and day counts: how the dataset shows dates without showing
//! a date of birth or a day.
//!
//! A FHIR date of birth may be partial (`YYYY` or `YYYY-MM`). [`age_on`] therefore gives
//! an [`AgeRange`] — the youngest and the oldest the person can be — rather than guessing
//! a day, and a band is given only when every possible age falls in it; otherwise the
//! band is [`UNKNOWN`]. A full date gives a range of one age.
//!
//! Someone born on 29 February is a year older on 1 March in a year without one, as UK
//! law counts it (in England and Wales by common practice, in Scotland by the Age of
//! Legal Capacity (Scotland) Act 1991, s. 6).

use chrono::{Datelike, Months, NaiveDate};

use crate::model::dates::{is_fhir_date, is_fhir_datetime};
use crate::model::message_back::day_of;

/// The band of an age not known well enough.
pub const UNKNOWN: &str = "unknown";

/// The youngest and the oldest a person can be on a day, in whole years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeRange {
    pub min: u32,
    pub max: u32,
}

impl AgeRange {
    /// A known age.
    pub fn exact(age: u32) -> AgeRange {
        AgeRange { min: age, max: age }
    }

    /// The age, when only one is possible.
    pub fn age(self) -> Option<u32> {
        (self.min == self.max).then_some(self.min)
    }
}

/// The ages possible on `on` for a FHIR date of birth (`YYYY`, `YYYY-MM` or
/// `YYYY-MM-DD`). None when the date is not a real FHIR date, or when every day it
/// allows is after `on`. A partial date whose period runs past `on` counts only the days
/// up to `on` (the person was born by then).
pub fn age_on(date_of_birth: &str, on: NaiveDate) -> Option<AgeRange> {
    if !is_fhir_date(date_of_birth) {
        return None;
    }
    let mut parts = date_of_birth.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: Option<u32> = parts.next().map(str::parse).transpose().ok()?;
    let day: Option<u32> = parts.next().map(str::parse).transpose().ok()?;
    let earliest = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), day.unwrap_or(1))?;
    let latest = match (month, day) {
        (_, Some(_)) => earliest,
        (Some(_), None) => earliest.checked_add_months(Months::new(1))?.pred_opt()?,
        (None, None) => earliest.checked_add_months(Months::new(12))?.pred_opt()?,
    };
    if earliest > on {
        return None;
    }
    Some(AgeRange {
        min: full_years(latest.min(on), on),
        max: full_years(earliest, on),
    })
}

/// Whole years from `born` to `on` (`born` not after `on`).
fn full_years(born: NaiveDate, on: NaiveDate) -> u32 {
    let before_birthday = (on.month(), on.day()) < (born.month(), born.day());
    u32::try_from(on.year() - born.year() - i32::from(before_birthday)).unwrap_or(0)
}

/// The band every age in `age` falls in, or [`UNKNOWN`].
fn band(age: AgeRange, of: fn(u32) -> &'static str) -> &'static str {
    let band = of(age.min);
    if band == of(age.max) { band } else { UNKNOWN }
}

const FIVE_YEAR_BANDS: [&str; 19] = [
    "0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54",
    "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90+",
];

/// "0-4", "5-9", … "85-89", "90+"; [`UNKNOWN`] when the range spans two bands. For no
/// age at all: `age_on(..).map_or(UNKNOWN, five_year_band)`.
pub fn five_year_band(age: AgeRange) -> &'static str {
    band(age, |a| {
        let i = usize::try_from(a / 5).unwrap_or(usize::MAX);
        FIVE_YEAR_BANDS[i.min(FIVE_YEAR_BANDS.len() - 1)]
    })
}

/// "0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+"; [`UNKNOWN`] when
/// the range spans two bands.
pub fn coarse_band(age: AgeRange) -> &'static str {
    band(age, |a| match a {
        0..=17 => "0-17",
        18..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        65..=74 => "65-74",
        _ => "75+",
    })
}

/// "YYYY-MM" of a FHIR date or dateTime as written (the month in its own zone), or None
/// for a year alone or anything not a real FHIR date/dateTime.
pub fn month_of(fhir_datetime: &str) -> Option<String> {
    if !is_fhir_datetime(fhir_datetime) {
        return None;
    }
    fhir_datetime.get(..7).map(str::to_string)
}

/// Calendar days from `a` to `b` (negative when `b` is earlier), each the day as written
/// in its own zone. None unless both are full FHIR dates or dateTimes.
pub fn days_between(a: &str, b: &str) -> Option<i64> {
    Some((day_of(b)? - day_of(a)?).num_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn range(dob: &str, on: &str) -> Option<(u32, u32)> {
        age_on(dob, day(on)).map(|r| (r.min, r.max))
    }

    #[test]
    fn full_dates_around_a_birthday() {
        assert_eq!(range("2000-06-15", "2026-06-15"), Some((26, 26)));
        assert_eq!(range("2000-06-15", "2026-06-14"), Some((25, 25)));
        assert_eq!(range("2000-06-15", "2026-06-16"), Some((26, 26)));
        assert_eq!(range("2000-06-15", "2001-01-01"), Some((0, 0)));
        // Born today; born tomorrow is no age at all.
        assert_eq!(range("2026-06-15", "2026-06-15"), Some((0, 0)));
        assert_eq!(range("2026-06-16", "2026-06-15"), None);
        assert_eq!(
            age_on("2000-06-15", day("2026-06-15")).unwrap().age(),
            Some(26)
        );
    }

    #[test]
    fn leap_day_births() {
        assert_eq!(range("2004-02-29", "2023-02-28"), Some((18, 18)));
        assert_eq!(range("2004-02-29", "2023-03-01"), Some((19, 19)));
        assert_eq!(range("2004-02-29", "2024-02-28"), Some((19, 19)));
        assert_eq!(range("2004-02-29", "2024-02-29"), Some((20, 20)));
        // A day that never was.
        assert_eq!(range("2003-02-29", "2024-02-29"), None);
    }

    #[test]
    fn partial_dates_give_ranges() {
        // Born some day in June 2000: 25 until the 30th, 26 from the 1st.
        let june = age_on("2000-06", day("2026-06-15")).unwrap();
        assert_eq!((june.min, june.max), (25, 26));
        assert_eq!(june.age(), None);
        assert_eq!(five_year_band(june), "25-29");
        assert_eq!(coarse_band(june), "25-34");
        // Born in 2001: 24 or 25, across both kinds of band.
        let y2001 = age_on("2001", day("2026-06-15")).unwrap();
        assert_eq!((y2001.min, y2001.max), (24, 25));
        assert_eq!(five_year_band(y2001), UNKNOWN);
        assert_eq!(coarse_band(y2001), UNKNOWN);
        // Born in 1990: 35 or 36, one band of each.
        let y1990 = age_on("1990", day("2026-06-15")).unwrap();
        assert_eq!(five_year_band(y1990), "35-39");
        assert_eq!(coarse_band(y1990), "35-44");
        // On the last day of the year a year of birth is one age.
        assert_eq!(range("2000", "2026-12-31"), Some((26, 26)));
        assert_eq!(range("2000-02", "2026-03-01"), Some((26, 26)));
        // A period still running on the day counts the days up to it.
        assert_eq!(range("2026-06", "2026-06-15"), Some((0, 0)));
        assert_eq!(range("2026", "2026-01-01"), Some((0, 0)));
        assert_eq!(range("2026-07", "2026-06-15"), None);
        assert_eq!(range("2027", "2026-06-15"), None);
    }

    /// The range is exactly the ages of the days a partial date allows, each counted
    /// by chrono's own `years_since`.
    #[test]
    fn ranges_are_the_ages_of_every_possible_day() {
        let ons = [
            "2026-01-01",
            "2026-02-28",
            "2026-06-15",
            "2026-12-31",
            "2028-02-29",
        ];
        for dob in ["2000", "2004-02", "2000-12", "1999-01", "2025", "2026-01"] {
            // Every day whose date begins with the partial one.
            let first = day(&format!("{dob}-01-01")[..10]);
            let allowed = first
                .iter_days()
                .take_while(|d| d.to_string().starts_with(dob));
            for on in ons.map(day) {
                let ages: Vec<u32> = allowed
                    .clone()
                    .take_while(|d| *d <= on)
                    .map(|d| on.years_since(d).unwrap())
                    .collect();
                let want = ages.iter().min().zip(ages.iter().max());
                let want = want.map(|(min, max)| (*min, *max));
                assert_eq!(range(dob, &on.to_string()), want, "{dob} on {on}");
            }
        }
    }

    #[test]
    fn garbage_is_no_age() {
        for bad in [
            "",
            "yesterday",
            "2000-13",
            "2000-02-30",
            "2000-6-15",
            "15/06/2000",
            "2000-06-15T10:00:00Z",
            "0000",
            "-2000",
            "2000-06-15-01",
        ] {
            assert_eq!(age_on(bad, day("2026-06-15")), None, "{bad}");
        }
    }

    #[test]
    fn band_edges() {
        let five = |a| five_year_band(AgeRange::exact(a));
        let coarse = |a| coarse_band(AgeRange::exact(a));
        for (age, want) in [
            (0, "0-4"),
            (4, "0-4"),
            (5, "5-9"),
            (17, "15-19"),
            (84, "80-84"),
            (89, "85-89"),
            (90, "90+"),
            (130, "90+"),
            (u32::MAX, "90+"),
        ] {
            assert_eq!(five(age), want, "{age}");
        }
        for (age, want) in [
            (0, "0-17"),
            (17, "0-17"),
            (18, "18-24"),
            (24, "18-24"),
            (25, "25-34"),
            (44, "35-44"),
            (45, "45-54"),
            (64, "55-64"),
            (74, "65-74"),
            (75, "75+"),
            (u32::MAX, "75+"),
        ] {
            assert_eq!(coarse(age), want, "{age}");
        }
        // A range inside one band keeps it; across two it is unknown.
        assert_eq!(five_year_band(AgeRange { min: 20, max: 24 }), "20-24");
        assert_eq!(five_year_band(AgeRange { min: 24, max: 25 }), UNKNOWN);
        assert_eq!(coarse_band(AgeRange { min: 17, max: 18 }), UNKNOWN);
        assert_eq!(coarse_band(AgeRange { min: 80, max: 99 }), "75+");
        assert_eq!(None.map_or(UNKNOWN, five_year_band), UNKNOWN);
    }

    #[test]
    fn months() {
        // The month as written: 23:30 in New York on 30 November is December in UTC.
        assert_eq!(
            month_of("2026-11-30T23:30:00-05:00").as_deref(),
            Some("2026-11")
        );
        assert_eq!(month_of("2026-11-25").as_deref(), Some("2026-11"));
        assert_eq!(month_of("2026-11").as_deref(), Some("2026-11"));
        for bad in [
            "2026",
            "2026-13",
            "2026-11-31",
            "2026-11-25T10:00",
            "soon",
            "",
        ] {
            assert_eq!(month_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn days() {
        assert_eq!(days_between("2026-11-01", "2026-11-08"), Some(7));
        assert_eq!(days_between("2026-11-08", "2026-11-01"), Some(-7));
        assert_eq!(days_between("2026-11-08", "2026-11-08"), Some(0));
        assert_eq!(days_between("2024-02-28", "2024-03-01"), Some(2));
        assert_eq!(days_between("2023-02-28", "2023-03-01"), Some(1));
        // Each day as written in its own zone.
        assert_eq!(
            days_between("2026-11-01T23:30:00-05:00", "2026-11-02T00:30:00Z"),
            Some(1)
        );
        assert_eq!(
            days_between("2026-11-01", "2026-11-03T09:00:00+01:00"),
            Some(2)
        );
        for bad in ["2026-11", "2026", "2026-11-31", "tomorrow", ""] {
            assert_eq!(days_between(bad, "2026-11-08"), None, "{bad}");
            assert_eq!(days_between("2026-11-08", bad), None, "{bad}");
        }
    }
}
