//! The daemon's privileges after attach: only [`KEPT`], and no way back up.
//!
//! Loading and attaching needs more (the start-up set, [`STARTUP`]); the running daemon
//! needs only what it does from then on. Found by trying without each
//! (tests/tests/privileges.rs, kernel 6.18):
//! - `CAP_NET_RAW`: the AF_XDP sockets, made after the drop (one per queue), and the
//!   sockets that send rewritten requests on. Without it: EPERM at the first UMEM.
//! - `CAP_IPC_LOCK`: each AF_XDP UMEM (8 MiB) is charged to the user's RLIMIT_MEMLOCK
//!   (8 MiB by default, for all of root's processes together) unless the process has it.
//!   Without it: ENOBUFS at the second UMEM (two outside interfaces). Raising the limit
//!   before the drop instead would need CAP_SYS_RESOURCE, which a unit may not grant.
//! - `CAP_BPF`: the bpf() calls of the running daemon (SIGHUP key reload and the minute's
//!   key retirement write TAG_KEYS through the fd it holds; every `rport stats` and scrape
//!   opens the pinned maps) and of a re-attach (program and link fds). Kernel 6.18 checks
//!   none of these map calls, but the kernels before 6.5 that rport runs on (5.17+) refuse
//!   every bpf() command without CAP_BPF when `kernel.unprivileged_bpf_disabled` is set,
//!   as it is by default on Debian and Ubuntu.
//! - `CAP_NET_ADMIN`: a new XDP or TC attach when an interface is deleted and comes
//!   back, and the netlink detach at exit where the kernel attached XDP without a link.
//!   The daemon of today, with link-based attachments, ran and detached without it.
//!
//! Everything else goes from the effective, permitted, inheritable, ambient and bounding
//! sets, and no-new-privs is set: nothing the daemon could be made to exec gets more.
//!
//! Capabilities are per thread: [`drop_to_kept`] runs on the main thread before the
//! forwarding, control and metrics threads are spawned (they inherit its sets), and on
//! the one thread started earlier (the XDP log reader) by itself.
use anyhow::{Context as _, Result, bail};
use caps::{CapSet, Capability, CapsHashSet};

/// What the daemon keeps after attach (docs/OPERATIONS.md `## Privileges`, the systemd
/// unit's `CapabilityBoundingSet` minus the start-up extras).
pub const KEPT: [Capability; 4] = [
    Capability::CAP_BPF,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_IPC_LOCK,
];

/// What `rport run` needs to start (load, attach, then drop to [`KEPT`]): the systemd
/// unit's `CapabilityBoundingSet`. Found with `setpriv --bounding-set` (kernel 6.18):
/// without CAP_PERFMON the verifier refuses the program (EACCES; CAP_SYS_ADMIN would do
/// too, and much more), without CAP_NET_ADMIN the XSKS map (an XSKMAP, which the kernel
/// creates for CAP_NET_ADMIN only) is not made, without CAP_SETPCAP the drop of the
/// bounding set fails and the daemon stops. The kept ones are needed at start to be kept.
pub const STARTUP: [Capability; 6] = [
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_IPC_LOCK,
    Capability::CAP_SETPCAP,
];

/// [`KEPT`] as the bit mask /proc/PID/status shows (`CapEff`, `CapPrm`, `CapBnd`).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |m, c| m | c.bitmask())
}

/// Reduces this thread to [`KEPT`] in every set and sets no-new-privs. Fails (and the
/// daemon stops) if a set cannot be reduced: a daemon that meant to drop and could not is
/// not left running with more. Needs CAP_SETPCAP in the start-up set to shrink the
/// bounding set (unless it is already no larger than [`KEPT`]).
pub fn drop_to_kept() -> Result<()> {
    let kept: CapsHashSet = KEPT.into_iter().collect();
    // The bounding set first: PR_CAPBSET_DROP needs CAP_SETPCAP, which goes next.
    for c in caps::all() {
        if !kept.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, c)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("dropping {c} from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| anyhow::anyhow!("clearing ambient: {e}"))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| anyhow::anyhow!("clearing inheritable: {e}"))?;
    // Effective before permitted: effective must stay a subset of permitted.
    let keep_held = |set: CapSet| -> Result<CapsHashSet> {
        let now = caps::read(None, set).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(now.intersection(&kept).copied().collect())
    };
    let eff = keep_held(CapSet::Effective)?;
    caps::set(None, CapSet::Effective, &eff)
        .map_err(|e| anyhow::anyhow!("reducing the effective set: {e}"))?;
    let prm = keep_held(CapSet::Permitted)?;
    caps::set(None, CapSet::Permitted, &prm)
        .map_err(|e| anyhow::anyhow!("reducing the permitted set: {e}"))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_NO_NEW_PRIVS");
    }
    // Read back: what the kernel holds, not what was asked.
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Bounding] {
        let now = caps::read(None, set).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !now.is_subset(&kept) {
            bail!("capabilities {now:?} still in {set:?} after the drop");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_mask_has_the_kept_bits_only() {
        // CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_IPC_LOCK 14, CAP_BPF 39.
        assert_eq!(kept_mask(), (1 << 12) | (1 << 13) | (1 << 14) | (1 << 39));
        // Starting needs everything kept.
        assert!(KEPT.iter().all(|c| STARTUP.contains(c)));
    }

    /// docs/OPERATIONS.md says what these constants say (the unit's bounding set, the
    /// kept set), so a change here cannot leave the operator's text behind.
    #[test]
    fn operations_doc_names_the_same_sets() {
        let doc = include_str!("../../docs/OPERATIONS.md");
        let upper = |set: &[Capability]| {
            set.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let unit = format!("CapabilityBoundingSet={}\n", upper(&STARTUP));
        assert!(doc.contains(&unit), "docs/OPERATIONS.md lacks {unit:?}");
        let kept = format!("**{}**", upper(&KEPT));
        assert!(doc.contains(&kept), "docs/OPERATIONS.md lacks {kept:?}");
        let mask = format!("CapEff {:016x}", kept_mask());
        assert!(doc.contains(&mask), "docs/OPERATIONS.md lacks {mask:?}");
    }
}
