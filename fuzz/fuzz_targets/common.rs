//! What the targets share: the first input byte picks the observed source and the options,
//! the rest is the message (so a seed file is a SIP message behind one byte).
#![allow(dead_code)] // each target uses its part
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rport_common::tag::TagBuf;
use rport_userspace::sip::rewrite::Observed;

/// The sources the tests use: an IPv4 NAT mapping, an IPv6 one, a private address (the
/// sent-by of many seeds, so "the sent-by is the source" is reached).
pub fn source(b: u8) -> Observed {
    match b % 3 {
        0 => Observed {
            addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            port: 32415,
        },
        1 => Observed {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x60)),
            port: 5062,
        },
        _ => Observed {
            addr: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 50)),
            port: 5060,
        },
    }
}

/// A tag as rport writes them (base64url text), or none.
pub fn tag(b: u8) -> Option<TagBuf> {
    match (b / 3) % 3 {
        0 => None,
        1 => Some(TagBuf::from_text(b"0a1b")),
        _ => Some(TagBuf::from_text(
            b"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w",
        )),
    }
}

/// The options byte and the message.
pub fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&b, m)) => (b, m),
        None => (0, data),
    }
}
