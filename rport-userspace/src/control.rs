//! Control socket and the `stats` / `bindings` commands. (Placeholder: being written.)
use clap::Args;

/// `rport stats` flags.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds, with per-second rates.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
}

/// `rport bindings` flags.
#[derive(Args, Debug)]
pub struct BindingsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Show at most N bindings.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

pub fn stats_cmd(_args: StatsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn bindings_cmd(_args: BindingsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
