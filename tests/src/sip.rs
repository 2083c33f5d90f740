//! Real SIP software for the namespace tests: Kamailio (Debian's) as the server, SIPp as
//! the phone.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::ns::{Ns, Proc, sh};

/// Debian's module directory for Kamailio.
pub const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// How the Kamailio server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// A registrar answering REGISTER and OPTIONS with 200, `reply_to_via=1`: replies go to
    /// the top Via as the request carried it (the legacy behaviour rport exists for).
    LegacyRegistrar,
    /// The same with Kamailio's default `reply_to_via=0`: replies go to the source address
    /// and port of the request (rport-aware, RFC 3581 §4).
    AwareRegistrar,
    /// A stateless proxy that forwards every request to `SERVER:5070` (a SIPp UAS) and the
    /// replies back by the Via headers, as RFC 3261 proxies do.
    Proxy,
    /// A legacy PBX that ignores NAT (issue 11): a registrar (`save`/`lookup` of usrloc,
    /// in memory), a stateful proxy (tm) that record-routes INVITE dialogs, replies to the
    /// top Via (`reply_to_via=1`), no nathelper. Calls to user `service` go to the SIPp
    /// on `SERVER:5070`, calls to anyone else to the Contact they registered. Short
    /// transaction timers (2 s, 4 s for INVITE) so that a lost call fails fast.
    Pbx,
}

/// A Kamailio process, stopped on Drop. It logs the top Via of every request it receives
/// (`VIA <value>` lines in its log): what the server saw.
pub struct Kamailio {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Kamailio {
    /// The Request-URI the PBX sent each call to AOR `user` to (its `TARGET` log lines, after
    /// the location lookup): the Contact it had stored.
    pub fn targets(&self, user: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("TARGET ").map(|(_, v)| v.trim().to_string()))
            .filter_map(|v| {
                let (u, ru) = v.split_once(' ')?;
                (u == user).then(|| ru.to_string())
            })
            .collect()
    }

    pub fn start(ns: &Ns, listen: &str, kind: Server, dir: &Path) -> Result<Kamailio> {
        let cfg = dir.join(format!("kamailio-{listen}.cfg"));
        let route = match kind {
            Server::LegacyRegistrar | Server::AwareRegistrar => {
                "if (is_method(\"REGISTER|OPTIONS\")) { sl_send_reply(\"200\", \"OK\"); exit; }\n    sl_send_reply(\"405\", \"Method Not Allowed\");"
            }
            Server::Proxy => "forward(\"198.51.100.10\", 5070);",
            Server::Pbx => PBX_ROUTE,
        };
        // tm first: sl binds to it when it is loaded.
        let (modules, params) = if kind == Server::Pbx {
            (PBX_MODULES, PBX_PARAMS)
        } else {
            ("", "")
        };
        let bracketed = if listen.contains(':') {
            format!("[{listen}]")
        } else {
            listen.to_string()
        };
        let text = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:{bracketed}:5060
dns=no
rev_dns=no
reply_to_via={rtv}
mpath="{KAMAILIO_MODULES}"
{modules}
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
{params}
request_route {{
    xlog("L_ALERT", "VIA $hdr(Via)\n");
    {route}
}}
"#,
            rtv = if kind == Server::LegacyRegistrar || kind == Server::Pbx {
                1
            } else {
                0
            },
        );
        std::fs::write(&cfg, text)?;
        let log = dir.join(format!("kamailio-{listen}.log"));
        let c = kamailio_command(ns, &cfg, &dir.join(format!("kamailio-{listen}.run")), 32)?;
        let proc = Proc::spawn(c, "kamailio", &log)?;
        let k = Kamailio { proc, log };
        // Up when it listens on 5060.
        let t = Instant::now();
        loop {
            let ss = sh(ns.cmd("ss").args(["-Hlun", "sport", "=", ":5060"])).unwrap_or_default();
            if ss.contains(listen) {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!(
                    "kamailio did not start: {}",
                    std::fs::read_to_string(&k.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(k)
    }

    /// The top Via of every request it received, in order.
    pub fn seen_vias(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("VIA ").map(|(_, v)| v.trim().to_string()))
            .collect()
    }
}

/// The modules of [`Server::Pbx`] and their parameters.
const PBX_MODULES: &str = r#"loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so""#;

/// Their parameters (after every module is loaded).
const PBX_PARAMS: &str = r#"modparam("usrloc", "db_mode", 0)
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 4000)"#;

/// The routing of [`Server::Pbx`]: what a PBX without any NAT handling does (the
/// `REQ` log line shows each request's method and Request-URI).
const PBX_ROUTE: &str = r#"xlog("L_ALERT", "REQ $rm $ru\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        # No route set (a UA that kept none): toward the Request-URI, if it is not us.
        if (!uri==myself) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    if (is_method("REGISTER")) { save("location"); exit; }
    if (is_method("INVITE")) { record_route(); }
    if ($rU == "service") { $du = "sip:198.51.100.10:5070"; t_relay(); exit; }
    if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
    xlog("L_ALERT", "TARGET $tU $ru\n");
    t_relay();"#;

/// Kamailio in the foreground (`-DD -E`: logs on stderr) inside `ns` with config `cfg`,
/// `shm_mb` of shared memory, its pid file and working files in `run` (created).
pub fn kamailio_command(ns: &Ns, cfg: &Path, run: &Path, shm_mb: u32) -> Result<Command> {
    std::fs::create_dir_all(run)?;
    let mut c = ns.cmd("kamailio");
    c.args(["-DD", "-E", "-m", &shm_mb.to_string(), "-M", "8", "-f"])
        .arg(cfg)
        .arg("-P")
        .arg(run.join("pid"))
        .arg("-Y")
        .arg(run)
        .arg("-w")
        .arg(run);
    Ok(c)
}

/// One REGISTER `<send>` of a SIPp scenario (then the wait for its 200): sent-by,
/// registrar host, CSeq number (a SIPp keyword or a literal), with `;rport` or not.
fn register_send(sent_by: &str, registrar: &str, cseq: &str, rport: bool) -> String {
    let rport = if rport { ";rport" } else { "" };
    format!(
        r#"  <send retrans="500">
    <![CDATA[

REGISTER sip:{registrar} SIP/2.0
Via: SIP/2.0/UDP {sent_by};branch=[branch]{rport}
From: <sip:phone@{registrar}>;tag=[call_number]
To: <sip:phone@{registrar}>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:phone@{sent_by}>
Max-Forwards: 70
Expires: 60
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="2000"/>
"#
    )
}

/// A SIPp scenario document around `body`.
fn scenario(name: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">\n{body}</scenario>\n"
    )
}

/// A REGISTER of the AOR `user` at the PBX, through NAT (`;rport`), with Contact
/// `contact` (`sip:phone@192.168.1.50:[local_port]` for a phone as it writes it).
pub fn register_user_scenario(user: &str, contact: &str) -> String {
    scenario(
        "register a user",
        &format!(
            r#"  <send retrans="500">
    <![CDATA[

REGISTER sip:198.51.100.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:[local_port];branch=[branch];rport
From: <sip:{user}@198.51.100.10>;tag=[call_number]
To: <sip:{user}@198.51.100.10>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <{contact}>
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="2000"/>
"#
        ),
    )
}

/// A REGISTER scenario: the phone's Via names its private address, with `;rport` or not.
pub fn register_scenario(rport: bool) -> String {
    register_scenario_via("192.168.1.50:[local_port]", "198.51.100.10", rport)
}

/// A REGISTER scenario with the given sent-by and registrar host.
pub fn register_scenario_via(sent_by: &str, registrar: &str, rport: bool) -> String {
    scenario(
        "register through NAT",
        &register_send(sent_by, registrar, "[call_number]", rport),
    )
}

/// One phone refreshing its registration `n` times in one dialog: same Call-ID, CSeq
/// counting up, a new branch per REGISTER (RFC 3261 §10.2.4), `pause_ms` between them.
pub fn refresh_scenario(n: u32, pause_ms: u32) -> String {
    let mut body = String::new();
    for i in 1..=n {
        if i > 1 {
            body.push_str(&format!("  <pause milliseconds=\"{pause_ms}\"/>\n"));
        }
        body.push_str(&register_send(
            "192.168.1.50:[local_port]",
            "198.51.100.10",
            &i.to_string(),
            true,
        ));
    }
    scenario("register refresh", &body)
}

/// An SDP offer or answer for `who` at `addr`, audio on `port` (no media flows in the
/// tests: signalling only).
fn sdp(who: &str, addr: &str, port: u16) -> String {
    format!(
        "v=0\no={who} 1 1 IN IP4 {addr}\ns=-\nc=IN IP4 {addr}\nt=0 0\nm=audio {port} RTP/AVP 0\n"
    )
}

/// A UAS's `<send>` of a response to the last request: `status` line, its Via, From,
/// To (with the UAS's tag when `to_tag`), Call-ID and CSeq; the Record-Route when `rr`
/// (a record-routing proxy's dialogs), `contact` when given, an SDP `body` when given.
/// A 2xx with a body (the answer to an INVITE) is retransmitted until acknowledged.
fn reply(
    status: &str,
    to_tag: bool,
    rr: bool,
    contact: Option<&str>,
    body: Option<String>,
) -> String {
    let mut h = format!("SIP/2.0 {status}\n[last_Via:]\n");
    if rr {
        h.push_str("[last_Record-Route:]\n");
    }
    h.push_str("[last_From:]\n[last_To:]");
    if to_tag {
        h.push_str(";tag=[pid]SIPpTag01[call_number]");
    }
    h.push_str("\n[last_Call-ID:]\n[last_CSeq:]\n");
    if let Some(c) = contact {
        h.push_str(&format!("Contact: <{c}>\n"));
    }
    let body = match body {
        Some(b) => {
            h.push_str("Content-Type: application/sdp\nContent-Length: [len]\n");
            b
        }
        None => {
            h.push_str("Content-Length: 0\n");
            String::new()
        }
    };
    let retrans = if body.is_empty() || !status.starts_with('2') {
        ""
    } else {
        " retrans=\"500\""
    };
    format!("  <send{retrans}>\n    <![CDATA[\n\n{h}\n{body}\n    ]]>\n  </send>\n")
}

/// The phone's INVITE to `service` through NAT (Via with `;rport`, private Contact),
/// then the optional 100 and 180 and the 200, whose route set and Contact are kept.
fn phone_invite(answer_timeout_ms: u32) -> String {
    format!(
        r#"  <send retrans="500">
    <![CDATA[

INVITE sip:service@198.51.100.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:[local_port];branch=[branch];rport
From: <sip:phone@198.51.100.10>;tag=[call_number]
To: <sip:service@198.51.100.10>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:phone@192.168.1.50:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true" timeout="{answer_timeout_ms}"/>
"#,
        sdp("phone", "192.168.1.50", 4000)
    )
}

/// An INVITE call from the phone: INVITE, 100, 180, 200, ACK, BYE, 200.
pub fn uac_scenario() -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call through NAT">
{}  <send>
    <![CDATA[

ACK sip:service@198.51.100.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:[local_port];branch=[branch];rport
From: <sip:phone@198.51.100.10>;tag=[call_number]
To: <sip:service@198.51.100.10>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[

BYE sip:service@198.51.100.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:[local_port];branch=[branch];rport
From: <sip:phone@198.51.100.10>;tag=[call_number]
To: <sip:service@198.51.100.10>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="3000"/>
</scenario>
"#,
        phone_invite(3000)
    )
}

/// The called side: 100, 180, 200 to the INVITE, then 200 to the BYE.
pub fn uas_scenario() -> String {
    scenario(
        "answer",
        &[
            "  <recv request=\"INVITE\"/>\n".to_string(),
            reply("100 Trying", false, false, None, None),
            reply("180 Ringing", true, false, None, None),
            reply(
                "200 OK",
                true,
                false,
                Some("sip:service@198.51.100.10:5070"),
                Some(sdp("service", "198.51.100.10", 5000)),
            ),
            "  <recv request=\"ACK\" optional=\"true\"/>\n  <recv request=\"BYE\"/>\n".into(),
            reply("200 OK", false, false, None, None),
        ]
        .concat(),
    )
}

/// The phone answering a call through the PBX (issue 11): 100, then 180 and 200 with its
/// own (private) Contact, as a phone behind NAT writes it; then the ACK and the caller's
/// BYE must reach it (not optional: a lost ACK or BYE fails the call).
pub fn phone_uas_scenario() -> String {
    const CONTACT: &str = "sip:phone@192.168.1.50:[local_port]";
    scenario(
        "phone answers",
        &[
            "  <recv request=\"INVITE\"/>\n".to_string(),
            reply("100 Trying", false, false, None, None),
            reply("180 Ringing", true, true, Some(CONTACT), None),
            reply(
                "200 OK",
                true,
                true,
                Some(CONTACT),
                Some(sdp("phone", "192.168.1.50", 4000)),
            ),
            "  <recv request=\"ACK\"/>\n  <recv request=\"BYE\"/>\n".into(),
            reply("200 OK", false, false, None, None),
        ]
        .concat(),
    )
}

/// A caller on the servers' side (`198.51.100.10:5070`) calling `user` through the PBX
/// on 5060: INVITE, 200 (its Record-Route and Contact kept), ACK and, after
/// `talk_ms`, BYE along the route set to the callee's Contact, and the BYE's 200.
pub fn caller_scenario(user: &str, talk_ms: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call {user} through the PBX">
  <send retrans="500">
    <![CDATA[

INVITE sip:{user}@198.51.100.10 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.10:[local_port];branch=[branch]
From: <sip:caller@198.51.100.10>;tag=[call_number]
To: <sip:{user}@198.51.100.10>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@198.51.100.10:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 1 1 IN IP4 198.51.100.10
s=-
c=IN IP4 198.51.100.10
t=0 0
m=audio 5000 RTP/AVP 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="404" optional="true" next="failed"/>
  <recv response="408" optional="true" next="failed"/>
  <recv response="480" optional="true" next="failed"/>
  <recv response="500" optional="true" next="failed"/>
  <recv response="503" optional="true" next="failed"/>
  <recv response="200" rrs="true" timeout="8000"/>
  <send>
    <![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/UDP 198.51.100.10:[local_port];branch=[branch]
[routes]
From: <sip:caller@198.51.100.10>;tag=[call_number]
To: <sip:{user}@198.51.100.10>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500">
    <![CDATA[

BYE [next_url] SIP/2.0
Via: SIP/2.0/UDP 198.51.100.10:[local_port];branch=[branch]
[routes]
From: <sip:caller@198.51.100.10>;tag=[call_number]
To: <sip:{user}@198.51.100.10>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="8000" next="done"/>
  <label id="failed"/>
  <send>
    <![CDATA[

ACK sip:{user}@198.51.100.10 SIP/2.0
[last_Via:]
From: <sip:caller@198.51.100.10>;tag=[call_number]
To: <sip:{user}@198.51.100.10>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <!-- The call failed: a receive that times out counts it so. -->
  <recv response="299" timeout="100"/>
  <label id="done"/>
</scenario>
"#
    )
}

/// The phone calling `service` through the PBX, where the far end hangs up: INVITE
/// (Via with `;rport`, private Contact), 200, ACK along the route set, then the far end's
/// BYE must reach the phone, which answers it.
pub fn phone_call_hung_up_scenario() -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="phone calls, far end hangs up">
{}  <send>
    <![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:[local_port];branch=[branch];rport
[routes]
From: <sip:phone@198.51.100.10>;tag=[call_number]
To: <sip:service@198.51.100.10>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv request="BYE" timeout="10000"/>
{}</scenario>
"#,
        phone_invite(8000),
        reply("200 OK", false, false, None, None)
    )
}

/// The called service that hangs up: answers the INVITE (keeping its Record-Route and
/// Contact), waits for the ACK, then after `talk_ms` sends the BYE to the caller's
/// Contact along the route set, and waits for its 200.
pub fn hangup_uas_scenario(talk_ms: u32) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer, then hang up">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp=";tag=([^;&gt; ]*)" search_in="hdr" header="From:" assign_to="junk,ftag"/>
    </action>
  </recv>
  <Reference variables="junk"/>
{}  <recv request="ACK"/>
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500">
    <![CDATA[

BYE [next_url] SIP/2.0
Via: SIP/2.0/UDP 198.51.100.10:[local_port];branch=[branch]
[routes]
From: <sip:service@198.51.100.10>;tag=[pid]SIPpTag01[call_number]
To: <sip:phone@198.51.100.10>;tag=[$ftag]
Call-ID: [call_id]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="8000"/>
</scenario>
"#,
        reply(
            "200 OK",
            true,
            true,
            Some("sip:service@198.51.100.10:[local_port]"),
            Some(sdp("service", "198.51.100.10", 5000)),
        )
    )
}

/// `calls` calls from the servers' side (a SIPp UAC on `SERVER:5070`) to `user` through
/// the PBX on `SERVER:5060`, the phone answering as a SIPp UAS on 192.168.1.50:5060 in
/// `phone`: (caller's result, phone's result, or None when it did not answer every
/// call in time).
pub fn incoming_calls_via(
    phone: &Ns,
    server: &Ns,
    dir: &Path,
    user: &str,
    calls: u32,
) -> Result<(SippResult, Option<SippResult>)> {
    let mut uas = Sipp::uas(
        phone,
        &phone_uas_scenario(),
        dir,
        "192.168.1.50",
        5060,
        calls,
        Duration::from_secs(40),
    )?;
    let mut caller = Sipp::uac(
        server,
        &caller_scenario(user, 200),
        dir,
        "198.51.100.10",
        5070,
        "198.51.100.10:5060",
        calls,
        Duration::from_secs(30),
        &[],
    )?;
    let c = caller.wait(Duration::from_secs(60))?;
    // The phone ends once it answered every call; one that missed some is still
    // waiting (killed after a bound).
    let p = uas.wait(Duration::from_secs(5)).ok();
    Ok((c, p))
}

/// What a SIPp run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SippResult {
    pub successful: u64,
    pub failed: u64,
}

/// Runs a SIPp client scenario to completion: `calls` calls at `rate` per second, from
/// `local` (address), to `target` (address:port).
#[allow(clippy::too_many_arguments)]
pub fn sipp_client(
    ns: &Ns,
    scenario: &str,
    dir: &Path,
    local: &str,
    local_port: u16,
    target: &str,
    calls: u32,
    rate: u32,
) -> Result<SippResult> {
    sipp_client_with(
        ns,
        scenario,
        dir,
        local,
        local_port,
        target,
        calls,
        rate,
        &[],
        &[],
    )
}

/// Like [`sipp_client`], with values for `[field0]`, `[field1]`… (text SIPp would otherwise
/// read as keywords, such as a bracketed IPv6 address) and extra SIPp arguments.
#[allow(clippy::too_many_arguments)]
pub fn sipp_client_with(
    ns: &Ns,
    scenario: &str,
    dir: &Path,
    local: &str,
    local_port: u16,
    target: &str,
    calls: u32,
    rate: u32,
    fields: &[&str],
    extra: &[&str],
) -> Result<SippResult> {
    let name = format!("sipp-{}-{}", local_port, std::process::id());
    let scen = dir.join(format!("{name}.xml"));
    std::fs::write(&scen, scenario)?;
    let stats = dir.join(format!("{name}.csv"));
    let mut cmd = ns.cmd("sipp");
    if !fields.is_empty() {
        let inf = dir.join(format!("{name}.inf"));
        std::fs::write(&inf, format!("SEQUENTIAL\n{}\n", fields.join(";")))?;
        cmd.arg("-inf").arg(inf);
    }
    cmd.args(extra)
        .arg(target)
        .arg("-sf")
        .arg(&scen)
        .args([
            "-i",
            local,
            "-p",
            &local_port.to_string(),
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
        ])
        .args([
            "-nostdin",
            "-nd",
            "-timeout",
            "30s",
            "-trace_stat",
            "-fd",
            "1",
            "-stf",
        ])
        .arg(&stats)
        .current_dir(dir);
    let err_path = dir.join(format!("{name}.stderr"));
    let status = run_bounded(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_path)?),
        std::time::Duration::from_secs(90),
    )
    .context("running sipp")?;
    let csv = std::fs::read_to_string(&stats).with_context(|| {
        format!(
            "sipp ({status}) left no statistics: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    })?;
    parse_sipp_stats(&csv)
}

/// Runs a command to completion, killing it after `limit`: SIPp's own `-timeout` does not
/// stop every kind of stuck run, and a hung tool must fail the test, not hang CI.
pub fn run_bounded(cmd: &mut std::process::Command, limit: std::time::Duration) -> Result<String> {
    let mut child = cmd.spawn()?;
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st.to_string());
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("still running after {limit:?}: killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Reads the cumulative successful/failed call counts from SIPp's `-trace_stat` CSV.
pub fn parse_sipp_stats(csv: &str) -> Result<SippResult> {
    let mut lines = csv.lines();
    let head: Vec<&str> = lines
        .next()
        .context("empty sipp statistics")?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .rfind(|l| !l.trim().is_empty())
        .context("no statistics rows")?
        .split(';')
        .collect();
    let col = |name: &str| -> Result<u64> {
        let i = head
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no column {name}"))?;
        Ok(last.get(i).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
    };
    Ok(SippResult {
        successful: col("SuccessfulCall(C)")?,
        failed: col("FailedCall(C)")?,
    })
}

/// A SIPp server (UAS) running `scenario` on `local:port`, stopped on Drop.
pub fn sipp_server(ns: &Ns, scenario: &str, dir: &Path, local: &str, port: u16) -> Result<Proc> {
    let scen = dir.join(format!("uas-{port}.xml"));
    std::fs::write(&scen, scenario)?;
    let mut c: Command = ns.cmd("sipp");
    // Foreground (no -bg), so the guard owns the process.
    c.arg("-sf")
        .arg(&scen)
        .args([
            "-i",
            local,
            "-p",
            &port.to_string(),
            "-nostdin",
            "-nd",
            "-trace_err",
        ])
        .current_dir(dir);
    let p = Proc::spawn(c, "sipp uas", &dir.join(format!("uas-{port}.log")))?;
    let t = Instant::now();
    while !sh(ns
        .cmd("ss")
        .args(["-Hlun", "sport", "=", &format!(":{port}")]))
    .unwrap_or_default()
    .contains(local)
    {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("sipp uas did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(p)
}

/// A call from the phone that may ring for a long time: INVITE, 100 (optional), 180, then
/// a 200 awaited for up to `answer_within_ms`, ACK, BYE, 200. [`uac_scenario`] gives up on
/// the 200 after 3 s; a call answered after 32 s of ringing needs this one.
pub fn long_uac_scenario(answer_within_ms: u32) -> String {
    let mut body = String::new();
    body.push_str(&call_request(
        "INVITE",
        "1 INVITE",
        true,
        "Contact: <sip:phone@192.168.1.50:[local_port]>\n",
        "Content-Type: application/sdp\nContent-Length: [len]\n\nv=0\no=phone 1 1 IN IP4 192.168.1.50\ns=-\nc=IN IP4 192.168.1.50\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
    ));
    body.push_str(&format!(
        r#"  <recv response="100" optional="true"/>
  <recv response="180"/>
  <recv response="200" rrs="true" timeout="{answer_within_ms}"/>
"#
    ));
    body.push_str(&call_request(
        "ACK",
        "1 ACK",
        false,
        "",
        "Content-Length: 0\n",
    ));
    body.push_str("  <pause milliseconds=\"200\"/>\n");
    body.push_str(&call_request(
        "BYE",
        "2 BYE",
        true,
        "",
        "Content-Length: 0\n",
    ));
    body.push_str("  <recv response=\"200\" timeout=\"3000\"/>\n");
    scenario("long ringing call through NAT", &body)
}

/// One in-dialog (after the INVITE: with the answer's To tag) or initial request of the
/// phone's call, its Via naming the private address with `;rport`.
fn call_request(method: &str, cseq: &str, retrans: bool, extra: &str, tail: &str) -> String {
    let retrans = if retrans { " retrans=\"500\"" } else { "" };
    let to_tag = if method == "INVITE" {
        ""
    } else {
        "[peer_tag_param]"
    };
    format!(
        r#"  <send{retrans}>
    <![CDATA[

{method} sip:service@198.51.100.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:[local_port];branch=[branch];rport
From: <sip:phone@198.51.100.10>;tag=[call_number]
To: <sip:service@198.51.100.10>{to_tag}
Call-ID: [call_id]
CSeq: {cseq}
{extra}Max-Forwards: 70
{tail}
    ]]>
  </send>
"#
    )
}

/// A legacy called party: 100 and 180 at once, the 200 after `ring_ms` of ringing, every
/// response sent to the top Via's sent-by as the request carried it (what servers that
/// ignore `;received`/`;rport` do: the phone's private address), never to the source. The
/// ACK is not optional: a SIPp run of this scenario succeeds only if the ACK arrived.
pub fn legacy_uas_scenario(ring_ms: u32) -> String {
    let response = |status: &str, to_tag: bool, body: &str, retrans: bool| {
        let to_tag = if to_tag {
            ";tag=[pid]SIPpTag01[call_number]"
        } else {
            ""
        };
        let retrans = if retrans { " retrans=\"500\"" } else { "" };
        format!(
            r#"  <send{retrans}>
    <![CDATA[

SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:]{to_tag}
[last_Call-ID:]
[last_CSeq:]
{body}
    ]]>
  </send>
"#
        )
    };
    let sdp = "Contact: <sip:service@198.51.100.10:5060>\nContent-Type: application/sdp\nContent-Length: [len]\n\nv=0\no=service 1 1 IN IP4 198.51.100.10\ns=-\nc=IN IP4 198.51.100.10\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    let mut body = String::new();
    // The sent-by of the top Via (host and port), where every response goes (setdest).
    body.push_str(
        r#"  <recv request="INVITE">
    <action>
      <ereg regexp="SIP/2.0/UDP ([0-9.]+):([0-9]+)" search_in="hdr" header="Via:" check_it="true" assign_to="via,via_host,via_port"/>
    </action>
  </recv>
  <nop>
    <action>
      <setdest host="[$via_host]" port="[$via_port]" protocol="udp"/>
    </action>
  </nop>
"#,
    );
    body.push_str(&response("100 Trying", false, "Content-Length: 0\n", false));
    body.push_str(&response("180 Ringing", true, "Content-Length: 0\n", false));
    body.push_str(&format!("  <pause milliseconds=\"{ring_ms}\"/>\n"));
    body.push_str(&response("200 OK", true, sdp, true));
    body.push_str("  <recv request=\"ACK\"/>\n  <recv request=\"BYE\"/>\n");
    body.push_str(&response("200 OK", false, "Content-Length: 0\n", false));
    // The via variable is only assigned (SIPp warns about unused variables otherwise).
    body.push_str("  <nop>\n    <action>\n      <log message=\"answered [$via]\"/>\n    </action>\n  </nop>\n");
    scenario("legacy called party", &body)
}

/// A SIPp run in the background — a UAC placing calls or a UAS answering a given number of
/// them — killed on Drop (also when the test fails); [`Sipp::wait`] bounds it in time and
/// reads its statistics.
pub struct Sipp {
    proc: Proc,
    stats: PathBuf,
    err: PathBuf,
    /// Scenario file stem and directory, where `-trace_err` writes `<stem>_<pid>_errors.log`.
    stem: String,
    dir: PathBuf,
}

impl Sipp {
    /// A UAC on `local:local_port` placing `calls` calls (one per second) to `target`;
    /// SIPp's own global timeout is `timeout`. `extra`: more SIPp arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn uac(
        ns: &Ns,
        scenario: &str,
        dir: &Path,
        local: &str,
        local_port: u16,
        target: &str,
        calls: u32,
        timeout: Duration,
        extra: &[&str],
    ) -> Result<Sipp> {
        let mut args = vec![target.to_string(), "-r".into(), "1".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Sipp::start(
            ns,
            scenario,
            dir,
            &format!("uac-{local_port}"),
            local,
            local_port,
            calls,
            timeout,
            &args,
        )
    }

    /// A UAS on `local:port` that answers `calls` calls and exits; returns once it listens.
    pub fn uas(
        ns: &Ns,
        scenario: &str,
        dir: &Path,
        local: &str,
        port: u16,
        calls: u32,
        timeout: Duration,
    ) -> Result<Sipp> {
        let s = Sipp::start(
            ns,
            scenario,
            dir,
            &format!("uas-once-{port}"),
            local,
            port,
            calls,
            timeout,
            &[],
        )?;
        let t = Instant::now();
        while !sh(ns
            .cmd("ss")
            .args(["-Hlun", "sport", "=", &format!(":{port}")]))
        .unwrap_or_default()
        .contains(local)
        {
            if t.elapsed() > Duration::from_secs(10) {
                bail!(
                    "sipp uas did not start: {}",
                    std::fs::read_to_string(&s.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        ns: &Ns,
        scenario: &str,
        dir: &Path,
        name: &str,
        local: &str,
        port: u16,
        calls: u32,
        timeout: Duration,
        args: &[String],
    ) -> Result<Sipp> {
        let name = format!("sipp-{name}-{}", std::process::id());
        let scen = dir.join(format!("{name}.xml"));
        std::fs::write(&scen, scenario)?;
        let stats = dir.join(format!("{name}.csv"));
        let err = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&stats);
        let mut c = ns.cmd("sipp");
        c.args(args)
            .arg("-sf")
            .arg(&scen)
            .args([
                "-i",
                local,
                "-p",
                &port.to_string(),
                "-m",
                &calls.to_string(),
                "-nostdin",
                "-nd",
                "-timeout",
                &format!("{}s", timeout.as_secs().max(1)),
                "-trace_err",
                "-trace_stat",
                "-fd",
                "1",
                "-stf",
            ])
            .arg(&stats)
            .current_dir(dir);
        let proc = Proc::spawn(c, "sipp", &err)?;
        Ok(Sipp {
            proc,
            stats,
            err,
            stem: name,
            dir: dir.to_path_buf(),
        })
    }

    /// True while SIPp runs.
    pub fn running(&mut self) -> bool {
        match self.proc.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for SIPp to finish (killed after `limit`: a hung tool fails the test, it does
    /// not hang it) and returns its final call counts.
    pub fn wait(&mut self, limit: Duration) -> Result<SippResult> {
        let end = Instant::now() + limit;
        let status = loop {
            let c = self.proc.child.as_mut().context("sipp already reaped")?;
            if let Some(st) = c.try_wait()? {
                break st;
            }
            if Instant::now() > end {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "sipp still running after {limit:?}: killed; its log:\n{}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.proc.child = None;
        let csv = std::fs::read_to_string(&self.stats).with_context(|| {
            format!(
                "sipp ({status}) left no statistics: {}",
                std::fs::read_to_string(&self.err).unwrap_or_default()
            )
        })?;
        parse_sipp_stats(&csv)
    }

    /// The last lines of SIPp's error trace (unexpected messages, timeouts) or, without
    /// one, of its output: for failure messages.
    pub fn log(&self) -> String {
        let errors = std::fs::read_dir(&self.dir).ok().and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&self.stem) && n.ends_with("_errors.log"))
            })
        });
        let text =
            std::fs::read_to_string(errors.as_ref().unwrap_or(&self.err)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sipp_statistics() {
        let csv = "StartTime;LastResetTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C)\n\
                   a;b;0;0;0;0\n\
                   a;b;3;4;1;1\n";
        assert_eq!(
            parse_sipp_stats(csv).unwrap(),
            SippResult {
                successful: 4,
                failed: 1
            }
        );
        assert!(parse_sipp_stats("").is_err());
    }
}
