//! The pcap reader of `rport replay` (rport_userspace::cli::replay::parse_pcap): no panic
//! on any file; what it accepts is exactly the file, header and records end to end, and
//! every frame it returns is the caplen its record announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_userspace::cli::replay::parse_pcap;

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_pcap(data) else {
        return;
    };
    let le = data[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || data[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let rd = |o: usize| {
        let a: [u8; 4] = data[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut off = 24;
    for p in &packets {
        assert_eq!(p.ts_s, rd(off));
        assert_eq!(p.ts_frac, rd(off + 4));
        assert_eq!(p.data.len(), rd(off + 8) as usize);
        // The frame is the bytes right after its record header, borrowed from the file.
        assert_eq!(p.data.as_ptr(), data[off + 16..].as_ptr());
        off += 16 + p.data.len();
    }
    assert_eq!(off, data.len(), "bytes left over, yet accepted");
});
