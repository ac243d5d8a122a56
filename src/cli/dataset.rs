//! `clw-gateway extract`: the programme dataset's row-level extract (CSV or JSON) of one
//! programme's referrals in a period, pseudonymised, to a file or standard output; and
//! `clw-gateway report`: its aggregate report (HTML, JSON or PDF), small counts
//! suppressed.

use std::path::PathBuf;

use crate::config::Config;
use crate::dataset::extract::{CodeMaps, Period};
use crate::dataset::output::{ExtractJob, Format};
use crate::error::{GatewayError, Result};
use crate::mapping::MappingSet;

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// The programme (as the routes name it; `default` without routes).
    #[arg(long)]
    pub programme: String,
    /// First day of referral (YYYY-MM-DD).
    #[arg(long)]
    pub from: String,
    /// Last day of referral (YYYY-MM-DD); open episodes are counted to this day.
    #[arg(long)]
    pub to: String,
    /// csv or json.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Write here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Who is extracting, for the audit log (default: $USER).
    #[arg(long, env = "USER", default_value = "operator")]
    pub actor: String,
}

/// A day given on the command line, checked.
pub fn day(flag: &str, value: &str) -> Result<String> {
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| GatewayError::config(flag, "must be a day, YYYY-MM-DD"))
}

/// The period the arguments name, and the code maps categories come from.
pub fn period(
    config: &Config,
    programme: &str,
    from: &str,
    to: &str,
) -> Result<(Period, CodeMaps)> {
    let period = Period {
        programme: programme.to_string(),
        from: day("--from", from)?,
        to: day("--to", to)?,
        practice: None,
    };
    if period.from > period.to {
        return Err(GatewayError::config("--from", "is after --to"));
    }
    let codes = CodeMaps::of(&MappingSet::load_configured(&config.mappings.dir)?);
    Ok((period, codes))
}

pub async fn extract(config: &Config, args: ExtractArgs) -> Result<()> {
    let format = Format::parse(&args.format)
        .ok_or_else(|| GatewayError::config("--format", "must be csv or json"))?;
    let (period, codes) = period(config, &args.programme, &args.from, &args.to)?;
    // Refused before anything is read when the key is missing.
    crate::dataset::output::pseudonymiser(&config.dataset)?;
    let store = super::store(config).await?;
    let job = ExtractJob {
        store: &store,
        config: &config.dataset,
        codes,
        actor: &args.actor,
    };
    let result = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                GatewayError::config("--out", format!("cannot create {}: {e}", path.display()))
            })?;
            let mut w = std::io::BufWriter::new(file);
            job.write(&period, format, &mut w).await
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout());
            job.write(&period, format, &mut w).await
        }
    };
    store.close().await;
    let totals = result?;
    eprintln!(
        "extract of {} referrals ({} to {}): left out consent declined {}, opted out {}",
        totals.referrals, period.from, period.to, totals.consent_declined, totals.opted_out
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The programme (as the routes name it; `default` without routes).
    #[arg(long)]
    pub programme: String,
    /// One practice's report (its ODS or Scottish practice code).
    #[arg(long)]
    pub practice: Option<String>,
    /// First day of referral (YYYY-MM-DD).
    #[arg(long)]
    pub from: String,
    /// Last day of referral (YYYY-MM-DD).
    #[arg(long)]
    pub to: String,
    /// html (self-contained, opens offline), json or pdf.
    #[arg(long, default_value = "html")]
    pub format: String,
    /// Write here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Who is reporting, for the audit log (default: $USER).
    #[arg(long, env = "USER", default_value = "operator")]
    pub actor: String,
}

pub async fn report(config: &Config, args: ReportArgs) -> Result<()> {
    if !matches!(args.format.as_str(), "html" | "json" | "pdf") {
        return Err(GatewayError::config(
            "--format",
            "must be html, json or pdf",
        ));
    }
    let (mut period, codes) = period(config, &args.programme, &args.from, &args.to)?;
    period.practice = args.practice.clone();
    let store = super::store(config).await?;
    let job = ExtractJob {
        store: &store,
        config: &config.dataset,
        codes,
        actor: &args.actor,
    };
    let bytes = job.report(&period, &args.format).await;
    store.close().await;
    let bytes = bytes?;
    match &args.out {
        Some(path) => std::fs::write(path, &bytes).map_err(|e| {
            GatewayError::config("--out", format!("cannot write {}: {e}", path.display()))
        }),
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| GatewayError::config("--out", format!("cannot write: {e}")))
        }
    }
}
