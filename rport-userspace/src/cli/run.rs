//! `rport run`: load and attach, serve the control socket, forward rewritten requests,
//! detach cleanly on SIGINT/SIGTERM.
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::{Context as _, Result};
use aya::programs::XdpMode;
use clap::{Args, ValueEnum};

use crate::{
    datapath::{forward, loader},
    observe::{
        control, metrics,
        nat::NatTracker,
        snapshot::{Live, Sources},
    },
};

/// XDP attach mode.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Let the kernel choose (native where the driver supports it).
    Auto,
    /// Native (driver) XDP; fails where the driver has none.
    Native,
    /// Generic (skb) XDP: works everywhere, slower.
    Skb,
}

/// What rport does to the Contacts of clients' messages (`--contact`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ContactMode {
    /// Add the client's steering tag to each Contact URI (`;rptag=`, like Kamailio's
    /// add_contact_alias, but authenticated): the server's requests to that Contact are
    /// steered to the client's NAT mapping, with the server unchanged.
    Alias,
    /// Leave Contacts as the client wrote them (requests toward clients behind NAT are
    /// then the server's problem, as without rport).
    Off,
}

/// `rport run` flags.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Interfaces toward the clients and their NATs (requests come in here).
    #[arg(long, value_name = "IF", num_args = 1.., required = true)]
    pub outside: Vec<String>,
    /// Interfaces toward the SIP servers (responses come in here).
    #[arg(long, value_name = "IF", num_args = 1.., required = true)]
    pub inside: Vec<String>,
    /// UDP ports that carry SIP (repeatable).
    #[arg(long = "sip-port", value_name = "N", default_values_t = [rport_common::SIP_PORT])]
    pub sip_ports: Vec<u16>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub xdp_mode: Mode,
    /// bpffs directory for the pinned maps (default: /sys/fs/bpf/rport/net-<netns inode>).
    #[arg(long, value_name = "DIR")]
    pub pin_path: Option<PathBuf>,
    /// Treat clients from this network as if they had sent `;rport` (repeatable).
    #[arg(long = "force-rport", value_name = "CIDR")]
    pub force_rport: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log level of the XDP program (aya-log, on stderr); `debug` logs per packet.
    #[arg(long, value_enum, default_value_t = loader::XdpLog::Off)]
    pub xdp_log: loader::XdpLog,
    /// File holding the steering-tag key (32 hex digits, mode 0600): give every gateway of
    /// one deployment the same file and they steer each other's responses. Default: a
    /// key made at first start and kept in the pinned TAG_KEYS map.
    #[arg(long, value_name = "PATH")]
    pub tag_key: Option<PathBuf>,
    /// Contacts of clients' requests and 1xx/2xx responses: `alias` puts the client's tag
    /// in them so that incoming calls and in-dialog requests reach it (docs/ARCHITECTURE.md).
    #[arg(long, value_enum, default_value_t = ContactMode::Alias)]
    pub contact: ContactMode,
}

/// Runs until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> Result<()> {
    let force_rport = args
        .force_rport
        .iter()
        .map(|s| loader::parse_cidr(s))
        .collect::<Result<Vec<_>>>()?;
    let cfg = loader::LoadConfig {
        outside: args.outside,
        inside: args.inside,
        sip_ports: args.sip_ports,
        mode: match args.xdp_mode {
            Mode::Auto => XdpMode::Default,
            Mode::Native => XdpMode::Driver,
            Mode::Skb => XdpMode::Skb,
        },
        pin_dir: args.pin_path.unwrap_or_else(loader::default_pin_dir),
        force_rport,
        xdp_log: args.xdp_log,
        tag_key: args.tag_key,
        contact_alias: args.contact == ContactMode::Alias,
    };
    // The control socket first: a second daemon in this namespace stops here, before it
    // touches the first one's attachments.
    // `_claim` lives to the end: the socket goes away after the detach.
    let control::Bound {
        listener,
        claim: _claim,
    } = control::bind()?;
    let metrics_listener = args.metrics.map(metrics::bind).transpose()?;
    let mut loaded = loader::load_and_attach(&cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    let batch_time = metrics::batch_histogram();
    let nat = Arc::new(NatTracker::default());
    let workers = forward::start(&mut loaded, &cfg, &stop, &batch_time, &nat)?;
    let sources = Arc::new(Sources {
        pin_dir: cfg.pin_dir.clone(),
        live: Live {
            started: Instant::now(),
            workers: workers.stats.clone(),
            nat,
            batch_time,
        },
    });
    let s = sources.clone();
    std::thread::Builder::new()
        .name("rport-control".into())
        .spawn(move || control::serve(listener, s))?;
    if let Some(l) = metrics_listener {
        let s = sources.clone();
        std::thread::Builder::new()
            .name("rport-metrics".into())
            .spawn(move || metrics::serve(l, s))?;
    }
    eprintln!(
        "rport: attached to {} (maps pinned in {}); Ctrl-C to stop",
        loaded
            .ifaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.pin_dir.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })
    .context("waiting for a signal")?;
    stop.store(true, Ordering::Relaxed);
    workers.join();
    // Dropping the program detaches it from every interface.
    drop(loaded);
    eprintln!("rport: detached");
    Ok(())
}
