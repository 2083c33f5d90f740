//! Builds the XDP object with the nightly toolchain (via aya-build) and leaves it in
//! OUT_DIR, where `src/lib.rs` embeds it. Cargo re-runs this whenever anything under
//! rport-ebpf/ changes, so the embedded object can never be stale.
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
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "rport-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context("building the XDP program (run `cargo xtask setup` first)")
}
