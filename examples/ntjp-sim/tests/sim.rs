//! End-to-end tests over real sockets on 127.0.0.1 (mTLS and plain HTTP).

mod support;

use std::time::{Duration, Instant};

use ntjp_sim::{
    BlockConfig, BlockKind, FaultMode, PatientConfig, ProducerConfig, ProducerKind, RouteConfig,
    SimConfig, TemporaryRevokeConfig, NPO_CONTRACTS,
};
use support::*;

fn http_headers(sender: &str) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "text/xml; charset=UTF-8"),
        ("x-vp-sender-id", sender),
    ]
}

#[tokio::test]
async fn twelve_contracts_answer_with_configured_records_over_mtls() {
    let pki = Pki::new();
    let contracts: Vec<&str> = NPO_CONTRACTS.iter().map(|c| c.namespace).collect();
    let mut cfg = base_config(&contracts);
    cfg.http = None;
    cfg.https = Some(pki.https_config());
    let p = &mut cfg.producers[0];
    p.care_providers = vec!["SE-CG-1".into(), "SE-CG-2".into()];
    p.care_units = vec!["SE-CU-1".into(), "SE-CU-2".into()];
    cfg.patients.insert(
        PATIENT.into(),
        PatientConfig {
            records: Some(3),
            dates: vec!["20230101".into(), "20230202".into(), "20230303".into()],
            missing_owner: vec![2],
            ..PatientConfig::default()
        },
    );
    let sim = ntjp_sim::start(cfg).await.expect("start");
    let addr = sim.https_addr().expect("https");
    let client = pki.client(Some(SENDER));

    for spec in NPO_CONTRACTS.iter() {
        let v3 = matches!(spec.short, "CD3" | "LAB4");
        let reply = call(
            addr,
            Some((&pki, &client)),
            &[("content-type", "text/xml; charset=UTF-8")],
            &request(spec.namespace, Some(LA), PATIENT, v3),
        )
        .await;
        assert_eq!(reply.status, 200, "{}: {}", spec.short, reply.body);
        assert!(reply.header("x-skltp-prt").is_some());
        assert_eq!(
            reply.header("x-rivta-routing-history"),
            Some(format!("{SENDER}#ntjp-sim").as_str())
        );
        let doc = reply.xml();
        let root = doc.body_root().expect("body root");
        assert_eq!(root.name, format!("{}Response", root_name(spec.namespace)));
        let records: Vec<_> = root.children_named(spec.record).collect();
        assert_eq!(records.len(), 3, "{}", spec.short);
        for (i, (cg, cu, date)) in [
            ("SE-CG-1", "SE-CU-1", "20230101"),
            ("SE-CG-2", "SE-CU-2", "20230202"),
        ]
        .iter()
        .enumerate()
        {
            let r = records[i];
            assert!(has_text(r, cg), "{} record {i} lacks {cg}", spec.short);
            assert!(has_text(r, cu), "{} record {i} lacks {cu}", spec.short);
            assert!(
                has_text(r, &format!("{date}120000")),
                "{} record {i} lacks time for {date}",
                spec.short
            );
            assert!(
                has_text(r, LA),
                "{} record {i} lacks source system",
                spec.short
            );
        }
        // Record 2 is configured without owner ids.
        for owner in [
            "healthcareProfessionalCareGiverHSAId",
            "healthcareProfessionalCareUnitHSAId",
            "accountableHealthcareProvider",
            "accountableCareGiver",
            "accountableCareUnit",
        ] {
            assert!(!has_element(records[2], owner), "{} {owner}", spec.short);
        }
        assert!(
            !reply.body.contains("${"),
            "{}: placeholder left",
            spec.short
        );
    }
    let calls = sim.calls();
    assert_eq!(calls.len(), 12);
    assert!(calls
        .iter()
        .all(|c| c.sender_id.as_deref() == Some(SENDER) && c.fault_code.is_none()));
    sim.shutdown().await;
}

#[tokio::test]
async fn vp_faults_in_processing_order() {
    let pki = Pki::new();
    let ns = NPO_CONTRACTS[2].namespace;
    let mut cfg = base_config(&[ns]);
    cfg.https = Some(pki.https_config());
    cfg.allow_osc_senders = vec!["SE-TRUSTED".into()];
    cfg.reject_unapproved_osc = true;
    let sim = ntjp_sim::start(cfg).await.expect("start");
    let http = sim.http_addr().expect("http");
    let https = sim.https_addr().expect("https");
    let good = request(ns, Some(LA), PATIENT, false);

    // VP002: client certificate without serialNumber.
    let no_serial = pki.client(None);
    call(https, Some((&pki, &no_serial)), &[], &good)
        .await
        .assert_vp_fault("VP002");
    // VP002 on HTTP: no x-vp-sender-id.
    call(http, None, &[], &good).await.assert_vp_fault("VP002");
    // VP003: no logical address.
    call(
        http,
        None,
        &http_headers(SENDER),
        &request(ns, None, PATIENT, false),
    )
    .await
    .assert_vp_fault("VP003");
    // VP004: unknown logical address, even though the sender also lacks permission.
    let r = call(
        http,
        None,
        &http_headers("SE-NOBODY"),
        &request(ns, Some("SE-UNKNOWN"), PATIENT, false),
    )
    .await;
    r.assert_vp_fault("VP004");
    assert!(r.body.contains("<faultcode>SOAP-ENV:Client</faultcode>"));
    // VP007: routed but not authorised (a Server fault).
    let r = call(http, None, &http_headers("SE-NOBODY"), &good).await;
    r.assert_vp_fault("VP007");
    assert!(r.body.contains("<faultcode>SOAP-ENV:Server</faultcode>"));
    assert!(r.body.contains("<detailString>Authorization missing"));
    // VP013: unapproved sender sets the original consumer header.
    let mut h = http_headers(SENDER);
    h.push(("x-rivta-original-serviceconsumer-hsaid", "SE-SPOOF"));
    call(http, None, &h, &good).await.assert_vp_fault("VP013");
    // A trusted sender may set it (and is then stopped by the missing permission).
    let mut h = http_headers("SE-TRUSTED");
    h.push(("x-rivta-original-serviceconsumer-hsaid", "SE-REAL"));
    call(http, None, &h, &good).await.assert_vp_fault("VP007");
    // VP014: our instance id already in the routing history.
    let mut h = http_headers(SENDER);
    h.push(("x-rivta-routing-history", "SE-A#ntjp-sim#SE-B"));
    call(http, None, &h, &good).await.assert_vp_fault("VP014");
    // VP015: malformed XML; the correlation id is echoed.
    let mut h = http_headers(SENDER);
    h.push(("x-skltp-correlation-id", "corr-123"));
    let r = call(
        http,
        None,
        &h,
        "<soapenv:Envelope><soapenv:Body></soapenv:Envelope>",
    )
    .await;
    r.assert_vp_fault("VP015");
    assert_eq!(r.header("x-skltp-correlation-id"), Some("corr-123"));
    // Existing routing history is kept and extended.
    let mut h = http_headers(SENDER);
    h.push(("x-rivta-routing-history", "SE-A#rtp"));
    let r = call(http, None, &h, &good).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-rivta-routing-history"),
        Some("SE-A#rtp#ntjp-sim")
    );

    let codes: Vec<Option<String>> = sim.calls().into_iter().map(|c| c.fault_code).collect();
    let expected = [
        "VP002", "VP002", "VP003", "VP004", "VP007", "VP013", "VP007", "VP014", "VP015",
    ];
    for (i, code) in expected.iter().enumerate() {
        assert_eq!(codes[i].as_deref(), Some(*code), "call {i}");
    }
    assert_eq!(codes[expected.len()], None);
    sim.shutdown().await;
}

#[tokio::test]
async fn vp011_for_peer_not_on_whitelist() {
    let ns = NPO_CONTRACTS[0].namespace;
    let mut cfg = base_config(&[ns]);
    if let Some(h) = cfg.http.as_mut() {
        h.ip_whitelist = vec!["10.".into()];
    }
    let sim = ntjp_sim::start(cfg).await.expect("start");
    call(
        sim.http_addr().expect("http"),
        None,
        &http_headers(SENDER),
        &request(ns, Some(LA), PATIENT, false),
    )
    .await
    .assert_vp_fault("VP011");
    sim.shutdown().await;
}

#[tokio::test]
async fn default_route_latency_and_recorded_headers() {
    let ns = NPO_CONTRACTS[0].namespace;
    let mut cfg = base_config(&[]);
    let mut slow = ProducerConfig::new("slow");
    slow.latency_ms = 300;
    cfg.producers.push(slow);
    cfg.routes.push(RouteConfig {
        contract: ns.into(),
        logical_address: "*".into(),
        producer: "slow".into(),
    });
    cfg.permissions.push(ntjp_sim::PermissionConfig {
        sender: SENDER.into(),
        contract: ns.into(),
        logical_address: "*".into(),
    });
    let sim = ntjp_sim::start(cfg).await.expect("start");
    let addr = sim.http_addr().expect("http");
    let mut h = http_headers(SENDER);
    h.push(("x-rivta-TEST1", "abc"));
    h.push(("x-rivta-acting-on-behalf-of-hsaid", "SE-AOB"));
    let body = request(ns, Some("SE-ANY"), PATIENT, false);
    let started = Instant::now();
    let r = call(addr, None, &h, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let prt: u64 = r
        .header("x-skltp-prt")
        .and_then(|v| v.parse().ok())
        .expect("prt");
    assert!(prt >= 300, "prt {prt}");
    assert!(r.header("x-skltp-correlation-id").is_some());

    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.header("X-RIVTA-TEST1"), Some("abc"));
    assert_eq!(
        c.header("x-rivta-acting-on-behalf-of-hsaid"),
        Some("SE-AOB")
    );
    assert_eq!(c.body, body.as_bytes());
    assert_eq!(c.contract.as_deref(), Some(ns));
    assert_eq!(c.logical_address.as_deref(), Some("SE-ANY"));
    assert_eq!(c.producer.as_deref(), Some("slow"));
    assert_eq!(c.method, "POST");
    assert_eq!(c.path, "/vp/test");

    // The same over the simulator's own API, then reset.
    let api = tokio::time::timeout(TIMEOUT, send(addr, None, "GET", "/_sim/calls", &[], ""))
        .await
        .expect("bounded")
        .expect("ok");
    assert_eq!(api.status, 200);
    let json: serde_json::Value = serde_json::from_str(&api.body).expect("json");
    assert_eq!(json[0]["sender_id"], SENDER);
    assert_eq!(json[0]["contract"], ns);
    let reset = tokio::time::timeout(TIMEOUT, send(addr, None, "POST", "/_sim/reset", &[], ""))
        .await
        .expect("bounded")
        .expect("ok");
    assert_eq!(reset.status, 204);
    assert!(sim.calls().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn producer_fault_modes() {
    let ns = NPO_CONTRACTS[4].namespace;
    let mut cfg = base_config(&[]);
    for (name, mode) in [
        ("f-soap", FaultMode::SoapFault),
        ("f-503", FaultMode::Http503),
        ("f-reset", FaultMode::Reset),
        ("f-timeout", FaultMode::Timeout),
    ] {
        let mut p = ProducerConfig::new(name);
        p.fault = mode;
        cfg.producers.push(p);
        cfg.routes.push(RouteConfig {
            contract: ns.into(),
            logical_address: name.into(),
            producer: name.into(),
        });
    }
    cfg.permissions.push(ntjp_sim::PermissionConfig {
        sender: SENDER.into(),
        contract: ns.into(),
        logical_address: "*".into(),
    });
    let sim = ntjp_sim::start(cfg).await.expect("start");
    let addr = sim.http_addr().expect("http");
    let h = http_headers(SENDER);

    let r = call(addr, None, &h, &request(ns, Some("f-soap"), PATIENT, false)).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("http://schemas.xmlsoap.org/soap/envelope/"));
    assert!(r.body.contains("<faultstring"), "{}", r.body);

    let r = call(addr, None, &h, &request(ns, Some("f-503"), PATIENT, false)).await;
    assert_eq!(r.status, 503);
    assert!(!r.body.contains("Envelope"));

    let reset = tokio::time::timeout(
        TIMEOUT,
        send(
            addr,
            None,
            "POST",
            "/",
            &h,
            &request(ns, Some("f-reset"), PATIENT, false),
        ),
    )
    .await
    .expect("bounded");
    assert!(reset.is_err(), "reset must break the exchange: {reset:?}");

    let hang = tokio::time::timeout(
        Duration::from_millis(800),
        send(
            addr,
            None,
            "POST",
            "/",
            &h,
            &request(ns, Some("f-timeout"), PATIENT, false),
        ),
    )
    .await;
    assert!(hang.is_err(), "timeout mode must not answer");

    let faults: Vec<Option<String>> = sim.calls().into_iter().map(|c| c.fault_code).collect();
    assert_eq!(
        faults,
        vec![
            Some("soap-fault".to_string()),
            Some("http-503".to_string()),
            Some("reset".to_string()),
            Some("timeout".to_string())
        ]
    );
    // Shutdown must not wait for the hanging producer.
    tokio::time::timeout(Duration::from_secs(8), sim.shutdown())
        .await
        .expect("shutdown is bounded");
}

const BLOCKS_NS: &str = "urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2";
const STORE_LOG_NS: &str = "urn:riv:ehr:log:store:StoreLogResponder:1";

fn service_config() -> SimConfig {
    let mut cfg = base_config(&[BLOCKS_NS, STORE_LOG_NS]);
    cfg.routes.clear();
    for (ns, name, kind) in [
        (BLOCKS_NS, "blocks", ProducerKind::Blocks),
        (STORE_LOG_NS, "log", ProducerKind::Log),
    ] {
        let mut p = ProducerConfig::new(name);
        p.kind = kind;
        cfg.producers.push(p);
        cfg.routes.push(RouteConfig {
            contract: ns.into(),
            logical_address: "*".into(),
            producer: name.into(),
        });
    }
    cfg.blocks = vec![
        BlockConfig {
            patient_id: PATIENT.into(),
            block_id: "b-1".into(),
            block_type: BlockKind::Outer,
            care_provider: "SE-CG-1".into(),
            care_unit: None,
            start: Some("2020-01-01T00:00:00".into()),
            end: None,
            excluded_info_types: vec!["upp".into()],
            temporary_revokes: vec![TemporaryRevokeConfig {
                care_unit: "SE-CU-9".into(),
                employee: Some("SE-EMP-1".into()),
                end_date: "2099-01-01T00:00:00".into(),
            }],
        },
        BlockConfig {
            patient_id: "190101010101".into(),
            block_id: "other".into(),
            block_type: BlockKind::Inner,
            care_provider: "SE-CG-2".into(),
            care_unit: Some("SE-CU-2".into()),
            start: None,
            end: None,
            excluded_info_types: Vec::new(),
            temporary_revokes: Vec::new(),
        },
    ];
    cfg
}

#[tokio::test]
async fn block_service_answers_configured_blocks() {
    let sim = ntjp_sim::start(service_config()).await.expect("start");
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><a:LogicalAddress xmlns:a=\"urn:riv:itintegration:registry:1\">SE-CG-1</a:LogicalAddress></s:Header><s:Body><r:GetBlocksForPatient xmlns:r=\"{BLOCKS_NS}\"><r:PatientId>{PATIENT}</r:PatientId></r:GetBlocksForPatient></s:Body></s:Envelope>"
    );
    let r = call(
        sim.http_addr().expect("http"),
        None,
        &http_headers(SENDER),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.xml();
    let header = doc
        .body_root()
        .and_then(|root| root.child("GetBlocksForPatient"))
        .expect("BlockHeader");
    assert_eq!(
        header.text_at(&["Result", "ResultCode"]).as_deref(),
        Some("OK")
    );
    let blocks: Vec<_> = header.children_named("Blocks").collect();
    assert_eq!(blocks.len(), 1);
    let b = blocks[0];
    assert_eq!(b.text_at(&["BlockId"]).as_deref(), Some("b-1"));
    assert_eq!(b.text_at(&["BlockType"]).as_deref(), Some("Outer"));
    assert_eq!(
        b.text_at(&["InformationCareProviderId"]).as_deref(),
        Some("SE-CG-1")
    );
    assert_eq!(
        b.text_at(&["InformationStartDate"]).as_deref(),
        Some("2020-01-01T00:00:00")
    );
    assert_eq!(
        b.text_at(&["ExcludedInformationTypes", "InfoTypeId"])
            .as_deref(),
        Some("upp")
    );
    assert_eq!(
        b.text_at(&["TemporaryRevokes", "RevokedForCareUnitId"])
            .as_deref(),
        Some("SE-CU-9")
    );
    assert_eq!(
        b.text_at(&["TemporaryRevokes", "RevokedForEmployeeId"])
            .as_deref(),
        Some("SE-EMP-1")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn store_log_entries_are_kept_and_log_service_can_be_down() {
    let sim = ntjp_sim::start(service_config()).await.expect("start");
    let addr = sim.http_addr().expect("http");
    let body = |id: &str| {
        format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><a:LogicalAddress xmlns:a=\"urn:riv:itintegration:registry:1\">SE-CG-1</a:LogicalAddress></s:Header><s:Body><r:StoreLogRequest xmlns:r=\"{STORE_LOG_NS}\" xmlns:l=\"urn:riv:ehr:log:1\"><r:Log><l:LogId>{id}</l:LogId><l:System><l:SystemId>SE-SYS</l:SystemId></l:System><l:Activity><l:ActivityType>Läsa</l:ActivityType><l:StartDate>2024-01-01T10:00:00</l:StartDate><l:Purpose>Vård och behandling</l:Purpose></l:Activity><l:User><l:UserId>SE-EMP-1</l:UserId><l:CareProvider><l:CareProviderId>SE-CG-9</l:CareProviderId></l:CareProvider><l:CareUnit><l:CareUnitId>SE-CU-9</l:CareUnitId></l:CareUnit></l:User><l:Resources><l:Resource><l:ResourceType>Journal</l:ResourceType><l:Patient><l:PatientId>{PATIENT}</l:PatientId></l:Patient><l:CareProvider><l:CareProviderId>SE-CG-1</l:CareProviderId></l:CareProvider></l:Resource></l:Resources></r:Log></r:StoreLogRequest></s:Body></s:Envelope>"
        )
    };
    let h = http_headers(SENDER);

    sim.set_producer_fault("log", FaultMode::Http503);
    let r = call(addr, None, &h, &body("down")).await;
    assert_eq!(r.status, 503);
    assert!(sim.store_log_entries().is_empty());

    sim.set_producer_fault("log", FaultMode::None);
    let r = call(addr, None, &h, &body("log-1")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .body
        .contains("<ResultCode xmlns=\"urn:riv:ehr:log:1\">OK</ResultCode>"));
    let entries = sim.store_log_entries();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.log_id.as_deref(), Some("log-1"));
    assert_eq!(e.activity_type.as_deref(), Some("Läsa"));
    assert_eq!(e.user_care_unit.as_deref(), Some("SE-CU-9"));
    assert_eq!(e.resources[0].patient_id.as_deref(), Some(PATIENT));
    assert_eq!(e.resources[0].care_provider.as_deref(), Some("SE-CG-1"));
    assert_eq!(e.sender_id.as_deref(), Some(SENDER));

    let api = tokio::time::timeout(TIMEOUT, send(addr, None, "GET", "/_sim/logs", &[], ""))
        .await
        .expect("bounded")
        .expect("ok");
    let json: serde_json::Value = serde_json::from_str(&api.body).expect("json");
    assert_eq!(json[0]["log_id"], "log-1");
    sim.shutdown().await;
}

#[tokio::test]
async fn other_sample_contracts_answer_as_is() {
    let ns = "urn:riv:ehr:accesscontrol:AssertCareEngagementResponder:1";
    let sim = ntjp_sim::start(base_config(&[ns])).await.expect("start");
    let samples = ntjp_sim::config::default_samples_dir();
    let req = std::fs::read_to_string(samples.join("05_AssertCareEngagement_request.xml"))
        .expect("sample")
        .replace(">LA1<", &format!(">{LA}<"));
    let r = call(
        sim.http_addr().expect("http"),
        None,
        &http_headers(SENDER),
        &req,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .body
        .contains("<urn:HasCareEngagement>True</urn:HasCareEngagement>"));
    assert_eq!(sim.calls()[0].logical_address.as_deref(), Some(LA));
    sim.shutdown().await;
}

#[test]
fn demo_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ntjp-sim.toml");
    let cfg = SimConfig::from_file(&path).expect("demo config is valid");
    assert_eq!(
        cfg.routes
            .iter()
            .filter(|r| r.logical_address != "*")
            .count(),
        12
    );
    assert!(cfg.https.is_some() && cfg.http.is_some());
    for spec in NPO_CONTRACTS.iter() {
        assert!(cfg.routes.iter().any(|r| r.contract == spec.namespace));
        assert!(cfg
            .permissions
            .iter()
            .any(|p| p.contract == spec.namespace && p.sender == SENDER));
    }
    assert_eq!(cfg.patients.get(PATIENT).and_then(|p| p.records), Some(3));
}
