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
    datapath::{forward, ifwatch, loader, workers},
    observe::{
        control, metrics,
        nat::NatTracker,
        notify,
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
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics; PORT alone binds
    /// 127.0.0.1:PORT (docs/OPERATIONS.md: exposing it safely).
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = metrics::parse_listen)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log level of the XDP program (aya-log, on stderr); `debug` logs per packet.
    #[arg(long, value_enum, default_value_t = loader::XdpLog::Off)]
    pub xdp_log: loader::XdpLog,
    /// File holding the steering-tag key (32 hex digits, mode 0600): give every gateway of
    /// one deployment the same file and they steer each other's responses. Default: a
    /// key made at first start and kept in the pinned TAG_KEYS map. SIGHUP re-reads the
    /// file: a changed key makes the new tags, the previous one stays accepted for the
    /// life of its tags.
    #[arg(long, value_name = "PATH")]
    pub tag_key: Option<PathBuf>,
    /// Contacts of clients' requests and 1xx/2xx responses: `alias` puts the client's tag
    /// in them so that incoming calls and in-dialog requests reach it (docs/ARCHITECTURE.md).
    #[arg(long, value_enum, default_value_t = ContactMode::Alias)]
    pub contact: ContactMode,
    /// Entries of the BINDINGS map (LRU: the least recently used binding goes when it is
    /// full): about 150 bytes of kernel memory each. A pinned map keeps its size: to
    /// change it, remove the pin.
    #[arg(long, value_name = "N", default_value_t = rport_common::MAX_BINDINGS,
          value_parser = parse_max_bindings)]
    pub max_bindings: u32,
    /// How steered responses and rewritten requests leave the gateway: `kernel` (its
    /// forwarding: nftables forward and postrouting chains, conntrack, rp_filter) or
    /// `bypass` (bpf_fib_lookup in XDP, then bpf_redirect for responses and AF_XDP TX for
    /// requests, past all of those; docs/OPERATIONS.md, "Egress").
    #[arg(long, value_enum, default_value_t = loader::Egress::Kernel)]
    pub egress: loader::Egress,
    /// CPUs for the forwarding threads (`0,2-3`): each thread is pinned to one, in turn
    /// (docs/OPERATIONS.md, "Forwarding threads and CPUs"). Default: not pinned.
    #[arg(long, value_name = "LIST", value_parser = workers::parse_cpu_list)]
    pub cpus: Option<workers::CpuList>,
    /// At most N forwarding threads per outside interface, each owning several rx queues
    /// (for NICs with more queues than the gateway has cores). Default: one per rx queue.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=rport_common::MAX_QUEUES as i64))]
    pub workers: Option<u32>,
    /// TOML file of these flags (keys: their long names, `sip-port = [5060, 5080]`); a
    /// flag given here replaces the file's value. Default: /etc/rport/rport.toml if it
    /// exists (docs/OPERATIONS.md, "Configuration file").
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Check the configuration (file and flags) and exit: 0 when valid; loads nothing.
    #[arg(long)]
    pub check_config: bool,
}

fn parse_max_bindings(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("expected a number 1..={}", loader::MAX_BINDINGS_LIMIT))?;
    loader::check_max_bindings(n).map_err(|e| e.to_string())
}

/// SIGHUP: the `--tag-key` file read again; a changed key makes the new tags from now on,
/// the previous one stays accepted for the life of its tags (`keys::overlap_s`). One line
/// on stderr either way; the key itself is never printed.
fn reload_key(loaded: &mut loader::Loaded, file: Option<&std::path::Path>) {
    use crate::datapath::keys;
    let Some(file) = file else {
        tracing::info!("SIGHUP: no --tag-key file to reload; the tag key is unchanged");
        return;
    };
    match keys::reload(&mut loaded.ebpf, file, &loaded.tag_key) {
        Ok((k, true, all)) => tracing::info!(
            "SIGHUP: tag key rotated, new tags use key id {}; the previous key stays accepted for {} s",
            k.id,
            keys::overlap_s(&all)
        ),
        Ok((k, false, _)) => {
            tracing::info!("SIGHUP: tag key file unchanged (key id {})", k.id)
        }
        Err(e) => tracing::warn!("SIGHUP: tag key unchanged: {e:#}"),
    }
}

/// Drops the previous tag key once it is due (`keys::retire_if_due`).
fn retire_previous_key(loaded: &mut loader::Loaded) {
    if let Err(e) = crate::datapath::keys::retire_if_due(&mut loaded.ebpf) {
        tracing::warn!("retiring the previous tag key: {e:#}");
    }
}

/// Runs until SIGINT or SIGTERM; SIGHUP reloads the tag key file.
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
        max_bindings: args.max_bindings,
        egress: args.egress,
    };
    let placement = workers::Placement {
        cpus: args.cpus.map(|c| c.0).unwrap_or_default(),
        workers: args.workers,
    };
    if args.check_config {
        loader::check_config(&cfg)?;
        workers::check_cpus(&placement.cpus)?;
        println!(
            "rport: the configuration is valid ({})",
            match &args.config {
                Some(p) => format!("file {} and the command line", p.display()),
                None => "the command line; no config file".into(),
            }
        );
        return Ok(());
    }
    // The control socket first: a second daemon in this namespace stops here, before it
    // touches the first one's attachments.
    // `_claim` lives to the end: the socket goes away after the detach.
    let control::Bound {
        listener,
        claim: _claim,
    } = control::bind()?;
    workers::check_cpus(&placement.cpus)?;
    let metrics_listener = args.metrics.map(metrics::bind).transpose()?;
    // Subscribed before the attach: an interface replaced from then on is seen.
    let link_events = ifwatch::LinkEvents::open()?;
    let mut loaded = loader::load_and_attach(&cfg)?;
    // Attached: from here on only what the running daemon needs (and its threads, spawned
    // below, inherit only that). A failure stops it, detaching as it goes.
    crate::privileges::drop_to_kept().context("dropping privileges after attach")?;
    let stop = Arc::new(AtomicBool::new(false));
    let batch_time = metrics::batch_histogram();
    let nat = Arc::new(NatTracker::default());
    let mut workers = forward::start(&mut loaded, &cfg, &stop, &batch_time, &nat, &placement)?;
    let mut watch = ifwatch::IfWatch::new(&loaded);
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
    tracing::info!(
        "attached to {} (maps pinned in {}); Ctrl-C to stop",
        loaded
            .ifaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.pin_dir.display()
    );
    // systemd (Type=notify): started once attached and serving the control socket.
    notify::tell("READY=1\nSTATUS=attached");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // SAFETY: LinkEvents owns its fd (an OwnedFd, never replaced) and returns it
        // from as_raw_fd for as long as it lives, which is as long as the AsyncFd.
        let links = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                link_events,
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(std::io::Error::from)?;
        loop {
            // The previous tag key, once its tags are all past their age, goes: looked at
            // every minute (a restart, or a rotation by an earlier run, may have left one).
            retire_previous_key(&mut loaded);
            // Interfaces gone or back (also a retry of an attach that failed).
            watch.resync(&mut loaded, &mut workers);
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    notify::tell("RELOADING=1");
                    reload_key(&mut loaded, cfg.tag_key.as_deref());
                    notify::tell("READY=1");
                }
                r = links.readable() => {
                    let mut ready = r?;
                    // Drained to EAGAIN before the readiness is cleared; the resync is
                    // at the top of the loop.
                    ready.get_inner().drain();
                    ready.clear_ready();
                }
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            }
        }
        anyhow::Ok(())
    })
    .context("waiting for a signal")?;
    notify::tell("STOPPING=1");
    stop.store(true, Ordering::Relaxed);
    workers.join();
    // Dropping the program detaches it from every interface.
    drop(loaded);
    tracing::info!("detached");
    Ok(())
}
