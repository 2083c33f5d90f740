//! The package: the systemd unit passes `systemd-analyze verify`, and the `.deb` of
//! `cargo xtask dist --debug` installs, runs (the packaged binary attaches in a test
//! namespace and detaches on SIGTERM), and purges without a trace.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use rport_tests::ns::{Bpffs, Ns, Proc, can_run, rport_bin, unique, veth};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `systemd-analyze verify` on `units` (in `dir`): exit 0 and not one warning.
fn verify(dir: &Path, units: &[&str], man: bool) -> Result<(), String> {
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--man={}", if man { "yes" } else { "no" }))
        .args(units)
        .current_dir(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    if o.status.success() && err.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {err}", o.status))
    }
}

/// A directory of ours under the temp dir, removed on Drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let d = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unit_verifies() {
    if !have("systemd-analyze") {
        eprintln!("SKIP unit_verifies: systemd-analyze is not installed (package systemd)");
        return;
    }
    let unit = std::fs::read_to_string(workspace().join("packaging/rport.service")).unwrap();
    // The capabilities it keeps are the ones it raises, and no more (docs/OPERATIONS.md).
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in rport.service"))
    };
    // The start-up set (rport-userspace/src/privileges.rs): CAP_SETPCAP for the drop after
    // attach.
    let caps = "CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_SETPCAP";
    assert_eq!(value("CapabilityBoundingSet"), caps);
    assert_eq!(value("AmbientCapabilities"), caps);
    assert_eq!(value("Type"), "notify");
    // verify checks that ExecStart's program exists: this build's binary stands in for
    // /usr/bin/rport (the package test verifies the installed unit as it is).
    let bin = rport_bin().unwrap();
    let dir = TempDir::new("rport-unit-");
    std::fs::write(
        dir.0.join("rport.service"),
        unit.replace("/usr/bin/rport", bin.to_str().unwrap()),
    )
    .unwrap();
    verify(&dir.0, &["./rport.service"], false).unwrap();
    // And the check is real: a setting systemd does not know is reported.
    std::fs::write(
        dir.0.join("bad.service"),
        unit.replace("/usr/bin/rport", bin.to_str().unwrap())
            .replace("Type=notify", "Type=notifyy"),
    )
    .unwrap();
    let e = verify(&dir.0, &["./bad.service"], false).unwrap_err();
    assert!(e.contains("Failed to parse service type"), "{e}");
}

#[test]
fn alert_rules_in_the_guide_pass_promtool() {
    if !have("promtool") {
        eprintln!(
            "SKIP alert_rules_in_the_guide_pass_promtool: promtool is not installed (package prometheus)"
        );
        return;
    }
    let guide = std::fs::read_to_string(workspace().join("docs/OPERATIONS.md")).unwrap();
    let rules = guide
        .split("```yaml\n")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .expect("a ```yaml block of alert rules in docs/OPERATIONS.md");
    let dir = TempDir::new("rport-rules-");
    let check = |text: &str| {
        let f = dir.0.join("rules.yml");
        std::fs::write(&f, text).unwrap();
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .unwrap()
    };
    let o = check(rules);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SUCCESS: 3 rules found"));
    // The metrics it names are the exporter's (docs/STATS.md, generated from the code).
    let stats = std::fs::read_to_string(workspace().join("docs/STATS.md")).unwrap();
    assert!(stats.contains("`rport_bindings_evicted`"));
    assert!(
        stats.contains("`xdp.userspace_unavailable`") && stats.contains("rport_xdp_<name>_total")
    );
    // And promtool is a real check: a broken expression fails.
    assert!(!check(&rules.replace("rate(", "rate((")).status.success());
}

/// The installed package, purged on Drop (also when the test fails).
struct Installed;

impl Installed {
    fn purge() -> std::process::Output {
        Command::new("dpkg")
            .args(["--purge", "rport"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap()
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Installed::purge();
    }
}

fn installed_version() -> Option<String> {
    let o = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", "rport"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.contains("install ok installed").then_some(s)
}

fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?}: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The files the package installs (the test's own list, not the package's: a file the
/// package stopped shipping shows up here).
const FILES: &[&str] = &[
    "/usr/bin/rport",
    "/lib/systemd/system/rport.service",
    "/etc/rport/rport.toml",
    "/usr/share/man/man1/rport.1",
    "/usr/share/man/man1/rport-run.1",
    "/usr/share/bash-completion/completions/rport",
    "/usr/share/zsh/vendor-completions/_rport",
    "/usr/share/fish/vendor_completions.d/rport.fish",
    "/usr/share/doc/rport/OPERATIONS.md",
];

/// The inode of the host's network namespace (this test's, and dpkg's): the service's
/// pins and control socket are named after it (`/sys/fs/bpf/rport/net-N`,
/// `/run/rport/net-N`).
fn host_netns() -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net").unwrap().ino()
}

#[test]
fn deb_installs_runs_and_purges_clean() {
    if !can_run("deb_installs_runs_and_purges_clean", &["dpkg", "ip"]) {
        return;
    }
    if let Some(v) = installed_version() {
        eprintln!(
            "SKIP deb_installs_runs_and_purges_clean: rport is installed here ({v}); not touching it"
        );
        return;
    }
    let xdp_before = run_ok(Command::new("ip").args(["-o", "link"]))
        .lines()
        .filter(|l| l.contains(" xdp"))
        .count();
    // The tests' own build, packaged (the release package is `cargo xtask dist`).
    let t0 = Instant::now();
    let out = run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["run", "--quiet", "-p", "xtask", "--", "dist", "--debug"])
            .current_dir(workspace()),
    );
    let deb = out.split(" (").next().unwrap().trim().to_string();
    eprintln!("dist --debug: {} in {:.0?}", out.trim(), t0.elapsed());
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{out}");

    let _installed = Installed;
    run_ok(Command::new("dpkg").args(["-i", &deb]));
    for f in FILES {
        assert!(Path::new(f).is_file(), "{f} not installed");
    }
    let v = run_ok(Command::new("/usr/bin/rport").arg("--version"));
    assert_eq!(v.trim(), format!("rport {}", env!("CARGO_PKG_VERSION")));
    if have("man") {
        let page = run_ok(Command::new("man").args(["-w", "rport"]));
        assert_eq!(page.trim(), "/usr/share/man/man1/rport.1");
    }
    if have("systemd-analyze") {
        // The unit as installed, man pages included (Documentation=).
        verify(
            Path::new("/lib/systemd/system"),
            &["rport.service"],
            have("man"),
        )
        .unwrap();
    }

    // The packaged binary does its job: attached in a namespace of ours, JSON logs, and
    // nothing attached after SIGTERM.
    {
        let gw = Ns::new("rpdist").unwrap();
        let peer = Ns::new("rpdistp").unwrap();
        veth(&gw, "out0", &peer, "c0").unwrap();
        veth(&gw, "in0", &peer, "s0").unwrap();
        // `rport check` green on the interfaces it is to run on (a gateway forwards).
        run_ok(gw.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        let check = run_ok(gw.cmd("/usr/bin/rport").args([
            "check",
            "--outside",
            "out0",
            "--inside",
            "in0",
        ]));
        assert!(
            check.contains("the XDP program loads and passes the verifier")
                && !check.contains("FAIL"),
            "{check}"
        );
        let pins = Bpffs::new().unwrap();
        let dir = TempDir::new("rport-dist-");
        let log = dir.0.join("rport.log");
        let mut c = gw.cmd("/usr/bin/rport");
        c.args(["--log-format", "json", "run", "--outside", "out0"])
            .args(["--inside", "in0", "--pin-path"])
            .arg(pins.dir.join("rport"));
        let mut p = Proc::spawn(c, "rport run (packaged)", &log).unwrap();
        let t = Instant::now();
        let attached = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains("attached to")) {
                break l.to_string();
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the packaged rport did not attach: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let j: serde_json::Value = serde_json::from_str(&attached)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {attached}"));
        assert_eq!(j["level"], "INFO", "{j}");
        assert!(
            j["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("attached to out0, in0")),
            "{j}"
        );
        assert!(gw.ip(&["-o", "link"]).unwrap().contains(" xdp"));
        assert!(p.stop().unwrap().success());
        assert!(!gw.ip(&["-o", "link"]).unwrap().contains(" xdp"));
    }

    // What the service leaves between restarts (pins, control directory), stood in for
    // where nothing of a real service is there: purge must remove it.
    let ino = host_netns();
    let run_dir = PathBuf::from(format!("/run/rport/net-{ino}"));
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/rport/net-{ino}"));
    let mut made = Vec::new();
    for d in [&run_dir, &pin_dir] {
        // On a bpffs mkdir works; where /sys/fs/bpf is no bpffs it fails: not checked then.
        if !d.exists() && std::fs::create_dir_all(d).is_ok() {
            made.push(d.clone());
        }
    }
    let o = Installed::purge();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(installed_version(), None);
    for f in FILES
        .iter()
        .map(Path::new)
        .chain(made.iter().map(|p| p.as_path()))
    {
        assert!(!f.exists(), "{} left after purge", f.display());
    }
    assert!(
        !Path::new("/etc/rport").exists(),
        "/etc/rport left after purge"
    );
    let xdp_after = run_ok(Command::new("ip").args(["-o", "link"]))
        .lines()
        .filter(|l| l.contains(" xdp"))
        .count();
    assert_eq!(
        xdp_after, xdp_before,
        "XDP attachments in the root namespace"
    );
}
