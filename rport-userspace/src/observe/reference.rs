//! The counters reference, docs/STATS.md, generated from the definitions so it cannot go
//! stale: a test compares it with the file.
use crate::observe::{
    nat::GAP_BUCKET_NAMES,
    snapshot::{GROUPS, Stat},
};

/// The text of docs/STATS.md.
pub fn stats_reference() -> String {
    let mut s = String::from(
        "# rport statistics\n\n\
         `rport stats` shows these, grouped; `rport stats --json` gives them as\n\
         `{\"uptime_s\", \"bindings_live\", \"bindings_evicted\", \"xdp\": {name: value}, \"daemon\": {name: value}, \"nat\": {…}}`\n\
         (`bindings_evicted`: bindings the LRU map dropped to make room, `xdp.binding_new` − `bindings_live`);\n\
         `rport run --metrics ADDR:PORT` exports them as `rport_xdp_<name>_total` and\n\
         `rport_daemon_<name>_total` (`*_ns` counters as `*_seconds_total`), plus\n\
         `rport_bindings_live`, `rport_bindings_evicted`, `rport_binding_age_seconds` and `rport_userspace_batch_seconds`.\n\
         Where Kamailio has a close statistic, the description names it.\n\n\
         This file is generated from `rport-common/src/counters.rs` and\n\
         `rport-userspace/src/observe/dstats.rs` (`cargo test -p rport-userspace stats_reference` checks it).\n",
    );
    for group in GROUPS {
        s.push_str(&format!("\n## {group}\n\n| field | meaning |\n|---|---|\n"));
        for stat in Stat::in_group(group) {
            s.push_str(&format!(
                "| `{}.{}` | {} |\n",
                stat.source(),
                stat.name(),
                stat.help().trim()
            ));
        }
        if group == "nat" {
            s.push_str(NAT_FIELDS);
            for k in GAP_BUCKET_NAMES {
                s.push_str(&format!(
                    "| `nat.refresh_gaps.{k}` | Consecutive requests of one client (Call-ID) {} apart (Prometheus: `rport_client_refresh_gap_seconds`). |\n",
                    match k.strip_prefix("le_").and_then(|b| b.strip_suffix('s')) {
                        Some(b) => format!("at most {b} s"),
                        None => "more than the last bucket".into(),
                    }
                ));
            }
        }
    }
    s.push_str(BINDINGS_FIELDS);
    s
}

/// The `nat` object of `rport stats --json` (the daemon's NAT diagnostics,
/// rport-userspace/src/observe/nat.rs).
const NAT_FIELDS: &str = "\
| `nat.clients` | Clients (Call-IDs of rewritten requests) tracked now; at most 65,536 (32 shards of 2,048), at most 1,024 of one source IP (an IPv6 /64); when full, the least recently refreshed silent for 300 s makes room (Prometheus: `rport_nat_clients`). |
| `nat.untracked` | Requests of new clients not tracked because the table was full of clients active within 300 s. |
| `nat.reachable_clients` | Clients tracked now whose Contact the daemon tagged within the tag's age limit (a day): a server can send them requests (`rport bindings --clients`; Prometheus: `rport_nat_reachable_clients`). |
| `nat.rebindings` | A client seen from a new public address or port: its NAT dropped the old mapping, and calls to it were lost meanwhile (Prometheus: `rport_nat_rebindings_total`). |
| `nat.recent_rebindings[]` | The latest 16, newest first: `at_unix`, `client` (Call-ID), `old` and `new` mapping, `old_age_s` (how long the old mapping had been idle). |
";

/// The fields of `rport bindings --json`.
const BINDINGS_FIELDS: &str = "
## bindings

`rport bindings --json [--limit N]`: the live bindings (BPF map BINDINGS, one per client
transaction), newest first.

| field | meaning |
|---|---|
| `key` | Transaction key (hex): hash of the branch, plus sent-by and Call-ID for branches without the RFC 3261 magic cookie. |
| `source` | Observed source address:port of the request: the client's NAT mapping, where responses are steered. |
| `server` | Destination address:port of the request. |
| `sent_by` | Sent-by of the top Via as the client wrote it (`(name or IPv6):port` when not an IPv4 literal). |
| `age_s` | Seconds since the latest request of the transaction. |
| `first_seen_s_ago` | Seconds since its first request. |
| `requests` | Requests seen (retransmissions included). |
| `ifindex`, `vlan` | Ingress interface and outer VLAN id (0: untagged). |
| `flags` | `rport`, `rport=N`, `received`, `nat` (sent-by is not the source), `port-changed`, `private`, `cgnat`, `name`, `ipv6`, `force-rport`, `fragment`. |

`rport bindings --clients --json [--limit N]`: the clients a server can reach through
their Contact tag (the daemon's NAT tracker, one per Call-ID: a phone's registration and
each of its dialogs), most recently tagged first; those whose tag is past its age limit
are left out.

| field | meaning |
|---|---|
| `client` | Start of the Call-ID (at most 32 bytes). |
| `mapping` | The NAT mapping the tag names (the observed source of the tagged message): where the server's requests are steered. |
| `server` | The server address the tag was made for: only requests from it carry a valid tag. |
| `tagged_s_ago` | Seconds since the daemon last tagged one of the client's Contacts. |
| `expires_in_s` | Seconds until that tag is past its age limit (to its 16 s clock steps); a newer tag (a re-REGISTER) restarts it. |
";

/// Compares `got` with the committed file at `path`, after rewriting it with `got` when
/// RPORT_WRITE_DOCS is set; the failure says to review and rerun `test` so.
#[cfg(test)]
pub(crate) fn assert_current(path: &str, got: &str, test: &str) {
    if std::env::var_os("RPORT_WRITE_DOCS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        std::fs::write(path, got).unwrap();
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        got == want,
        "{path} is stale: review, then RPORT_WRITE_DOCS=1 cargo test -p rport-userspace {test}\n{got}"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_reference_is_current() {
        super::assert_current(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/STATS.md"),
            &super::stats_reference(),
            "stats_reference",
        );
    }
}
