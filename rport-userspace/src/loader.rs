//! Loading and attaching the XDP program. (Placeholder: being written.)
use std::path::Path;

pub fn check() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn replay(_file: &Path, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
