//! `rport generate-assets DIR` (hidden): the man pages and shell completions, generated
//! from the clap definitions themselves so they never drift from `--help`. The Debian
//! package (`cargo xtask dist`) ships what this writes.
use std::path::Path;

use anyhow::{Context as _, Result};

/// Writes `DIR/man/rport.1`, one `rport-SUB.1` per visible subcommand (none for `help`), and
/// `DIR/completions/{rport.bash, _rport, rport.fish}`.
pub fn generate(cmd: clap::Command, dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut cmd = cmd;
    cmd.build();
    clap_mangen::generate_to(cmd.clone(), &man).context("writing the man pages")?;
    // `rport help SUB` is `rport SUB --help`: no page of its own.
    for e in std::fs::read_dir(&man)? {
        let p = e?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rport-help"))
        {
            std::fs::remove_file(p)?;
        }
    }
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "rport.bash"),
        (Shell::Zsh, "_rport"),
        (Shell::Fish, "rport.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "rport", &mut out);
        std::fs::write(comp.join(file), out)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    Ok(())
}
