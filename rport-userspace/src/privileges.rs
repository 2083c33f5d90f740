//! The daemon's privileges after attach: only [`KEPT`], and no way back up.
//!
//! Loading and attaching needs much of root (the start-up set: docs/OPERATIONS.md,
//! `## Privileges`); the running daemon needs only what it does from then on, each
//! capability for a reason found by trying without it:
//! - `CAP_BPF`: the bpf() calls on the maps it holds and the pins it opens (SIGHUP key
//!   reload and the minute's key retirement write TAG_KEYS; every `rport stats` and scrape
//!   opens the pinned maps), and the bpf() link create of a re-attach;
//! - `CAP_NET_ADMIN`: a new XDP or TC attach when an interface comes back, and the
//!   netlink detach at exit where the kernel attached XDP without a link;
//! - `CAP_NET_RAW`: the AF_XDP sockets (made after the drop, one per queue) and the
//!   sockets that send rewritten requests on;
//! - `CAP_IPC_LOCK`: each AF_XDP UMEM (8 MiB) is charged to the user's RLIMIT_MEMLOCK
//!   (8 MiB by default, for all of root's processes together) unless the process has it;
//!   raising the limit instead needs CAP_SYS_RESOURCE, which a unit may not grant.
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

/// [`KEPT`] as the bit mask /proc/PID/status shows (`CapEff`, `CapPrm`, `CapBnd`).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |m, c| m | c.bitmask())
}

/// [`KEPT`] as names (`cap_bpf, …`), for messages and docs.
pub fn kept_names() -> String {
    KEPT.iter()
        .map(|c| c.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
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
        assert_eq!(
            kept_names(),
            "cap_bpf, cap_net_admin, cap_net_raw, cap_ipc_lock"
        );
    }
}
