//! `rport bindings`: the live bindings of the running daemon, newest first; with
//! `--clients`, the clients a server can reach through their Contact tag instead.
use anyhow::Result;
use clap::Args;

use crate::cli::out::outln;
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
    /// List the clients a server can reach (their Contact tagged, the tag still valid):
    /// Call-ID, NAT mapping, server, most recently tagged first.
    #[arg(long)]
    pub clients: bool,
}

/// `rport bindings`.
pub fn bindings_cmd(args: BindingsArgs) -> Result<()> {
    if args.clients {
        return clients_cmd(args);
    }
    let mut list = control::bindings()?;
    list.truncate(args.limit);
    if args.json {
        // Through a Value, whose maps sort their keys: the order the output always had.
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&list)?)?
        );
        return Ok(());
    }
    outln!(
        "{:<24} {:<22} {:<22} {:>8} {:>5}  FLAGS",
        "SOURCE (NAT MAPPING)",
        "SENT-BY",
        "SERVER",
        "AGE s",
        "REQS"
    );
    for b in &list {
        outln!(
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

/// `rport bindings --clients`.
fn clients_cmd(args: BindingsArgs) -> Result<()> {
    let mut list = control::clients()?;
    list.truncate(args.limit);
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&list)?)?
        );
        return Ok(());
    }
    outln!(
        "{:<32} {:<24} {:<16} {:>12} {:>10}",
        "CLIENT (CALL-ID)",
        "NAT MAPPING",
        "SERVER",
        "TAGGED s ago",
        "EXPIRES s"
    );
    for c in &list {
        outln!(
            "{:<32} {:<24} {:<16} {:>12.1} {:>10.0}",
            // The Call-ID is the client's text: no control characters to the terminal.
            c.client
                .chars()
                .map(|ch| if ch.is_control() { '?' } else { ch })
                .collect::<String>(),
            c.mapping.to_string(),
            c.server.to_string(),
            c.tagged_s_ago,
            c.expires_in_s
        );
    }
    Ok(())
}
