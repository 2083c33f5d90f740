#!/usr/bin/env python3
"""Writes the seed corpus: fuzz/corpus/<target>/seed-NN (committed; what libFuzzer adds
next to them is not). Each SIP seed is one options byte (source, tag, force_rport: see
fuzz_targets/common.rs) and a message; the pcap seeds are captures of the same messages.
Run from anywhere: python3 fuzz/make_seeds.py"""
import os, struct

V = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-{n};rport"
TAIL = "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c{n}@192.168.1.50\r\nCSeq: 1 {m}\r\nMax-Forwards: 70\r\n"

def msg(start, lines, body=""):
    h = "\r\n".join([start] + lines) + "\r\n"
    return h + "Content-Length: %d\r\n\r\n%s" % (len(body), body)

SDP = "v=0\r\no=- 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
CONTACTS = [
    "Contact: <sip:alice@192.168.1.50:5060>;expires=3600",
    "Contact: sip:alice@192.168.1.50;expires=60",
    "Contact: \"Alice Smith\" <sip:alice@192.168.1.50:5060;transport=udp>;q=0.7",
    "Contact: Alice <sips:alice@192.168.1.50>",
    "m: <sip:alice@192.168.1.50:5060;rptag=forged>;expires=60",
    "Contact: <sip:alice@192.168.1.50;RPTAG=x;lr>, <sip:alice@10.0.0.7:5062>",
    "Contact: *",
    "Contact: <tel:+15551234>",
    "Contact: <sip:alice@[2001:db8::50]:5060>;+sip.instance=\"<urn:uuid:1>\"",
    "Contact: <sip:alice@203.0.113.1:32415>",
    "Contact: <sip:alice@192.168.1.50?Subject=hi>;expires=1",
    "Contact: <sip:%61lice@192.168.1.50;%72ptag=1>",
    "Contact: <sip:alice@192.168.1.50>\r\n ;expires=60,\r\n\t<sip:b@192.168.1.51>",
    "CONTACT: <sip:alice@phone.invalid>;rptag=header-param",
    "Contact: \"a\\\"<sip:x@y>\" <sip:alice@192.168.1.50>",
]
VIAS = [
    V,
    "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-{n}",
    "v: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-{n};rport",
    "Via: SIP/2.0/UDP [2001:db8:1::60]:5062;branch=z9hG4bK-{n};rport",
    "Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-{n}",
    "Via: SIP / 2.0 / UDP\r\n 192.168.1.50 ; rport ; branch = z9hG4bK-{n}",
    "Via: SIP/2.0/UDP phone.invalid;branch=z9hG4bK-{n};rport;received=198.51.100.9",
    "Via: SIP/2.0/UDP 192.168.1.50;branch=legacy{n};x=\"a;b,c\", SIP/2.0/UDP 10.0.0.1",
    "VIA: SIP/2.0/TCP 192.168.1.50:5060;branch=z9hG4bK-{n};rport=5060;received=192.168.1.50",
    "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-{n};rptag=old;rport",
    "Via: SIP/2.0/UDP 192.168.1.50:99999;branch=z9hG4bK-{n}",
    "Via: SIP/2.0/UDP [::ffff:192.168.1.50];branch=z9hG4bK-{n}",
]

def messages():
    out = []
    n = 0
    for i, via in enumerate(VIAS):
        n += 1
        c = CONTACTS[i % len(CONTACTS)]
        out.append(msg("REGISTER sip:198.51.100.10 SIP/2.0", [via.format(n=n), c, TAIL.format(n=n, m="REGISTER").rstrip("\r\n")]))
    for i, c in enumerate(CONTACTS):
        n += 1
        via = VIAS[(i * 5) % len(VIAS)].format(n=n)
        out.append(msg("INVITE sip:bob@example.com SIP/2.0", [via, TAIL.format(n=n, m="INVITE").rstrip("\r\n"), c, "Content-Type: application/sdp"], SDP))
    # Responses, a second Via, compact forms only, folded headers, a Request-URI tag.
    out.append(msg("SIP/2.0 200 OK", ["Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-r1;rport=32415;received=203.0.113.1", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-up", "Contact: <sip:alice@192.168.1.50:5060;rptag=0a1b>;expires=3600", TAIL.format(n=90, m="REGISTER").rstrip("\r\n")]))
    out.append(msg("SIP/2.0 180 Ringing", ["v: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-r2;rport", "m: <sip:bob@198.51.100.20>", "i: c91@192.168.1.50", "f: <sip:a@b>;tag=1", "t: <sip:c@d>;tag=2"]))
    out.append(msg("OPTIONS sip:x SIP/2.0", ["v:SIP/2.0/UDP h", "i: c92", "m: <sip:x@192.168.1.50>"]))
    out.append(msg("INVITE sip:alice@203.0.113.1:32415;rptag=0a1b SIP/2.0", [V.format(n=93), "Subject: folded\r\n over two lines", TAIL.format(n=93, m="INVITE").rstrip("\r\n"), "Contact: <sip:bob@198.51.100.20>"]))
    out.append(msg("BYE sip:alice@192.168.1.50 SIP/2.0", ["Via:\r\n\tSIP/2.0/UDP\r\n 192.168.1.50:5060\r\n ;branch=z9hG4bK-94", TAIL.format(n=94, m="BYE").rstrip("\r\n")]))
    out.append(msg("ACK sip:bob@example.com SIP/2.0", ["Via: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-95;rport;RPORT=1", TAIL.format(n=95, m="ACK").rstrip("\r\n")]))
    out.append(msg("MESSAGE sip:bob@example.com SIP/2.0", ["Call-ID: early@192.168.1.50", "X-Via: SIP/2.0/UDP 10.9.9.9;rport", V.format(n=96), "Contact: <sip:alice@192.168.1.50>"]))
    return [m.encode() for m in out]

def eth_ipv4_udp(payload, sport=5060, dport=5060):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([192, 168, 1, 50]), bytes([198, 51, 100, 10]))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp

def pcap(frames, le=True, nano=False):
    e = "<" if le else ">"
    magic = 0xa1b23c4d if nano else 0xa1b2c3d4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 1700000000 + i, i * 1000, len(f), len(f)) + f
    return out

def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    ms = messages()
    for target in ["rewrite", "contact", "scan", "message"]:
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for i, m in enumerate(ms):
            # Every source, tag and force_rport choice among the seeds.
            opt = (i * 37) & 0xff
            open(os.path.join(d, "seed-%02d" % i), "wb").write(bytes([opt]) + m)
    d = os.path.join(root, "pcap")
    os.makedirs(d, exist_ok=True)
    frames = [eth_ipv4_udp(m) for m in ms]
    seeds = [pcap(frames[:3]), pcap(frames[3:6], le=False), pcap(frames[6:8], nano=True), pcap([]), pcap(frames[8:9])[:-10]]
    for i, s in enumerate(seeds):
        open(os.path.join(d, "seed-%02d" % i), "wb").write(s)

main()
