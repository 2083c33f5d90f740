//! Builds the XDP object with the nightly pinned in rport-ebpf/rust-toolchain.toml (via
//! aya-build) and leaves it in OUT_DIR, where `src/lib.rs` embeds it. Cargo re-runs this
//! whenever anything under rport-ebpf/ changes (the pin included), so the embedded object
//! can never be stale.
//!
//! The pin is a date (`nightly-YYYY-MM-DD`), which rustup installs from its archive:
//! `cargo xtask setup` installs exactly that toolchain, and this script uses it by name,
//! never whatever `nightly` happens to be on the machine.
use std::path::Path;

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "rport-ebpf")
        .ok_or_else(|| anyhow!("rport-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("rport-ebpf manifest has no parent"))?;
    println!(
        "cargo:rerun-if-changed={}",
        root_dir.parent().unwrap().join("rport-common")
    );
    let toolchain = pinned_toolchain(root_dir.join("rust-toolchain.toml").as_std_path())?;
    // aya-build hands every line the nested cargo prints on to cargo as a warning, so a
    // fresh build would show some sixty `warning: rport-userspace@0.1.0: Compiling …`.
    // Quiet, the nested cargo prints nothing on success, and on failure still everything
    // that says why: rustc's diagnostics (aya-build renders them from cargo's JSON
    // messages) and cargo's own errors. Set CARGO_TERM_VERBOSE (or CARGO_TERM_QUIET=false)
    // to see its progress again.
    if std::env::var_os("CARGO_TERM_VERBOSE").is_none()
        && std::env::var_os("CARGO_TERM_QUIET").is_none()
    {
        // SAFETY: the build script has no other thread yet.
        unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "rport-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .with_context(|| {
        format!("building the XDP program with {toolchain} (run `cargo xtask setup` first)")
    })
}

/// The `channel = "…"` of a rust-toolchain.toml.
fn pinned_toolchain(file: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            let v = l.trim().strip_prefix("channel")?.trim_start();
            let v = v.strip_prefix('=')?.trim();
            Some(v.strip_prefix('"')?.strip_suffix('"')?.to_string())
        })
        .with_context(|| format!("no channel = \"…\" in {}", file.display()))
}
