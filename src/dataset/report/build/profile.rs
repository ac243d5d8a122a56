//! Who was referred: the deprivation, age and gender profile.

use std::collections::BTreeSet;

use super::{NOT_RECORDED, Section, Suppression, UNKNOWN, counts, known_first, tally};
use crate::dataset::row::DatasetRow;

pub(super) fn deprivation(rows: &[DatasetRow], s: &Suppression) -> Section {
    let decile = |r: &DatasetRow| r.deprivation_decile.filter(|d| (1..=10).contains(d));
    let mut by: Vec<(String, u64)> = (1..=10u8)
        .map(|d| {
            let label = match d {
                1 => "1 (most deprived)".to_string(),
                10 => "10 (least deprived)".to_string(),
                d => d.to_string(),
            };
            (
                label,
                rows.iter().filter(|r| decile(r) == Some(d)).count() as u64,
            )
        })
        .collect();
    by.push((
        UNKNOWN.into(),
        rows.iter().filter(|r| decile(r).is_none()).count() as u64,
    ));
    let indices: BTreeSet<String> = rows
        .iter()
        .filter(|r| decile(r).is_some())
        .filter_map(|r| r.deprivation_index.as_ref().map(|i| i.to_uppercase()))
        .collect();
    let mut section = counts(
        "deprivation",
        "Deprivation profile",
        "Decile",
        "Referrals",
        by,
        Some(rows.len() as u64),
        s,
    );
    let of = if indices.is_empty() {
        "the deprivation index".to_string()
    } else {
        indices.into_iter().collect::<Vec<_>>().join(", ")
    };
    section.note = Some(format!(
        "Deciles of {of} by the person's postcode (each nation's own index: deciles of \
         different indices are not comparable)."
    ));
    section
}

/// "18-24" before "25-34", "75+" after them, by the band's first age.
fn band_start(label: &str) -> u32 {
    let digits: String = label.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(u32::MAX)
}

pub(super) fn ages(rows: &[DatasetRow], s: &Suppression) -> Section {
    let mut by = known_first(tally(rows, |r| [r.age_band.clone()]));
    by.sort_by_key(|(l, _)| band_start(l));
    counts(
        "ages",
        "Age profile",
        "Age band",
        "Referrals",
        by,
        Some(rows.len() as u64),
        s,
    )
}

pub(super) fn genders(rows: &[DatasetRow], s: &Suppression) -> Section {
    let by = known_first(tally(rows, |r| {
        [r.gender.clone().unwrap_or_else(|| NOT_RECORDED.into())]
    }));
    counts(
        "gender",
        "Gender",
        "Gender",
        "Referrals",
        by,
        Some(rows.len() as u64),
        s,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn bands_in_order_of_their_first_age() {
        assert_eq!(super::band_start("75+"), 75);
        assert_eq!(super::band_start("18-24"), 18);
        assert_eq!(super::band_start("unknown"), u32::MAX);
    }
}
