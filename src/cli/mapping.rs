//! `clw-gateway mapping test|run`: golden fixtures and one-off runs, no broker needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::golden::run_fixtures;
use crate::config::Config;
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::{MappingSet, refsets};

#[derive(clap::Subcommand, Debug)]
pub enum MappingCommand {
    /// Load every mapping, code map and refset membership (validating each against its
    /// schema; a code outside its refset's published membership fails), run every
    /// mapping's golden fixtures, and list each code whose refset membership is not
    /// verified. Exits non-zero naming each failure.
    Test {
        /// Folder holding the mappings, their codes/ and refsets/ (default: mappings.dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Map one input file and print the output, or every error. A mapping whose input
    /// is the canonical referral also takes a FHIR referral Bundle (decoded and put
    /// through consent policy first).
    Run {
        /// The input document (JSON).
        file: PathBuf,
        /// Which mapping (its `name`).
        #[arg(long)]
        mapping: String,
        /// A destination constant, NAME=VALUE, read as %NAME in expressions (repeatable).
        #[arg(long = "constant", value_parser = parse_constant)]
        constants: Vec<(String, String)>,
        /// Folder holding the mappings, their codes/ and refsets/ (default: mappings.dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn parse_constant(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

pub fn run(command: MappingCommand, config: &Config) -> Result<ExitCode> {
    let configured = &config.mappings.dir;
    match command {
        MappingCommand::Test { dir } => test(dir.as_ref().unwrap_or(configured)),
        MappingCommand::Run {
            file,
            mapping,
            constants,
            dir,
        } => run_one(
            dir.as_ref().unwrap_or(configured),
            &file,
            &mapping,
            constants.into_iter().collect(),
        ),
    }
}

fn test(dir: &Path) -> Result<ExitCode> {
    let set = MappingSet::load_configured(dir)?;
    let outcomes = run_fixtures(&set);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for o in &outcomes {
        match &o.failure {
            None => println!("ok   {} fixtures[{}] ({})", o.mapping, o.index, o.input),
            Some(why) => println!(
                "FAIL {} fixtures[{}] ({}): {why}",
                o.mapping, o.index, o.input
            ),
        }
    }
    let (mut verified, mut unverified) = (0, 0);
    for map in set.codes.values() {
        let (lines, v, u) = refsets::report(map, &set.refsets);
        lines.iter().for_each(|l| println!("{l}"));
        (verified, unverified) = (verified + v, unverified + u);
    }
    println!(
        "refsets: {} memberships kept, {verified} codes verified as members, {unverified} codes {}",
        set.refsets.len(),
        refsets::NOT_VERIFIED
    );
    println!(
        "{} mappings, {} code maps, {} fixtures, {failed} failed",
        set.iter().count(),
        set.codes.len(),
        outcomes.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_one(
    dir: &Path,
    file: &Path,
    name: &str,
    constants: BTreeMap<String, String>,
) -> Result<ExitCode> {
    let set = MappingSet::load_configured(dir)?;
    let mapping = set.get(name).ok_or_else(|| {
        GatewayError::invalid(
            Stage::Config,
            "--mapping",
            format!(
                "no mapping {name:?} in {} (have: {})",
                dir.display(),
                set.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let input = crate::cli::golden::load_input(mapping, file)
        .map_err(|e| GatewayError::permanent(Stage::Intake, e))?;
    match mapping.apply(&input, &constants) {
        Ok(out) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&out.document).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {}", e.reason());
            }
            Ok(ExitCode::from(1))
        }
    }
}
