//! `cargo xtask setup|build|test|demo|bench|fuzz`: the project's entry points.
//!
//! `setup` is idempotent and fast when everything is present, and every other command
//! runs it first, so a fresh clone needs nothing but `cargo xtask test`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (the XDP program's pinned nightly with
    /// rust-src, bpf-linker against its LLVM, cargo-fuzz, Debian packages).
    Setup,
    /// Build the XDP object and the `rport` binary that embeds it.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every test: host unit tests, the XDP fixture table, the namespace tests.
    Test,
    /// A phone behind NAT registers through rport to a server that ignores rport.
    Demo,
    /// Benchmarks (XDP ns/packet, BINDINGS memory, rewrite ns/message, gateways side by side, two queues).
    Bench {
        /// What to run: all, xdp, bindings, rewrite, gateways, queues.
        #[arg(default_value = "all")]
        what: String,
        /// Short run (CI).
        #[arg(long)]
        quick: bool,
        /// Instead: rport alone under a steady load at half its max rate for MINUTES,
        /// sampling its RSS, bindings_live and NAT tracker size (table and verdict).
        #[arg(long, value_name = "MINUTES")]
        soak: Option<f64>,
    },
    /// Run the cargo-fuzz targets (fuzz/) one after the other, each for a bounded time
    /// from its seed corpus, with the SIP dictionary; prints execs, execs/s and failures
    /// per target and fails if any target found one.
    Fuzz {
        /// One target (rewrite, contact, scan, message, pcap); all when omitted.
        target: Option<String>,
        /// Minutes per target (default 1).
        #[arg(long, conflicts_with = "seconds")]
        minutes: Option<u64>,
        /// Seconds per target (CI).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// The Debian package (target/debian/rport_*.deb): the binary, the systemd unit, the
    /// example config, man pages and shell completions (packaging/).
    Dist {
        /// Package the debug build (the tests' build, reused; faster to make, bigger).
        #[arg(long)]
        debug: bool,
    },
}

/// The fuzz targets (fuzz/Cargo.toml), in the order `cargo xtask fuzz` runs them.
const FUZZ_TARGETS: &[&str] = &["rewrite", "contact", "scan", "message", "pcap"];
/// The cargo-fuzz release setup installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The cargo-deb release setup installs (`cargo xtask dist`).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Debian packages the tests and the demo use.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "sip-tester",
    "kamailio",
    "conntrack",
    // tx checksum offload off on a test egress: checksums materialized as a NIC would.
    "ethtool",
    // `tcpdump -i any` makes the capture `rport replay` is tested on (tests/tests/replay.rs).
    "tcpdump",
    // promtool, to check the metrics exposition.
    "prometheus",
    // A real phone for the incoming-call test (tests/tests/baresip_call.rs); without
    // recommends it is baresip-core only (no GTK, FFmpeg, GStreamer).
    "baresip",
];

fn main() -> std::process::ExitCode {
    // One line per error, no backtrace: a failing step already printed its own output.
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build { release } => {
            setup()?;
            build(release)
        }
        Cmd::Test => {
            setup()?;
            build(false)?;
            // One test binary at a time keeps the namespace tests from competing for the
            // two cores; inside a binary, tests run two at a time.
            run(cargo().args([
                "test",
                "--workspace",
                "--no-fail-fast",
                "--",
                "--test-threads=2",
            ]))
        }
        Cmd::Demo => {
            setup()?;
            build(false)?;
            run(cargo().args(["run", "--quiet", "-p", "rport-tests", "--bin", "demo"]))
        }
        Cmd::Bench { soak: Some(m), .. } => {
            setup()?;
            build(true)?;
            bench_bin(&format!("soak {m}"), false)
        }
        Cmd::Bench { what, quick, .. } => {
            if !["all", "xdp", "bindings", "rewrite", "gateways", "queues"].contains(&what.as_str())
            {
                bail!("unknown benchmark {what:?} (all, xdp, bindings, rewrite, gateways, queues)");
            }
            setup()?;
            build(true)?;
            if what == "all" || what == "xdp" {
                bench_bin("xdp", quick)?;
            }
            if what == "all" || what == "bindings" {
                bench_bin("bindings", quick)?;
            }
            if what == "all" || what == "rewrite" {
                bench_rewrite(quick)?;
            }
            if what == "all" || what == "gateways" {
                bench_bin("gateways", quick)?;
            }
            if what == "all" || what == "queues" {
                bench_bin("queues", quick)?;
            }
            Ok(())
        }
        Cmd::Fuzz {
            target,
            minutes,
            seconds,
        } => {
            let targets: Vec<&str> = match target.as_deref() {
                None => FUZZ_TARGETS.to_vec(),
                Some(t) if FUZZ_TARGETS.contains(&t) => vec![t],
                Some(t) => bail!("unknown fuzz target {t:?} ({})", FUZZ_TARGETS.join(", ")),
            };
            setup()?;
            fuzz(&targets, seconds.unwrap_or(60 * minutes.unwrap_or(1)))
        }
        Cmd::Dist { debug } => {
            setup()?;
            dist(debug)
        }
    }
}

/// Builds the binary, generates its man pages and completions from the clap definitions
/// (`rport generate-assets`) beside it, and packages both with cargo-deb
/// (rport-userspace/Cargo.toml `[package.metadata.deb]`; its `target/release/` paths
/// stand for the profile's directory). Prints the package's path and size.
fn dist(debug: bool) -> Result<()> {
    let t0 = std::time::Instant::now();
    if debug {
        // The very build `cargo xtask build|test` makes (same features): nothing to redo.
        build(false)?;
    } else {
        run(cargo().args([
            "build",
            "--release",
            "-p",
            "rport-userspace",
            "--bin",
            "rport",
        ]))?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile_dir = target.join(if debug { "debug" } else { "release" });
    let assets = profile_dir.join("assets");
    let _ = std::fs::remove_dir_all(&assets);
    run(Command::new(profile_dir.join("rport"))
        .arg("generate-assets")
        .arg(&assets))?;
    let out = target.join("debian");
    let mut c = cargo();
    // Stripped: the release profile keeps line tables (debug = 1) for the profiler, which
    // would make cargo-deb ship a 40 MB binary instead of a 5 MB one.
    c.args([
        "deb",
        "-p",
        "rport-userspace",
        "--no-build",
        "--strip",
        "-o",
    ])
    .arg(&out);
    if debug {
        // cargo-deb warns that it is meant for release profiles: this one is for tests.
        c.args(["--profile", "dev", "--fast"]);
    }
    let printed = output(&mut c)?;
    let deb = PathBuf::from(printed.trim().lines().last().unwrap_or_default());
    let size = std::fs::metadata(&deb)
        .with_context(|| format!("cargo deb printed {printed:?}, not a package"))?
        .len();
    println!(
        "{} ({:.1} MiB, {:.0} s)",
        deb.display(),
        size as f64 / (1024.0 * 1024.0),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the fuzz crate once, then runs each target for `secs` seconds. No sanitizer:
/// the code under test is safe Rust (an out-of-bounds index panics by itself), and
/// without ASan a target runs about twice as many inputs; debug assertions stay on
/// (cargo-fuzz's default), so overflow and `debug_assert!` still fail a run.
fn fuzz(targets: &[&str], secs: u64) -> Result<()> {
    let tc = format!("+{}", ebpf_toolchain()?);
    let dir = workspace_root().join("fuzz");
    run(cargo_fuzz(&tc, &dir).args(["build", "--sanitizer", "none"]))?;
    let mut failed = Vec::new();
    for t in targets {
        std::fs::create_dir_all(dir.join("artifacts").join(t))?;
        let o = cargo_fuzz(&tc, &dir)
            .args(["run", "--sanitizer", "none", t])
            // The seeds (committed) and what the runs added (ignored by git).
            .arg(format!("corpus/{t}"))
            .args(["--", "-dict=dict/sip.dict", "-print_final_stats=1"])
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-artifact_prefix=artifacts/{t}/"))
            .output()
            .with_context(|| format!("running fuzz target {t}"))?;
        let log = String::from_utf8_lossy(&o.stderr);
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .map_or("?", str::trim)
                .to_string()
        };
        let crashed = !o.status.success();
        println!(
            "fuzz {t:8} {secs:>5} s  execs {:>12}  execs/s {:>8}  failures {}",
            stat("number_of_executed_units"),
            stat("average_exec_per_sec"),
            u32::from(crashed)
        );
        if crashed {
            // The panic and the input libFuzzer saved (fuzz/artifacts/TARGET/).
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("panicked")
                        || l.contains("Test unit written")
                        || l.starts_with("SUMMARY")
                })
                .collect();
            eprintln!("{}", tail.join("\n"));
            failed.push(*t);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz: {} failed; reproduce with `cargo {tc} fuzz run -s none TARGET fuzz/artifacts/TARGET/FILE` in fuzz/",
            failed.join(", ")
        );
    }
    Ok(())
}

fn cargo_fuzz(toolchain: &str, dir: &Path) -> Command {
    // Through rustup's cargo, not $CARGO (the stable one running xtask), so that the
    // `+toolchain` picks the nightly.
    let mut c = Command::new("cargo");
    c.env_remove("RUSTC")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(dir)
        .args([toolchain, "fuzz"]);
    c
}

/// One part of the `bench` binary (rport-tests/src/bin/bench.rs).
fn bench_bin(what: &str, quick: bool) -> Result<()> {
    let mut c = cargo();
    c.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "rport-tests",
        "--bin",
        "bench",
        "--",
    ]);
    // `what` may carry its arguments (`soak MINUTES`).
    c.args(what.split_whitespace());
    if quick {
        c.arg("--quick");
    }
    run(&mut c)
}

/// The criterion benchmark of the rewrite library, then its medians as a Markdown table
/// and target/bench/rewrite.json (criterion keeps its own estimates under target/criterion).
fn bench_rewrite(quick: bool) -> Result<()> {
    let mut c = cargo();
    c.args([
        "bench",
        "--quiet",
        "-p",
        "rport-userspace",
        "--bench",
        "rewrite",
        "--",
    ]);
    if quick {
        c.args(["--warm-up-time", "0.3", "--measurement-time", "1"]);
    }
    run(&mut c)?;
    let dir = workspace_root().join("target/criterion/rewrite");
    let mut rows = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let est = e.path().join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&est) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let median = v["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        rows.push((e.file_name().to_string_lossy().into_owned(), median));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!("\n### Rewrite library, criterion (median ns/message)\n");
    println!("| message | ns/message |\n|---|---:|");
    for (n, ns) in &rows {
        println!("| {n} | {ns:.0} |");
    }
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let json: serde_json::Value = rows
        .iter()
        .map(|(n, ns)| (n.clone(), serde_json::json!(ns)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    std::fs::write(
        out.join("rewrite.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(c: &mut Command) -> Result<()> {
    let st = c.status().with_context(|| format!("running {c:?}"))?;
    if !st.success() {
        bail!("{c:?} failed: {st}");
    }
    Ok(())
}

fn output(c: &mut Command) -> Result<String> {
    let o = c.output().with_context(|| format!("running {c:?}"))?;
    if !o.status.success() {
        bail!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn build(release: bool) -> Result<()> {
    // The userspace build script compiles the eBPF crate, so one cargo call rebuilds both,
    // and the embedded object is never older than its source.
    let mut c = cargo();
    c.args(["build", "--workspace", "--bins"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)
}

/// The XDP program's toolchain file: the one nightly it is built with (see the file).
const EBPF_TOOLCHAIN_FILE: &str = "rport-ebpf/rust-toolchain.toml";
/// The bpf-linker release setup installs.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The `channel = "…"` of the XDP program's toolchain file.
fn ebpf_toolchain() -> Result<String> {
    let file = workspace_root().join(EBPF_TOOLCHAIN_FILE);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            let v = l.trim().strip_prefix("channel")?.trim_start();
            let v = v.strip_prefix('=')?.trim();
            Some(v.strip_prefix('"')?.strip_suffix('"')?.to_string())
        })
        .with_context(|| format!("no channel = \"…\" in {EBPF_TOOLCHAIN_FILE}"))
}

fn setup() -> Result<()> {
    // 1. The pinned nightly with rust-src, for -Z build-std=core on bpfel-unknown-none.
    //    Exactly that one: never a `nightly` the machine may have from elsewhere.
    let tc = ebpf_toolchain()?;
    let listed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    let have_toolchain = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|name| {
            name == tc
                || name
                    .strip_prefix(tc.as_str())
                    .is_some_and(|r| r.starts_with('-'))
        });
    let have_src = have_toolchain
        && output(Command::new("rustup").args([
            "component",
            "list",
            "--toolchain",
            &tc,
            "--installed",
        ]))?
        .lines()
        .any(|l| l.starts_with("rust-src"));
    if !have_src {
        eprintln!("setup: installing {tc} with rust-src (pinned in {EBPF_TOOLCHAIN_FILE})");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            &tc,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .with_context(|| {
            format!(
                "cannot install {tc}, the toolchain {EBPF_TOOLCHAIN_FILE} pins for the XDP program"
            )
        })?;
    }
    let vv = output(Command::new("rustup").args(["run", &tc, "rustc", "-vV"]))?;
    // 2. bpf-linker built against the pinned nightly's own libLLVM (same LLVM as the rustc
    //    that emits the bitcode; a mismatch fails at link time with cryptic errors).
    let llvm = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .with_context(|| format!("rustc +{tc} -vV printed no LLVM version"))?
        .trim()
        .to_string();
    let major = llvm.split('.').next().unwrap_or_default().to_string();
    let sysroot = output(Command::new("rustup").args(["run", &tc, "rustc", "--print", "sysroot"]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    let libllvm = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so."))
        })
        .with_context(|| format!("{tc} has no libLLVM.so.* to build bpf-linker against"))?;
    if !bpf_linker_matches(&libllvm) {
        eprintln!(
            "setup: installing bpf-linker {BPF_LINKER_VERSION} against the LLVM {llvm} of {tc}"
        );
        // Not /tmp: the linker keeps a run path into this folder, so it must outlive reboots.
        // One folder per toolchain: its links lead to that toolchain's libLLVM only.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let prefix = home.join(".cache/rport").join(&tc);
        let lib = prefix.join("lib");
        std::fs::create_dir_all(&lib)?;
        for name in [
            "libLLVM.so".to_string(),
            libllvm.file_name().unwrap().to_string_lossy().into_owned(),
        ] {
            let link = lib.join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&libllvm, &link)?;
        }
        // --force: the same release may be installed already, linked to another libLLVM.
        run(cargo()
            .env("LLVM_PREFIX", &prefix)
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}")))?;
        if !bpf_linker_matches(&libllvm) {
            bail!(
                "bpf-linker was installed but does not load {}",
                libllvm.display()
            );
        }
    }
    // 3. cargo-fuzz for `cargo xtask fuzz` (run with the pinned nightly).
    let have_fuzz = output(Command::new("cargo").args(["fuzz", "--version"]))
        .is_ok_and(|v| v.split_whitespace().nth(1) == Some(CARGO_FUZZ_VERSION));
    if !have_fuzz {
        eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
        run(cargo().args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
    }
    // 4. cargo-deb for `cargo xtask dist`.
    let have_deb = output(Command::new("cargo").args(["deb", "--version"]))
        .is_ok_and(|v| v.split_whitespace().any(|w| w == CARGO_DEB_VERSION));
    if !have_deb {
        eprintln!("setup: installing cargo-deb {CARGO_DEB_VERSION}");
        run(cargo().args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ]))?;
    }
    // 5. Debian packages for the namespace tests and the demo.
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if !missing.is_empty() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { geteuid() } != 0 {
            eprintln!(
                "setup: not root, cannot install {missing:?}: the namespace tests will say they skip"
            );
        } else {
            eprintln!("setup: installing {missing:?}");
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            run(Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing))?;
        }
    }
    Ok(())
}

/// True when `bpf-linker` is the release setup installs and loads exactly this libLLVM
/// (the file itself, whatever links lead to it), and nothing it needs is missing.
fn bpf_linker_matches(libllvm: &Path) -> bool {
    let Ok(path) = output(Command::new("sh").args(["-c", "command -v bpf-linker"])) else {
        return false;
    };
    let path = path.trim();
    let Ok(version) = output(Command::new(path).arg("--version")) else {
        return false;
    };
    if version.split_whitespace().nth(1) != Some(BPF_LINKER_VERSION) {
        return false;
    }
    let Ok(ldd) = output(Command::new("ldd").arg(path)) else {
        return false;
    };
    let Ok(want) = std::fs::canonicalize(libllvm) else {
        return false;
    };
    // `libLLVM.so.22.1-rust-… => /path/to/it (0x…)`
    let loaded = ldd.lines().find_map(|l| {
        let (name, rest) = l.trim().split_once(" => ")?;
        name.starts_with("libLLVM").then(|| {
            rest.rsplit_once(" (")
                .map_or(rest, |(p, _)| p)
                .trim()
                .to_string()
        })
    });
    !ldd.contains("not found")
        && loaded.is_some_and(|p| std::fs::canonicalize(p).is_ok_and(|p| p == want))
}

unsafe extern "C" {
    fn geteuid() -> u32;
}
