//! `rport`: the command line. Each subcommand lives in its own module of the library.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{CommandFactory as _, Parser, Subcommand};
use rport_userspace::{
    cli::{assets, bindings, check, config, out, replay, run as daemon, stats},
    observe::logging,
    sip::rewrite,
};

#[derive(Parser)]
#[command(
    name = "rport",
    version,
    about = "Kernel-bypass SIP NAT helper (RFC 3581) for edge gateways"
)]
struct Cli {
    /// Log level (default: RUST_LOG, else info). The XDP program's own events are
    /// `rport run --xdp-log`.
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    log_level: Option<logging::Level>,
    /// Log lines on stderr: `human`, or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Human)]
    log_format: logging::Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the XDP program on the gateway's interfaces and run the daemon.
    Run(daemon::RunArgs),
    /// Show the counters of the running daemon.
    Stats(stats::StatsArgs),
    /// Show the live bindings (observed source of each client transaction).
    Bindings(bindings::BindingsArgs),
    /// Rewrite one SIP message (stdin → stdout) as rport would forward it.
    Rewrite {
        /// The source address and port the message was observed from.
        #[arg(long, value_name = "ADDR:PORT")]
        source: SocketAddr,
        /// Behave as if the client had sent `;rport`.
        #[arg(long)]
        force_rport: bool,
        /// The server the message goes to: the Contact tag is bound to its address.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
        server: std::net::IpAddr,
    },
    /// Check that this machine can run rport (privileges, kernel, bpffs, host settings)
    /// and, given its interfaces, that they can (XDP, AF_XDP, rp_filter, MTU).
    Check(check::CheckArgs),
    /// Run a capture through the XDP program and the daemon's rewrite: what rport would do.
    Replay {
        /// A capture: pcap or pcapng; Ethernet, Linux cooked (`tcpdump -i any`) or raw IP.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// UDP ports that carry SIP (repeatable).
        #[arg(long = "sip-port", value_name = "N", default_values_t = [5060u16])]
        sip_ports: Vec<u16>,
        /// Addresses of the SIP servers: their packets count as arriving on an inside
        /// interface (responses get steered only there).
        #[arg(long = "server", value_name = "ADDR")]
        servers: Vec<std::net::IpAddr>,
        /// The deployment's steering-tag key file (`rport run --tag-key`): tags in the
        /// capture are then checked as the gateway checks them (default: a key of the
        /// replay's own, so every tag in the capture is invalid).
        #[arg(long, value_name = "PATH")]
        tag_key: Option<PathBuf>,
    },
    /// Write the man pages and shell completions into DIR (the package build uses it).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

/// A command-line error as one line: what is wrong, then where help is. (clap's own
/// rendering spreads it over a usage block; operators' scripts and logs want one line.)
fn one_line(e: &clap::Error) -> String {
    format!("rport: {} (rport --help)", config::clap_line(e))
}

fn main() -> ExitCode {
    // `rport run`: the config file's keys join the command line first (cli/config.rs).
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "run") {
        match config::expand(&argv[2..], std::path::Path::new(config::DEFAULT_PATH)) {
            Ok(rest) => {
                argv.truncate(2);
                argv.extend(rest);
            }
            Err(e) => {
                eprintln!("rport: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            match e.kind() {
                DisplayHelp | DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                // `rport` alone: the help, as a usage error.
                DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(2);
                }
                _ => {}
            }
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    logging::init(cli.log_level, cli.log_format);
    let result = match cli.cmd {
        Cmd::Run(args) => daemon::run(args),
        Cmd::Stats(args) => stats::stats_cmd(args),
        Cmd::Bindings(args) => bindings::bindings_cmd(args),
        Cmd::Rewrite {
            source,
            force_rport,
            server,
        } => return rewrite::run_cli(source, server, force_rport),
        Cmd::Check(args) => check::check(args),
        Cmd::Replay {
            file,
            json,
            sip_ports,
            servers,
            tag_key,
        } => replay::run(&file, json, &sip_ports, &servers, tag_key.as_deref()),
        Cmd::GenerateAssets { dir } => assets::generate(Cli::command(), &dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `rport stats | head`: the reader has all it wanted; not an error (cli/out.rs).
        Err(e) if out::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole chain of causes, no backtrace.
            eprintln!("rport: {e:#}");
            ExitCode::FAILURE
        }
    }
}
