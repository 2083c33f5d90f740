//! `rport stats`: the daemon's figures (or the pinned maps' alone) as a table, as JSON, or
//! as a diagnosis of the clients' NATs.
use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::out::{out, outln};
use crate::observe::{
    control,
    snapshot::Snapshot,
    table::{diagnose, render_table},
};

/// `rport stats` flags.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Machine-readable output (field names documented in docs/STATS.md).
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds, with per-second rates.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
    /// A short diagnosis of the clients' NATs, in plain language.
    #[arg(long, conflicts_with = "json")]
    pub nat: bool,
    /// Read the pinned XDP maps in DIR directly instead of asking the daemon (works while
    /// no daemon runs, where DIR's bpffs is visible; daemon counters are then absent).
    #[arg(long, value_name = "DIR")]
    pub pin_path: Option<PathBuf>,
}

/// `rport stats`.
pub fn stats_cmd(args: StatsArgs) -> Result<()> {
    match args.watch {
        None => {
            let s = match &args.pin_path {
                Some(dir) => Snapshot::read(dir, None)?,
                None => control::stats()?,
            };
            if args.nat {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64();
                out!("{}", diagnose(&s, now));
                return Ok(());
            }
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&s.to_json()?)?);
            } else {
                out!("{}", render_table(&s, None, 1.0));
            }
        }
        Some(0) => bail!("--watch needs a period of at least 1 second"),
        Some(secs) => {
            let mut prev = control::stats()?;
            loop {
                std::thread::sleep(Duration::from_secs(secs));
                let s = control::stats()?;
                if args.json {
                    outln!("{}", s.to_json()?);
                } else {
                    out!(
                        "\x1b[2J\x1b[H{}",
                        render_table(&s, Some(&prev), secs as f64)
                    );
                }
                prev = s;
            }
        }
    }
    Ok(())
}
