//! `rport check`: can this machine run rport?
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use aya::{Ebpf, programs::Xdp};
use rport_common::PROGRAM_NAME;

use crate::cli::out::outln;
use crate::datapath::loader::is_bpffs;

/// `rport check`: can this machine run rport?
pub fn check() -> Result<()> {
    let mut ok = true;
    let mut line = |good: bool, what: &str| -> Result<()> {
        outln!("{} {what}", if good { "ok  " } else { "FAIL" });
        ok &= good;
        Ok(())
    };
    // SAFETY: no preconditions.
    line(
        unsafe { libc::geteuid() } == 0,
        "running as root (CAP_BPF, CAP_NET_ADMIN)",
    )?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    let (maj, min) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    line(
        (maj, min) >= (5, 17),
        &format!("kernel {} (bpf_loop needs 5.17+)", release.trim()),
    )?;
    let bpffs = is_bpffs(Path::new("/sys/fs/bpf"));
    outln!(
        "{} /sys/fs/bpf is {}a bpffs (rport run mounts one if missing)",
        if bpffs { "ok  " } else { "note" },
        if bpffs { "" } else { "not " }
    );
    match Ebpf::load(crate::XDP_OBJECT)
        .map_err(anyhow::Error::from)
        .and_then(|mut e| {
            let p: &mut Xdp = e
                .program_mut(PROGRAM_NAME)
                .context("program missing")?
                .try_into()?;
            p.load()?;
            Ok(())
        }) {
        Ok(()) => line(true, "the XDP program loads and passes the verifier")?,
        Err(e) => line(false, &format!("the XDP program does not load: {e:#}"))?,
    }
    if !ok {
        bail!("this machine cannot run rport (see FAIL lines)");
    }
    Ok(())
}
