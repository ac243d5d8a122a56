//! `clw-gateway ig`: the information-governance pack for the configuration given —
//! one format to standard output, or every file into a folder — audited.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::{GatewayError, Result, Stage};
use crate::store::Write;

#[derive(clap::Args, Debug)]
pub struct IgArgs {
    /// markdown, html, json, svg, dpia (the DPIA annex) or dsa (the DSA field schedule),
    /// to standard output.
    #[arg(long, default_value = "markdown")]
    pub format: String,
    /// Write every file of the pack into this folder instead (ig-pack.md, ig-pack.html,
    /// ig-pack.json, data-flow.svg, dpia-annex.md, dsa-field-schedule.md).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Who is generating it, for the audit log (default: $USER).
    #[arg(long, env = "USER", default_value = "operator")]
    pub actor: String,
}

pub async fn ig(config: &Config, args: IgArgs) -> Result<()> {
    let pack = crate::ig::build(&crate::ig::Source::load(config)?, chrono::Utc::now())?;
    let files = crate::ig::render(&pack)?;
    let chosen = match &args.out {
        Some(_) => None,
        None => Some(match args.format.as_str() {
            "markdown" | "md" => &files.markdown,
            "html" => &files.html,
            "json" => &files.json,
            "svg" => &files.svg,
            "dpia" => &files.dpia_annex,
            "dsa" => &files.dsa_schedule,
            _ => {
                return Err(GatewayError::config(
                    "--format",
                    "must be markdown, html, json, svg, dpia or dsa",
                ));
            }
        }),
    };
    // Recorded before anything leaves: a pack nobody can account for is not made.
    let how = match &args.out {
        Some(dir) => format!("every file into {}", dir.display()),
        None => format!("{} to standard output", args.format),
    };
    let store = super::store(config).await?;
    let audited = store
        .write(Write::Audit(crate::ig::audit_entry(
            &pack,
            &args.actor,
            &how,
        )))
        .await;
    store.close().await;
    audited?;
    for f in &pack.findings {
        let level = match f.level {
            crate::config::Level::Warn => "WARN",
            crate::config::Level::Fail => "FAIL (refused at start-up)",
        };
        eprintln!("{level} {} ({})", f.message, f.key);
    }
    match (&args.out, chosen) {
        (Some(dir), _) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                GatewayError::invalid(Stage::Config, "--out", format!("cannot create: {e}"))
            })?;
            for (name, contents) in files.files() {
                let path = dir.join(name);
                std::fs::write(&path, contents).map_err(|e| {
                    GatewayError::invalid(
                        Stage::Config,
                        "--out",
                        format!("cannot write {}: {e}", path.display()),
                    )
                })?;
                println!("{}", path.display());
            }
        }
        (None, Some(text)) => print!("{text}"),
        (None, None) => {}
    }
    Ok(())
}
