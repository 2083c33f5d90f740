//! Standard output of the printing subcommands (`stats`, `bindings`, `check`, `replay`).
//!
//! Rust ignores SIGPIPE, so a reader that went away (`rport stats --json | head -c1`)
//! shows up as EPIPE on the next write, and `println!` panics on it. These write instead,
//! and turn EPIPE into [`Closed`]: `main` ends the command quietly with exit 0, as the
//! output nobody reads any more is not a failure (docs/OPERATIONS.md). SIGPIPE itself
//! stays ignored: the client's writes to the control socket must fail as errors, not
//! kill the command without a word.
use std::io::{ErrorKind, Write as _};

use anyhow::{Context as _, Result};

/// Standard output was closed by its reader.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for Closed {}

/// Whether `e` is (or was caused by) a closed standard output.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}

/// Writes `args` to standard output and flushes it (a `--watch` frame shows at once).
pub fn write_fmt(args: std::fmt::Arguments<'_>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_fmt(args).and_then(|()| o.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(Closed.into()),
        r => r.context("writing to standard output"),
    }
}

/// `print!` that returns [`Closed`] (or another write error) from the calling function.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write_fmt(format_args!($($arg)*))?
    };
}

/// `println!` that returns [`Closed`] (or another write error) from the calling function.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::write_fmt(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};
