//! `rport check`: can this machine run rport, on these interfaces? The probes are in
//! [`datapath::probe`](crate::datapath::probe), the verdicts in
//! [`observe::hostcheck`](crate::observe::hostcheck); this prints them.
use std::io::IsTerminal as _;

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::out::{out, outln};
use crate::observe::hostcheck::{Report, Status};

/// `rport check` flags.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Interfaces toward the clients, as `rport run` would get them.
    #[arg(long, value_name = "IF", num_args = 1..)]
    pub outside: Vec<String>,
    /// Interfaces toward the SIP servers.
    #[arg(long, value_name = "IF", num_args = 1..)]
    pub inside: Vec<String>,
    /// The egress `rport run` would get: with `bypass`, the gateway's rules on the
    /// forwarding path (which bypass skips) are a yellow line.
    #[arg(long, value_enum, default_value_t = crate::datapath::loader::Egress::Kernel)]
    pub egress: crate::datapath::loader::Egress,
    /// Machine-readable output (the facts and the verdicts; see docs/OPERATIONS.md).
    #[arg(long)]
    pub json: bool,
}

/// One line per verdict: `ok  `, `warn` or `FAIL`, what was found, then the fix.
pub fn render(r: &Report, colour: bool) -> String {
    let mut out = String::new();
    for l in &r.checks {
        let (tag, c) = match l.status {
            Status::Ok => ("ok  ", "32"),
            Status::Warn => ("warn", "33"),
            Status::Fail => ("FAIL", "31"),
        };
        let tag = if colour {
            format!("\x1b[{c}m{tag}\x1b[0m")
        } else {
            tag.to_string()
        };
        out.push_str(&format!("{tag} {}", l.message));
        if let Some(f) = &l.fix {
            out.push_str(&format!(" (fix: {f})"));
        }
        out.push('\n');
    }
    out
}

/// `rport check`: exits non-zero when a line is red (rport cannot run like this).
pub fn check(args: CheckArgs) -> Result<()> {
    let r = crate::datapath::probe::report(
        &args.outside,
        &args.inside,
        args.egress == crate::datapath::loader::Egress::Bypass,
    );
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        out!("{}", render(&r, std::io::stdout().is_terminal()));
    }
    if !r.ok {
        let n = r.checks.iter().filter(|l| l.status == Status::Fail).count();
        bail!("rport cannot run like this: {n} check(s) failed (the FAIL lines)");
    }
    Ok(())
}
