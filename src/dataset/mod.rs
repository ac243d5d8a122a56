//! The pseudonymised programme dataset (issue 19): its building blocks.
//!
//! The dataset is one row per referral, for a programme's evaluation and commissioning:
//! facts shown only coarsely (the referral's month, an age band, a deprivation decile,
//! days between two events) and a pseudonym that links one person's repeat referrals.
//! It carries no direct identifier: no NHS or CHI number, name, address, postcode, date
//! of birth or exact date. This module holds the pure pieces such a row is made of;
//! building rows and extracts is still **planned**.
//!
//! - [`pseudonym`]: keyed person references ([`PersonRef`]) and the pseudonyms an
//!   extract shows ([`Pseudonymiser`]).
//! - [`deprivation`]: postcode → SIMD or IMD decile, through the operator's lookup files.
//! - [`bands`]: age ranges and bands, the referral month, days between two dates.

pub mod bands;
pub mod deprivation;
pub mod pseudonym;

pub use bands::{AgeRange, UNKNOWN, age_on, coarse_band, days_between, five_year_band, month_of};
pub use deprivation::{Decile, Deprivation, DeprivationConfig, LookupTable};
pub use pseudonym::{PersonRef, Pseudonymiser};
