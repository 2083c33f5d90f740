//! The capture reader of `rport replay` (rport_userspace::capture): no panic on any file;
//! every record it returns borrows from the file and fits in it; a classic pcap it accepts
//! is exactly the file, header and records end to end, every frame the caplen its record
//! announced; turning a record into an Ethernet frame never panics, and an Ethernet record is not
//! copied.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_userspace::capture;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = capture::read(data) else {
        return;
    };
    let span = data.as_ptr_range();
    for r in &records {
        let p = r.data.as_ptr_range();
        assert!(span.start <= p.start && p.end <= span.end, "a record outside the file");
        if let Ok(f) = r.ethernet()
            && r.linktype == capture::ETHERNET
        {
            assert_eq!(f.as_ptr(), r.data.as_ptr(), "an Ethernet record is its own frame");
        }
    }
    if data[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        return;
    }
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
    for p in &records {
        assert_eq!(p.data.len(), rd(off + 8) as usize);
        assert_eq!(p.orig_len, rd(off + 12));
        // The frame is the bytes right after its record header, borrowed from the file.
        assert_eq!(p.data.as_ptr(), data[off + 16..].as_ptr());
        off += 16 + p.data.len();
    }
    assert_eq!(off, data.len(), "bytes left over, yet accepted");
});
