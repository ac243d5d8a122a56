//! The pseudonymised programme dataset (issue 19): its building blocks.
//!
//! The dataset is one row per referral, for a programme's evaluation and commissioning:
//! facts shown only coarsely (the referral's month, an age band, a deprivation decile,
//! days between two events) and a pseudonym that links one person's repeat referrals.
//! It carries no direct identifier: no NHS or CHI number, name, address, postcode, date
//! of birth or exact date. This module holds the pure pieces such a row is made of;
//! [`facts`] are what the fronts record ([`Recorder`]); [`extract`] builds rows from them.
//!
//! - [`pseudonym`]: keyed person references ([`PersonRef`]) and the pseudonyms an
//!   extract shows ([`Pseudonymiser`]).
//! - [`deprivation`]: postcode → SIMD or IMD decile, through the operator's lookup files.
//! - [`bands`]: age ranges and bands, the referral month, days between two dates.

pub mod bands;
pub mod config;
pub mod deprivation;
pub mod extract;
pub mod facts;
pub mod output;
pub mod pseudonym;
pub mod recorder;
pub mod report;
pub mod row;

pub use bands::{AgeRange, UNKNOWN, age_on, coarse_band, days_between, five_year_band, month_of};
pub use config::DatasetConfig;
pub use deprivation::{Decile, Deprivation, DeprivationConfig, LookupTable};
pub use pseudonym::{PersonRef, Pseudonymiser};
pub use recorder::Recorder;
pub use row::{DatasetRow, Ons4Items, ScoreChange, Totals};

/// The recorder a deployment's fronts use: None when `dataset.enabled` is off. Loads the
/// deprivation lookup files (a start-up error names a bad one).
pub async fn recorder_for(
    config: &DatasetConfig,
    store: &crate::store::Store,
) -> crate::error::Result<Option<std::sync::Arc<Recorder>>> {
    if !config.enabled {
        return Ok(None);
    }
    let deprivation = match &config.deprivation {
        Some(d) => Some(std::sync::Arc::new(Deprivation::load(d)?)),
        None => None,
    };
    Ok(Some(std::sync::Arc::new(Recorder::new(
        store.dataset_link_key().await?,
        deprivation,
    ))))
}
