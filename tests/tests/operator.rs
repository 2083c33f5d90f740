//! The operator's view, after known traffic through a real NAT: exact counters, a NAT
//! rebinding (the NAT forgets its mappings mid-way), `rport stats --nat`, bindings, and
//! state that survives a restart of the daemon (pinned maps).
use rport_tests::{
    ns::{Bpffs, can_run, sh},
    sip::{Kamailio, Server, refresh_scenario, sipp_client_with},
    topo::{GW_INSIDE, GW_OUTSIDE, NatTopology, PHONE, Rport},
};

#[test]
fn counters_rebinding_diagnosis_and_restart() {
    if !can_run("operator", &["ip", "nft", "kamailio", "sipp", "conntrack"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    // One phone refreshing its registration: one Call-ID for all its REGISTERs (RFC 3261 §10.2),
    // so one SIPp call of two REGISTERs; -cid_str keeps the Call-ID across the two SIPp runs.
    let scen = refresh_scenario(2, 200);
    let cid = ["-cid_str", "phone-1@192.168.1.50"];
    let refresh = || {
        sipp_client_with(
            &t.phone,
            &scen,
            &t.dir,
            PHONE,
            5060,
            "198.51.100.10:5060",
            1,
            10,
            &[],
            &cid,
        )
        .unwrap()
    };
    let r = refresh();
    assert_eq!((r.successful, r.failed), (1, 0));
    let s = rport.stats().unwrap();
    for (group, name, want) in [
        ("xdp", "sip_requests", 2),
        ("xdp", "sip_responses", 2),
        ("xdp", "rport_empty", 2),
        ("xdp", "sent_by_private", 2),
        ("xdp", "source_port_differs", 2),
        ("xdp", "to_userspace", 2),
        ("xdp", "response_steered", 2),
        ("xdp", "userspace_unavailable", 0),
        ("daemon", "rewritten", 2),
        ("daemon", "received_added", 2),
        ("daemon", "rport_filled", 2),
        ("daemon", "forwarded", 2),
        ("daemon", "send_errors", 0),
        ("daemon", "xsk_ring_full", 0),
        ("daemon", "xsk_rx_dropped", 0),
        ("daemon", "fill_starved", 0),
    ] {
        assert_eq!(s[group][name], want, "{group}.{name} in {s}");
    }
    assert_eq!(s["bindings_live"], 2);
    assert_eq!(s["xdp"]["binding_new"], 2);
    assert_eq!(s["bindings_evicted"], 0);
    assert_eq!(s["nat"]["rebindings"], 0);
    let first_port = rport.bindings().unwrap()[0]["source"]
        .as_str()
        .unwrap()
        .to_string();

    // The NAT forgets: the next REGISTER leaves from a new public port.
    t.forget_nat_mappings().unwrap();
    let r = refresh();
    assert_eq!((r.successful, r.failed), (1, 0));
    let s = rport.stats().unwrap();
    assert_eq!(s["nat"]["rebindings"], 1, "{}", s["nat"]);
    let ex = &s["nat"]["recent_rebindings"][0];
    assert_eq!(ex["client"], "phone-1@192.168.1.50");
    assert_eq!(ex["old"], first_port.as_str());
    assert_ne!(ex["new"], first_port.as_str());
    assert!(ex["new"].as_str().unwrap().starts_with("203.0.113.1:"));
    let diag = sh(t.gw.cmd(&rport.bin).args(["stats", "--nat"])).unwrap();
    assert!(
        diag.contains("100% of 4 requests came from behind NAT"),
        "{diag}"
    );
    assert!(diag.contains("1 rebindings"), "{diag}");
    let b = rport.bindings().unwrap();
    assert_eq!(b.as_array().unwrap().len(), 4);
    let sources: std::collections::BTreeSet<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 2, "two NAT mappings over time: {sources:?}");
    // The table view has every group.
    let table = sh(t.gw.cmd(&rport.bin).arg("stats")).unwrap();
    for g in ["TRAFFIC", "REWRITE", "STEERING", "NAT", "ERRORS"] {
        assert!(table.contains(g), "{table}");
    }

    // Restart: bindings and XDP counters live in pinned maps and survive.
    let (bins, log, ns_pins) = (rport.bin.clone(), rport.log.clone(), pins);
    let mut rport = rport;
    assert!(rport.proc.stop().unwrap().success());
    drop(rport);
    let rport = Rport::start(&t.gw, GW_OUTSIDE, GW_INSIDE, &ns_pins, &log, &[]).unwrap();
    let s = rport.stats().unwrap();
    assert_eq!(s["bindings_live"], 4, "bindings survive a restart");
    assert_eq!(
        s["xdp"]["sip_requests"], 4,
        "XDP counters survive a restart"
    );
    assert_eq!(s["daemon"]["rewritten"], 0, "daemon counters start afresh");
    let _ = bins;
}
