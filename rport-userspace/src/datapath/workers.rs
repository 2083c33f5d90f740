//! The forwarding threads' placement and their wait policy: which queues a thread owns
//! (`--workers`), which CPU it runs on (`--cpus`), and how it waits for frames.
//!
//! Why the wait matters (docs/BENCHMARKS.md, "The latency tail"): every frame rport
//! rewrites passes through a thread of its own, a hop plain forwarding does not have. When
//! that thread sleeps in poll(2), the frame waits for the kernel to wake it and for the
//! scheduler to run it; on a machine whose cores are busy (the load generator, the
//! responder, other tenants) that wait is the tail.
use std::{
    os::fd::RawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use rport_common::EgressMeta;

use crate::{
    datapath::{
        afxdp::{RX_BATCH, XskQueue},
        inject::{Batch, FrameSender},
    },
    observe::dstats::DaemonStats,
};

/// poll(2) timeout: how often a quiet worker looks at the stop flag.
const POLL_MS: i32 = 100;

/// Where the forwarding threads run: `--cpus` and `--workers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// CPUs for the forwarding threads, one each, in turn (empty: wherever the scheduler
    /// puts them).
    pub cpus: Vec<usize>,
    /// At most this many threads per outside interface (None: one per rx queue).
    pub workers: Option<u32>,
}

/// The value of `--cpus` (one argument, a list: clap would take a Vec for many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// `--cpus LIST`, parsed ([`parse_cpus`]).
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    parse_cpus(s).map(CpuList)
}

/// `--cpus LIST`: CPU numbers and ranges, `0`, `0,2`, `1-3,6`; each CPU once.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    // The kernel's cpu_set_t holds CPUs 0..CPU_SETSIZE.
    const MAX: usize = libc::CPU_SETSIZE as usize;
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let num = |x: &str| -> Result<usize, String> {
            let n: usize = x
                .trim()
                .parse()
                .map_err(|_| format!("`{x}` is not a CPU number (a list like 0,2-3)"))?;
            if n >= MAX {
                return Err(format!("CPU {n} is out of range (0..{MAX})"));
            }
            Ok(n)
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("`{part}`: a range goes up (like 2-3)"));
        }
        for c in a..=b {
            if out.contains(&c) {
                return Err(format!("CPU {c} is listed twice"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 (this thread), the size of the set we pass.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: c < CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Checks `--cpus` against the CPUs the daemon may use, before anything is attached.
pub fn check_cpus(cpus: &[usize]) -> anyhow::Result<()> {
    let allowed = allowed_cpus()?;
    if let Some(c) = cpus.iter().find(|c| !allowed.contains(c)) {
        anyhow::bail!(
            "--cpus: CPU {c} is not one rport may run on (allowed: {})",
            allowed
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}

/// Which rx queues each thread of an interface owns: `queues` queues over at most
/// `workers` threads (None: one each), queue q to thread q mod threads, so the threads
/// differ by one queue at most.
pub fn assign(queues: u32, workers: Option<u32>) -> Vec<Vec<u32>> {
    let threads = workers.unwrap_or(queues).clamp(1, queues.max(1));
    let mut out = vec![Vec::new(); threads as usize];
    for q in 0..queues {
        out[(q % threads) as usize].push(q);
    }
    out
}

/// Pins the calling thread to `cpu`.
pub fn pin_current(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; cpu < CPU_SETSIZE (parse_cpus).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 (this thread), a set of the size we pass.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How long a worker spins on empty rings before it sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spin {
    /// This many empty polls of the rings.
    Polls(u32),
    /// This long since the rings were found empty.
    Time(Duration),
}

/// Default spin before a sleep: 256 empty polls (a few µs).
pub const DEFAULT_SPIN: Spin = Spin::Polls(256);

/// How a worker waits when its rings are empty: spin for a while (a frame that comes
/// meanwhile is taken at once, with no wake-up), then sleep in poll(2) on every socket
/// it owns until one has frames.
pub struct Wait {
    spin: Spin,
    /// Empty polls since the last frames, and when the first of them was.
    empty: u32,
    empty_since: Option<Instant>,
    fds: Vec<libc::pollfd>,
    /// Busy-poll the sockets while spinning (`busy_poll`): a non-blocking recvfrom on
    /// each, which runs the queue's NAPI in this thread.
    busy_poll: bool,
}

impl Wait {
    pub fn new(fds: &[RawFd], spin: Spin) -> Wait {
        Wait {
            spin,
            busy_poll: false,
            empty: 0,
            empty_since: None,
            fds: fds
                .iter()
                .map(|&fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Frames were handled.
    pub fn busy(&mut self) {
        self.empty = 0;
        self.empty_since = None;
    }

    /// The rings were empty: spins, or sleeps (after `before_sleep`). Returns whether it
    /// slept.
    pub fn empty(&mut self, before_sleep: impl FnOnce()) -> bool {
        self.empty += 1;
        let spinning = match self.spin {
            Spin::Polls(n) => self.empty <= n,
            Spin::Time(t) => {
                let now = Instant::now();
                now.duration_since(*self.empty_since.get_or_insert(now)) < t
            }
        };
        if spinning {
            if self.busy_poll {
                for p in &self.fds {
                    // SAFETY: a zero-length non-blocking recvfrom on our socket: no buffer
                    // is written (AF_XDP's recvmsg only busy-polls and kicks the kernel).
                    unsafe {
                        libc::recvfrom(
                            p.fd,
                            std::ptr::null_mut(),
                            0,
                            libc::MSG_DONTWAIT,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                        )
                    };
                }
            } else {
                std::hint::spin_loop();
            }
            return false;
        }
        before_sleep();
        // SAFETY: pollfds we own, their count.
        unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                POLL_MS,
            )
        };
        // Spin again after a wake-up: the frames of a burst come close together.
        self.busy();
        true
    }
}

/// Busy polling of an AF_XDP socket: SO_BUSY_POLL (µs), SO_PREFER_BUSY_POLL and
/// SO_BUSY_POLL_BUDGET, so that a recvfrom runs the queue's NAPI in the calling thread
/// (and, with the device's napi_defer_hard_irqs/gro_flush_timeout, keeps interrupts off
/// meanwhile). Needs CAP_NET_ADMIN above net.core.busy_read.
pub fn busy_poll(fd: RawFd, usecs: u32, budget: u32) -> std::io::Result<()> {
    // asm-generic/socket.h: not all of them are in libc.
    const SO_BUSY_POLL: libc::c_int = 46;
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    for (opt, v) in [
        (SO_PREFER_BUSY_POLL, 1),
        (SO_BUSY_POLL, usecs as libc::c_int),
        (SO_BUSY_POLL_BUDGET, budget as libc::c_int),
    ] {
        // SAFETY: setsockopt with an int option on our socket.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The spin before a sleep: [`DEFAULT_SPIN`]; RPORT_SPIN_US sets a time instead, for
/// measuring.
pub fn spin() -> Spin {
    std::env::var("RPORT_SPIN_US")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(|us| Spin::Time(Duration::from_micros(us)))
        .unwrap_or(DEFAULT_SPIN)
}

/// Sets the calling thread's scheduler slice (EEVDF's `sched_runtime` for SCHED_OTHER,
/// Linux ≥ 6.12; ignored before): a thread with a shorter slice than the running one
/// preempts it when it wakes, instead of waiting for that one's slice to end.
pub fn set_slice(slice: Duration) -> std::io::Result<()> {
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    // SCHED_FLAG_KEEP_POLICY: the thread's policy stays. Not SCHED_FLAG_KEEP_PARAMS: the
    // kernel then skips the parameters, the slice among them; the nice is given as it is.
    const KEEP_POLICY: u64 = 0x08;
    // SAFETY: getpriority of this thread; -1 is also a valid nice, which is what we pass on.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: KEEP_POLICY,
        nice,
        priority: 0,
        runtime: slice.as_nanos() as u64,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr(pid 0 = this thread, a sched_attr of the size it says, flags 0).
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Scheduler settings of a forwarding thread, at its start. RPORT_SLICE_US sets its slice
/// ([`set_slice`]), for measuring.
pub fn tune_current() {
    if let Some(us) = std::env::var("RPORT_SLICE_US")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        if let Err(e) = set_slice(Duration::from_micros(us)) {
            tracing::warn!("the forwarding thread's scheduler slice stays as it was: {e}");
        }
    }
}

/// The forwarding loop of one thread: takes batches from each of its queues in turn until
/// `stop` is set, waiting by [`Wait`] when all are empty. `handler(queue index, …)` is
/// `XskQueue::batch`'s handler for that queue; `stats[i]` are queue i's counters.
pub fn run(
    queues: &mut [XskQueue],
    stats: &[std::sync::Arc<DaemonStats>],
    stop: &AtomicBool,
    batch_time: &prometheus::Histogram,
    sender: &mut FrameSender,
    mut handler: impl for<'f> FnMut(
        usize,
        &'f mut [u8],
        usize,
        Option<EgressMeta>,
        &mut Batch<'_, 'f>,
        Instant,
    ),
) {
    let fds: Vec<RawFd> = queues.iter().map(XskQueue::fd).collect();
    let mut wait = Wait::new(&fds, spin());
    // RPORT_BUSY_POLL_US: busy-poll the sockets while spinning, for measuring.
    if let Some(us) = std::env::var("RPORT_BUSY_POLL_US")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    {
        wait.busy_poll = true;
        for &fd in &fds {
            if let Err(e) = busy_poll(fd, us, RX_BATCH as u32) {
                tracing::warn!("busy polling of an AF_XDP socket: {e}");
                wait.busy_poll = false;
            }
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let mut n = 0;
        for (i, q) in queues.iter_mut().enumerate() {
            n += q.batch(&stats[i], batch_time, sender, |f, len, meta, b, now| {
                handler(i, f, len, meta, b, now)
            });
        }
        if n > 0 {
            wait.busy();
        } else {
            wait.empty(|| {
                for (i, q) in queues.iter_mut().enumerate() {
                    q.idle(&stats[i]);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0"), Ok(vec![0]));
        assert_eq!(parse_cpus("0,2"), Ok(vec![0, 2]));
        assert_eq!(parse_cpus("1-3, 6"), Ok(vec![1, 2, 3, 6]));
        for bad in ["", "a", "1,", "3-1", "0,0", "0-2,1", "-1", "99999"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?}");
        }
        assert!(parse_cpus("1,1").unwrap_err().contains("twice"));
    }

    #[test]
    fn cpus_outside_the_affinity_are_refused() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        check_cpus(&allowed).unwrap();
        check_cpus(&[]).unwrap();
        let outside = (0..libc::CPU_SETSIZE as usize).find(|c| !allowed.contains(c));
        if let Some(c) = outside {
            let e = check_cpus(&[allowed[0], c]).unwrap_err().to_string();
            assert!(
                e.contains(&format!("--cpus: CPU {c} is not one rport may run on")),
                "{e}"
            );
        }
    }

    #[test]
    fn queues_over_workers() {
        assert_eq!(assign(1, None), vec![vec![0]]);
        assert_eq!(assign(4, None), vec![vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!(assign(2, Some(1)), vec![vec![0, 1]]);
        assert_eq!(assign(5, Some(2)), vec![vec![0, 2, 4], vec![1, 3]]);
        // More workers than queues: one per queue.
        assert_eq!(assign(2, Some(8)), vec![vec![0], vec![1]]);
        // Every queue exactly once.
        for q in 1..=64 {
            for w in 1..=9 {
                let mut all: Vec<u32> = assign(q, Some(w)).into_iter().flatten().collect();
                all.sort_unstable();
                assert_eq!(all, (0..q).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn the_slice_is_the_threads() {
        // On a thread of its own: the test harness's threads keep theirs.
        std::thread::spawn(|| {
            let slice = |s: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix("se.slice"))
                    .and_then(|v| v.trim().trim_start_matches(':').trim().parse::<f64>().ok())
            };
            let Some(before) = std::fs::read_to_string("/proc/thread-self/sched")
                .ok()
                .and_then(|s| slice(&s))
            else {
                return; // no CONFIG_SCHED_DEBUG: nothing to read it from
            };
            if set_slice(Duration::from_micros(200)).is_err() {
                return; // a kernel before 6.12 refuses a runtime for SCHED_OTHER
            }
            let after = slice(&std::fs::read_to_string("/proc/thread-self/sched").unwrap());
            assert_eq!(after, Some(200_000.0), "was {before}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_wait_spins_then_sleeps() {
        // A pipe with nothing to read: poll sleeps its timeout, which we do not wait for
        // here: a pipe with a byte in it makes poll return at once.
        let mut p = [0; 2];
        // SAFETY: a two-int array for pipe(2).
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // SAFETY: one byte from a valid buffer into the pipe we made.
        assert_eq!(unsafe { libc::write(p[1], b"x".as_ptr().cast(), 1) }, 1);
        let mut w = Wait::new(&[p[0]], Spin::Time(Duration::from_millis(50)));
        let mut slept = 0;
        assert!(!w.empty(|| slept += 1), "spins first");
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.empty(|| slept += 1), "then sleeps");
        assert_eq!(slept, 1);
        assert!(!w.empty(|| slept += 1), "spins again after a wake-up");
        let mut w = Wait::new(&[p[0]], Spin::Time(Duration::ZERO));
        assert!(w.empty(|| ()), "no spin: sleeps at once");
        let mut w = Wait::new(&[p[0]], Spin::Polls(2));
        assert!(!w.empty(|| ()) && !w.empty(|| ()), "two empty polls spun");
        assert!(w.empty(|| ()), "the third sleeps");
        w.busy();
        assert!(!w.empty(|| ()), "frames: spins again");
        // SAFETY: the fds we made.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }
}
