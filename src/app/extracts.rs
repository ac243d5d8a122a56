//! The scheduled dataset extract (`[dataset.schedule]`): every `every`, each programme's
//! rows of the last `months` months written to `dir/<programme>.<format>` — through a
//! temporary file renamed into place, so a reader never meets half an extract — and
//! audited as the command's are.

use std::io::Write as _;

use tracing::{info, warn};

use crate::config::Config;
use crate::dataset::extract::{CodeMaps, Period};
use crate::dataset::output::{ExtractJob, Format};
use crate::error::{GatewayError, Result, Stage};
use crate::sources::shutdown::Shutdown;
use crate::store::Store;

/// One round: every programme's extract written. Answers how many were.
/// `codes` are the running configuration's code maps (categories as the gateway codes).
pub async fn write_all(config: &Config, store: &Store, codes: &CodeMaps) -> Result<usize> {
    let Some(schedule) = &config.dataset.schedule else {
        return Ok(0);
    };
    let format = Format::parse(&schedule.format).unwrap_or(Format::Csv);
    std::fs::create_dir_all(&schedule.dir).map_err(|e| io(&schedule.dir, e))?;
    let today = chrono::Utc::now().date_naive();
    let from = today
        .checked_sub_months(chrono::Months::new(schedule.months))
        .unwrap_or(today);

    let programmes = store.dataset_programmes().await?;
    for programme in &programmes {
        let period = Period {
            programme: programme.clone(),
            from: from.format("%Y-%m-%d").to_string(),
            to: today.format("%Y-%m-%d").to_string(),
            practice: None,
        };
        let job = ExtractJob {
            store,
            config: &config.dataset,
            codes: codes.clone(),
            actor: "schedule",
        };
        let safe: String = programme
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let target = schedule.dir.join(format!("{safe}.{}", schedule.format));
        let partial = schedule
            .dir
            .join(format!(".{safe}.{}.partial", schedule.format));
        let file = std::fs::File::create(&partial).map_err(|e| io(&partial, e))?;
        let mut w = std::io::BufWriter::new(file);
        job.write(&period, format, &mut w).await?;
        w.flush().map_err(|e| io(&partial, e))?;
        w.get_ref().sync_all().map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
    }
    Ok(programmes.len())
}

fn io(path: &std::path::Path, e: std::io::Error) -> GatewayError {
    GatewayError::permanent(
        Stage::Deliver,
        format!("dataset.schedule: cannot write {}: {e}", path.display()),
    )
}

/// The running service's scheduled extract: at start and every `every`.
pub async fn run(config: Config, store: Store, codes: CodeMaps, mut shutdown: Shutdown) {
    let Some(every) = config.dataset.schedule.as_ref().map(|s| s.every) else {
        return;
    };
    loop {
        match write_all(&config, &store, &codes).await {
            Ok(n) => info!(programmes = n, "scheduled dataset extract written"),
            Err(e) => {
                warn!(error = %e, "the scheduled dataset extract could not be written; trying again at the next interval")
            }
        }
        if !shutdown.pause(every).await {
            return;
        }
    }
}
