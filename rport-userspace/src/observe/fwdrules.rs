//! The gateway's own rules on the forwarding path, as `rport check` reports them: what
//! `rport run --egress bypass` would skip.
//!
//! With `--egress kernel` (the default) every rewritten message goes back through the
//! kernel's forwarding path, so the nftables chains on the `prerouting`, `forward` and
//! `postrouting` hooks (and the netdev `ingress`/`egress` hooks of the interfaces) apply
//! to it as to any forwarded packet. With `--egress bypass` it leaves by AF_XDP or
//! `bpf_redirect` straight from the receive path: none of those chains sees it. The
//! operator must know before choosing bypass, so `rport check` lists them.
//!
//! The facts come from `nft -j list ruleset` (its JSON is stable across nftables
//! releases, the text form is not), and from /proc/net/ip{,6}_tables_names for legacy
//! iptables tables, which nft does not show. Pure: [`parse_nft`] takes the JSON text.
use serde::Serialize;

/// Hooks a forwarded packet passes through (input and output hooks see only the
/// gateway's own traffic).
const FORWARDING_HOOKS: &[&str] = &["prerouting", "forward", "postrouting", "ingress", "egress"];

/// One base chain on a forwarding hook, with what is in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookChain {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: String,
    /// `accept` or `drop` (base chains of type filter; none for netdev or nat chains
    /// without one).
    pub policy: Option<String>,
    pub rules: u32,
}

impl HookChain {
    /// Whether the chain can change what happens to a packet: it has rules, or drops
    /// by default.
    pub fn matters(&self) -> bool {
        self.rules > 0 || self.policy.as_deref() == Some("drop")
    }

    /// `inet filter forward (policy drop, 3 rules)`.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if let Some(p) = &self.policy {
            what.push(format!("policy {p}"));
        }
        what.push(format!(
            "{} rule{}",
            self.rules,
            if self.rules == 1 { "" } else { "s" }
        ));
        format!(
            "{} {} {} ({})",
            self.family,
            self.table,
            self.chain,
            what.join(", ")
        )
    }
}

/// The base chains on forwarding hooks in `nft -j list ruleset` output, with their rule
/// counts, in the order nft lists them. An error for text that is not nft's JSON.
pub fn parse_nft(json: &str) -> Result<Vec<HookChain>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft JSON unreadable: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(|x| x.as_array())
        .ok_or("nft JSON without an \"nftables\" array")?;
    let s = |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_str()).map(String::from);
    let mut chains: Vec<HookChain> = Vec::new();
    for it in items {
        if let Some(c) = it.get("chain") {
            let Some(hook) = s(c, "hook") else { continue };
            if !FORWARDING_HOOKS.contains(&hook.as_str()) {
                continue;
            }
            chains.push(HookChain {
                family: s(c, "family").unwrap_or_default(),
                table: s(c, "table").unwrap_or_default(),
                chain: s(c, "name").unwrap_or_default(),
                hook,
                policy: s(c, "policy"),
                rules: 0,
            });
        } else if let Some(r) = it.get("rule") {
            let (f, t, c) = (s(r, "family"), s(r, "table"), s(r, "chain"));
            // nft lists every chain before the rules of its table.
            if let Some(ch) = chains.iter_mut().find(|ch| {
                Some(&ch.family) == f.as_ref()
                    && Some(&ch.table) == t.as_ref()
                    && Some(&ch.chain) == c.as_ref()
            }) {
                ch.rules += 1;
            }
        }
    }
    Ok(chains)
}

/// The gateway's forwarding rules as found: nftables base chains, and legacy iptables
/// tables (their rules are not read: only that they exist).
#[derive(Clone, Debug, Serialize)]
pub struct ForwardRules {
    /// The chains, or why they could not be read.
    #[serde(serialize_with = "chains_json")]
    pub nft: Result<Vec<HookChain>, String>,
    /// Legacy iptables tables in use (`ipv4 filter`, `ipv6 nat`, …).
    pub legacy_tables: Vec<String>,
}

fn chains_json<S: serde::Serializer>(
    r: &Result<Vec<HookChain>, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = s.serialize_map(Some(1))?;
    match r {
        Ok(c) => m.serialize_entry("chains", c)?,
        Err(e) => m.serialize_entry("error", e)?,
    }
    m.end()
}

impl ForwardRules {
    /// None found: a gateway that filters nothing on the way through.
    pub fn none() -> ForwardRules {
        ForwardRules {
            nft: Ok(Vec::new()),
            legacy_tables: Vec::new(),
        }
    }

    /// What bypass would skip, one phrase each (empty: nothing; also empty when the
    /// ruleset could not be read: see [`ForwardRules::nft`]).
    pub fn skipped(&self) -> Vec<String> {
        let mut out: Vec<String> = match &self.nft {
            Ok(c) => c
                .iter()
                .filter(|c| c.matters())
                .map(HookChain::describe)
                .collect(),
            Err(_) => Vec::new(),
        };
        out.extend(
            self.legacy_tables
                .iter()
                .map(|t| format!("iptables-legacy table {t}")),
        );
        out
    }

    /// Reads them on this host: `nft -j list ruleset` and /proc/net/ip*_tables_names.
    pub fn read() -> ForwardRules {
        let nft = match std::process::Command::new("nft")
            .args(["-j", "list", "ruleset"])
            .output()
        {
            Ok(o) if o.status.success() => parse_nft(&String::from_utf8_lossy(&o.stdout)),
            Ok(o) => Err(format!(
                "nft -j list ruleset: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("nft: {e}")),
        };
        let mut legacy_tables = Vec::new();
        for (v, f) in [
            ("ipv4", "/proc/net/ip_tables_names"),
            ("ipv6", "/proc/net/ip6_tables_names"),
        ] {
            if let Ok(s) = std::fs::read_to_string(f) {
                legacy_tables.extend(s.split_whitespace().map(|t| format!("{v} {t}")));
            }
        }
        ForwardRules { nft, legacy_tables }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of a gateway with a forward filter and a masquerade (nft
    /// 1.0.6's output, shortened to the fields read).
    const GATEWAY: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "filter", "handle": 1}},
      {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
      {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "filter", "name": "sip", "handle": 3}},
      {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": []}},
      {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 5, "expr": []}},
      {"rule": {"family": "inet", "table": "filter", "chain": "forward", "handle": 6, "expr": []}},
      {"rule": {"family": "inet", "table": "filter", "chain": "sip", "handle": 7, "expr": []}},
      {"table": {"family": "ip", "name": "nat", "handle": 2}},
      {"chain": {"family": "ip", "table": "nat", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "nat", "name": "prerouting", "handle": 2, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
      {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "handle": 3, "expr": []}}
    ]}"#;

    #[test]
    fn forwarding_hooks_only_with_their_rule_counts() {
        let c = parse_nft(GATEWAY).unwrap();
        let names: Vec<_> = c
            .iter()
            .map(|c| (c.chain.as_str(), c.rules, c.matters()))
            .collect();
        // input is not on the forwarding path; sip is a regular chain (reached by a
        // jump from forward, whose rules count for forward).
        assert_eq!(
            names,
            [
                ("forward", 2, true),
                ("postrouting", 1, true),
                ("prerouting", 0, false)
            ]
        );
        let r = ForwardRules {
            nft: Ok(c),
            legacy_tables: vec!["ipv4 filter".into()],
        };
        assert_eq!(
            r.skipped(),
            [
                "inet filter forward (policy drop, 2 rules)",
                "ip nat postrouting (policy accept, 1 rule)",
                "iptables-legacy table ipv4 filter"
            ]
        );
    }

    #[test]
    fn an_empty_ruleset_skips_nothing_and_garbage_is_an_error() {
        let c = parse_nft(r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#).unwrap();
        assert!(c.is_empty());
        assert!(ForwardRules::none().skipped().is_empty());
        assert!(parse_nft("Error: syntax error").is_err());
        assert!(parse_nft(r#"{"other": []}"#).is_err());
    }
}
