//! RFC 3581 rewrite of the top Via. (Placeholder: being written.)
use std::{net::SocketAddr, process::ExitCode};

pub fn run_cli(_source: SocketAddr, _force_rport: bool) -> ExitCode {
    eprintln!("not implemented yet");
    ExitCode::FAILURE
}
