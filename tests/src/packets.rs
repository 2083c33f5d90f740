//! Crafted frames for the fixture table, written with etherparse's `PacketBuilder` so a
//! reader sees each packet's layers.
use etherparse::PacketBuilder;

pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The NAT's public address and mapped port, as the gateway sees the phone.
pub const NAT_V4: [u8; 4] = [203, 0, 113, 1];
pub const NAT_PORT: u16 = 32415;
pub const SERVER_V4: [u8; 4] = [198, 51, 100, 10];
pub const PHONE_V4: [u8; 4] = [192, 168, 1, 50];
pub const CLIENT_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50,
];
/// The phone's own IPv6 address behind a prefix translator (NPTv6) whose outside address
/// is [`CLIENT_V6`]: what its Via says, where a legacy server answers.
pub const PHONE_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50,
];
pub const SERVER_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A REGISTER whose top Via line is `via` (a full header line without CRLF).
pub fn register(via: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:198.51.100.10 SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@198.51.100.10>;tag=1\r\nTo: <sip:alice@198.51.100.10>\r\nCall-ID: call-1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.168.1.50:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A MESSAGE (no Contact: RFC 3428) whose top Via line is `via`.
pub fn message(via: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:bob@198.51.100.10 SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@198.51.100.10>;tag=1\r\nTo: <sip:bob@198.51.100.10>\r\nCall-ID: call-1@192.168.1.50\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A 200 OK response carrying the top Via line `via`.
pub fn ok_response(via: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\n{via}\r\nFrom: <sip:alice@198.51.100.10>;tag=1\r\nTo: <sip:alice@198.51.100.10>;tag=2\r\nCall-ID: call-1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("write");
    v
}

pub fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv6(src, dst, 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("write");
    v
}

pub fn udp4_vlan(
    vlans: &[u16],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC);
    let b = match vlans {
        [one] => eth.single_vlan((*one).try_into().unwrap()),
        [outer, inner] => {
            eth.double_vlan((*outer).try_into().unwrap(), (*inner).try_into().unwrap())
        }
        _ => panic!("one or two tags"),
    }
    .ipv4(src, dst, 64)
    .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("write");
    v
}

pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65535);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("write");
    v
}

/// The same IPv4 frame with `n` bytes of IP options (NOPs + EOL) inserted.
pub fn with_ipv4_options(frame: &[u8], n: usize) -> Vec<u8> {
    assert!(n.is_multiple_of(4) && n <= 40);
    let mut v = frame[..34].to_vec();
    v.extend(std::iter::repeat_n(1u8, n)); // NOP options
    v.extend_from_slice(&frame[34..]);
    v[14] = 0x45 + (n / 4) as u8;
    let tot = u16::from_be_bytes([v[16], v[17]]) + n as u16;
    v[16..18].copy_from_slice(&tot.to_be_bytes());
    v
}

/// Marks an IPv4 frame as a fragment: `more` sets MF, `offset8` is the offset in 8-byte units.
pub fn as_fragment(frame: &[u8], more: bool, offset8: u16) -> Vec<u8> {
    let mut v = frame.to_vec();
    let f = (if more { 0x2000 } else { 0 }) | offset8;
    v[20..22].copy_from_slice(&f.to_be_bytes());
    v
}
