//! `rport bindings`: the live bindings of the running daemon, newest first.
use anyhow::Result;
use clap::Args;

use crate::observe::control;

/// `rport bindings` flags.
#[derive(Args, Debug)]
pub struct BindingsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Show at most N bindings, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `rport bindings`.
pub fn bindings_cmd(args: BindingsArgs) -> Result<()> {
    let mut list = control::bindings()?;
    list.truncate(args.limit);
    if args.json {
        // Through a Value, whose maps sort their keys: the order the output always had.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&list)?)?
        );
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<22} {:>8} {:>5}  FLAGS",
        "SOURCE (NAT MAPPING)", "SENT-BY", "SERVER", "AGE s", "REQS"
    );
    for b in &list {
        println!(
            "{:<24} {:<22} {:<22} {:>8.1} {:>5}  {}",
            b.source.to_string(),
            b.sent_by,
            b.server.to_string(),
            b.age_s,
            b.requests,
            b.flag_names().collect::<Vec<_>>().join(",")
        );
    }
    Ok(())
}
