//! The shipped policies `look-back`, `caller-filter` and `osc-aob` end to end: the proxy
//! with the built components in front of the simulator, real TLS on loopback, the real
//! sample requests. What NTjP received is read from the simulator's record of calls, what
//! the consumer received by parsing the answer.
//!
//! The look-back policy reads today's date (Europe/Stockholm) from the host's clock, so
//! every expected date here is computed from the current date, never written down.

use http::StatusCode;
use jiff::civil::Date;
use jiff::{Span, Timestamp};
use ntjp_sim::RecordedCall;
use rtp_proxy::contracts;
use rtp_proxy::response::scan::scan_document;
use rtp_proxy_tests::*;
use serde_json::{json, Value};

const OSC: &str = "x-rivta-original-serviceconsumer-hsaid";
const AOB: &str = "x-rivta-acting-on-behalf-of-hsaid";

const LAB3: &str =
    "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:3";
const MED2: &str =
    "urn:riv:clinicalprocess:activityprescription:actoutcome:GetMedicationHistoryResponder:2";

/// Sample 01: GetCareDocumentation 2 (`timePeriod`, start and end mandatory), logical
/// address `VS-1`, prefixes `urn1:` (responder) and `urn2:` (core).
const CD2_REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
/// Sample 02: GetLaboratoryOrderOutcome 3 (`timePeriod`, start and end optional).
const LAB3_REQUEST: &str = "02_GetLaboratoryOrderOutcome_v3_request.xml";
/// Sample 03: GetMedicationHistory 2 through an aggregating service (`datePeriod`, start
/// and end optional), logical address `5565594230`.
const MED2_REQUEST: &str = "03_GetMedicationHistory_v2_request_aggregating.xml";

/// The simulator's producer for every contract (`sim_toml`); its records' ids are
/// `source-system-<short>-<n>`, n from 1.
const PRODUCER: &str = "source-system";

/// An e-service whose identity an aggregator asserts as the original consumer.
const E_SERVICE: &str = "SE2321000016-EHS1";
/// A principal an aggregator acts on behalf of.
const PRINCIPAL: &str = "SE2321000016-UPPDR";
const VG01: &str = "SE2321000016-VG01";
const VG02: &str = "SE2321000016-VG02";
const VE01: &str = "SE2321000016-VE01";
const VE02: &str = "SE2321000016-VE02";

// ---------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------

/// Today in Sweden, the date the look-back policy works from.
fn today() -> Date {
    Timestamp::now()
        .in_tz("Europe/Stockholm")
        .expect("bundled tzdb")
        .date()
}

/// `day` minus `months` calendar months (a missing day becomes the month's last).
fn months_before(day: Date, months: i64) -> Date {
    day.checked_sub(Span::new().months(months))
        .expect("in range")
}

fn days_before(day: Date, days: i64) -> Date {
    day.checked_sub(Span::new().days(days)).expect("in range")
}

/// `YYYYMMDD`, the RIV-TA DateType.
fn ymd(day: Date) -> String {
    format!("{:04}{:02}{:02}", day.year(), day.month(), day.day())
}

/// Whether the Swedish date is still `day`: a test that straddles midnight cannot check
/// exact dates and says so instead of failing.
fn still(day: Date) -> bool {
    let same = today() == day;
    if !same {
        eprintln!("the date changed during the test; its date checks are skipped");
    }
    same
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A JSON value written as a TOML inline value (keys quoted), so that settings can be
/// written here as the policies' READMEs write them.
fn toml_inline(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), toml_inline(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Null => panic!("TOML has no null"),
        other => other.to_string(),
    }
}

/// One `[[route.policy]]` with a shipped policy (`policies/<dir>`) and its settings.
fn policy(dir: &str, settings: Value) -> String {
    let file = shipped_policy_wasm(dir);
    format!(
        "\n[[route.policy]]\nfile = {}\nfailure_mode = \"fail-closed\"\nsettings = {}\n",
        Value::from(file.display().to_string()),
        toml_inline(&settings)
    )
}

/// One route for every call, with these policies in order.
fn route(policies: &[String]) -> String {
    format!("\n[[route]]\nname = \"npo\"\n{}", policies.concat())
}

/// The test patient's records in the simulator: one (date, care provider, care unit) per
/// record, in answer order. Every time element of a record carries its date.
fn patient(records: &[(Date, &str, &str)]) -> String {
    let list = |f: &dyn Fn(&(Date, &str, &str)) -> String| {
        let items: Vec<String> = records.iter().map(|r| format!("\"{}\"", f(r))).collect();
        items.join(", ")
    };
    format!(
        "\n[patients.\"{}\"]\nrecords = {}\ndates = [{}]\ncare_providers = [{}]\ncare_units = [{}]\n",
        ids::PATIENT,
        records.len(),
        list(&|r| ymd(r.0)),
        list(&|r| r.1.to_owned()),
        list(&|r| r.2.to_owned()),
    )
}

/// The simulator (with `sim_extra`) and the proxy (with `routes`), on loopback.
async fn start(sim_extra: &str, routes: &str) -> Stack {
    let pki = Pki::generate();
    let sim = start_sim(&sim_toml(&pki, sim_extra)).await;
    let url = format!("https://127.0.0.1:{}", sim.https_addr().unwrap().port());
    let proxy = start_proxy(&proxy_toml(&pki, &url, routes)).await;
    Stack { pki, sim, proxy }
}

// ---------------------------------------------------------------------------------------
// Calls and what came of them
// ---------------------------------------------------------------------------------------

fn text(name: &str) -> String {
    String::from_utf8(sample(name)).expect("UTF-8 sample")
}

/// A sample as a call (the path never routes; the body's namespace does).
fn soap(body: String) -> Call<'static> {
    Call::soap(body.into_bytes())
}

async fn send(stack: &Stack, client: &str, call: Call<'_>) -> Reply {
    post_tls(
        stack.proxy.https_addr.unwrap(),
        &stack.pki.client(Some(client)),
        call,
    )
    .await
    .expect("the proxy answers")
}

/// The calls of contract `ns` that reached the simulator (NTjP).
fn reached(stack: &Stack, ns: &str) -> Vec<RecordedCall> {
    stack
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.contract.as_deref() == Some(ns))
        .collect()
}

/// The one call of contract `ns` that reached NTjP.
fn forwarded(stack: &Stack, ns: &str) -> RecordedCall {
    let calls = reached(stack, ns);
    assert_eq!(calls.len(), 1, "one {ns} call reaches NTjP");
    calls.into_iter().next().unwrap()
}

/// The records of an answer by a full parse, which also proves it well-formed.
fn records(ns: &str, reply: &Reply) -> Vec<rtp_proxy::policy::wit::RecordSummary> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let contract = contracts::lookup(ns).expect("an NPÖ contract");
    scan_document(contract, &reply.body)
        .unwrap_or_else(|e| panic!("the answer is not well-formed: {e}\n{}", reply.text()))
        .into_iter()
        .map(|r| r.summary)
        .collect()
}

/// The record ids of an answer, in order.
fn record_ids(ns: &str, reply: &Reply) -> Vec<String> {
    records(ns, reply)
        .into_iter()
        .map(|r| r.id.unwrap_or_default())
        .collect()
}

/// The ids the simulator gives records `n` (1-based) of a contract (`CD2`, `LAB3`, ...).
fn ids_of(short: &str, numbers: &[usize]) -> Vec<String> {
    numbers
        .iter()
        .map(|n| format!("{PRODUCER}-{short}-{n}"))
        .collect()
}

/// A refusal: HTTP 500, the code first in `faultstring`, and no personal data.
fn assert_fault(reply: &Reply, code: &str) {
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text()
    );
    reply.assert_fault_code(code);
    assert!(
        !reply.text().contains(ids::PATIENT),
        "no personnummer in a fault: {}",
        reply.text()
    );
}

/// Sample 01 with a `timePeriod` (start, end) where the schema puts it.
fn cd2_with_period(start: &str, end: &str) -> String {
    text(CD2_REQUEST).replacen(
        "</urn1:patientId>",
        &format!(
            "</urn1:patientId>\n         <urn1:timePeriod><urn2:start>{start}</urn2:start><urn2:end>{end}</urn2:end></urn1:timePeriod>"
        ),
        1,
    )
}

// ---------------------------------------------------------------------------------------
// look-back
// ---------------------------------------------------------------------------------------

mod look_back {
    use super::*;

    fn look_back(settings: Value) -> String {
        route(&[policy("look-back", settings)])
    }

    /// Four records for the patient: last month, on the 36-month limit day, the day
    /// before it, and five years ago.
    fn dated_records(today: Date) -> String {
        let limit = months_before(today, 36);
        patient(&[
            (months_before(today, 1), VG01, VE01),
            (limit, VG02, VE02),
            (days_before(limit, 1), VG01, VE01),
            (months_before(today, 60), VG02, VE02),
        ])
    }

    #[tokio::test]
    async fn clamping_inserts_the_contracts_period_at_its_schema_position() {
        let stack = start("", &look_back(json!({ "default": "36 months" }))).await;
        let day = today();

        // GetCareDocumentation 2: `timePeriod` with both start and end (mandatory), between
        // patientId and sourceSystemHSAid.
        let cd2 = text(CD2_REQUEST).replacen(
            "</urn1:patientId>",
            "</urn1:patientId>\n         <urn1:sourceSystemHSAid>VS-1</urn1:sourceSystemHSAid>",
            1,
        );
        let reply = send(&stack, "consumer", soap(cd2.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        // GetLaboratoryOrderOutcome 3: `timePeriod`, start only (end optional).
        let reply = send(&stack, "consumer", soap(text(LAB3_REQUEST))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        // GetMedicationHistory 2: `datePeriod`, start only.
        let reply = send(&stack, "consumer", soap(text(MED2_REQUEST))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        if !still(day) {
            return;
        }
        let limit = ymd(months_before(day, 36));
        let today = ymd(day);

        // Every other byte is the caller's.
        let inserted = |original: &str, period: String| {
            original.replacen(
                "</urn1:patientId>",
                &format!("</urn1:patientId>{period}"),
                1,
            )
        };
        let seen = forwarded(&stack, CD2).body_text();
        assert_eq!(
            seen,
            inserted(
                &cd2,
                format!("<urn1:timePeriod><urn2:start>{limit}</urn2:start><urn2:end>{today}</urn2:end></urn1:timePeriod>")
            )
        );
        let period_at = seen.find("<urn1:timePeriod>").unwrap();
        assert!(seen.find("</urn1:patientId>").unwrap() < period_at);
        assert!(period_at < seen.find("<urn1:sourceSystemHSAid>").unwrap());

        assert_eq!(
            forwarded(&stack, LAB3).body_text(),
            inserted(
                &text(LAB3_REQUEST),
                format!("<urn1:timePeriod><urn2:start>{limit}</urn2:start></urn1:timePeriod>")
            )
        );
        assert_eq!(
            forwarded(&stack, MED2).body_text(),
            inserted(
                &text(MED2_REQUEST),
                format!("<urn1:datePeriod><urn2:start>{limit}</urn2:start></urn1:datePeriod>")
            )
        );
    }

    #[tokio::test]
    async fn an_older_start_is_clamped_and_a_start_inside_the_limit_left_alone() {
        let stack = start("", &look_back(json!({ "default": "36 months" }))).await;
        let day = today();
        let end = ymd(day);

        let older = cd2_with_period("20100101", &end);
        let reply = send(&stack, "consumer", soap(older.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        if !still(day) {
            return;
        }
        let limit = ymd(months_before(day, 36));
        assert_eq!(
            forwarded(&stack, CD2).body_text(),
            older.replace("20100101", &limit),
            "the start raised to the limit, the end and every other byte kept"
        );

        stack.sim.reset();
        let inside = cd2_with_period(&ymd(months_before(day, 35)), &end);
        let reply = send(&stack, "consumer", soap(inside.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(forwarded(&stack, CD2).body_text(), inside);
    }

    #[tokio::test]
    async fn a_period_ending_before_the_limit_is_refused_even_when_clamping() {
        let stack = start("", &look_back(json!({ "default": "36 months" }))).await;
        let reply = send(
            &stack,
            "consumer",
            soap(cd2_with_period("20100101", "20150101")),
        )
        .await;
        assert_fault(&reply, "RTP101");
        assert!(reply.text().contains("ends before"), "{}", reply.text());
        assert!(reached(&stack, CD2).is_empty(), "NTjP never sees the call");
    }

    #[tokio::test]
    async fn reject_mode_answers_rtp101_and_ntjp_never_sees_the_call() {
        let settings = json!({ "default": "36 months", "mode": "reject" });
        let stack = start("", &look_back(settings)).await;
        let day = today();

        let reply = send(&stack, "consumer", soap(text(CD2_REQUEST))).await;
        assert_fault(&reply, "RTP101");
        let fault = reply.text();
        assert!(
            fault.contains("GetCareDocumentation 2") && fault.contains("36 months"),
            "{fault}"
        );
        if still(day) {
            let limit = ymd(months_before(day, 36));
            assert!(
                fault.contains(&limit),
                "the fault names the limit date: {fault}"
            );
        }
        let reply = send(
            &stack,
            "consumer",
            soap(cd2_with_period("20100101", &ymd(day))),
        )
        .await;
        assert_fault(&reply, "RTP101");
        assert!(
            reached(&stack, CD2).is_empty(),
            "NTjP never sees a refused call"
        );

        // A period inside the limit passes, untouched.
        let inside = cd2_with_period(&ymd(months_before(day, 12)), &ymd(day));
        let reply = send(&stack, "consumer", soap(inside.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(forwarded(&stack, CD2).body_text(), inside);
    }

    #[tokio::test]
    async fn records_older_than_the_limit_are_dropped_from_the_answer() {
        let day = today();
        let stack = start(
            &dated_records(day),
            &look_back(json!({ "default": "36 months" })),
        )
        .await;
        let cd2 = send(&stack, "consumer", soap(text(CD2_REQUEST))).await;
        let lab3 = send(&stack, "consumer", soap(text(LAB3_REQUEST))).await;
        let med2 = send(&stack, "consumer", soap(text(MED2_REQUEST))).await;
        if !still(day) {
            return;
        }
        // The simulator answers all four whatever the period says (a producer ignoring
        // the filter): the policy drops the two before the limit day and keeps the one on it.
        assert_eq!(record_ids(CD2, &cd2), ids_of("CD2", &[1, 2]));
        assert_eq!(record_ids(LAB3, &lab3), ids_of("LAB3", &[1, 2]));
        let dropped = ymd(days_before(months_before(day, 36), 1));
        for reply in [&cd2, &lab3] {
            let text = reply.text();
            assert!(!text.contains(&dropped), "{text}");
            assert!(
                text.contains("<x:resultCode>OK</x:resultCode>")
                    || text.contains("<c:resultCode>OK</c:resultCode>"),
                "{text}"
            );
        }
        // A prescription is an interval from its start to endOfTreatment: without an end it
        // is ongoing, and no start is too old for it.
        assert_eq!(record_ids(MED2, &med2), ids_of("MED2", &[1, 2, 3, 4]));
    }

    #[tokio::test]
    async fn an_unlimited_contract_override_passes_everything() {
        let day = today();
        let settings = json!({
            "default": "36 months",
            "contracts": { "GetCareDocumentation": "unlimited" }
        });
        let stack = start(&dated_records(day), &look_back(settings)).await;
        let cd2 = send(&stack, "consumer", soap(text(CD2_REQUEST))).await;
        assert_eq!(record_ids(CD2, &cd2), ids_of("CD2", &[1, 2, 3, 4]));
        assert_eq!(
            forwarded(&stack, CD2).body,
            sample(CD2_REQUEST),
            "no period inserted"
        );
        // The default still holds for the other contracts.
        let lab3 = send(&stack, "consumer", soap(text(LAB3_REQUEST))).await;
        if still(day) {
            assert_eq!(record_ids(LAB3, &lab3), ids_of("LAB3", &[1, 2]));
            assert!(forwarded(&stack, LAB3).body_text().contains(&format!(
                "<urn1:timePeriod><urn2:start>{}</urn2:start></urn1:timePeriod>",
                ymd(months_before(day, 36))
            )));
        }
    }
}

// ---------------------------------------------------------------------------------------
// caller-filter
// ---------------------------------------------------------------------------------------

mod caller_filter {
    use super::*;

    /// Ordered rules (first match decides, default deny) and a care-unit restriction for
    /// the region's journal systems.
    fn settings() -> Value {
        json!({
            "default": "deny",
            "rules": [
                { "name": "no-lab-for-journals", "effect": "deny",
                  "consumer": ids::CONSUMER, "contract": "GetLaboratoryOrderOutcome" },
                { "name": "region-journals", "effect": "allow",
                  "consumer": "se2321000016-a1*", "contract": "urn:riv:clinicalprocess:*",
                  "logical_address": ["VS-*", "5565594230"] },
                { "name": "aggregator-care-documentation", "effect": "allow",
                  "consumer": ids::AGGREGATOR, "contract": "GetCareDocumentation" }
            ],
            "care_unit_restrictions": [
                { "name": "journals-without-ve02", "consumer": "SE2321000016-A1*",
                  "care_units": "SE2321000016-VE?2" }
            ]
        })
    }

    /// Four records, alternately owned by VG01/VE01 and VG02/VE02.
    fn owned_records() -> String {
        let day = today();
        patient(&[
            (months_before(day, 1), VG01, VE01),
            (months_before(day, 2), VG02, VE02),
            (months_before(day, 3), VG01, VE01),
            (months_before(day, 4), VG02, VE02),
        ])
    }

    async fn stack() -> Stack {
        start(
            &owned_records(),
            &route(&[policy("caller-filter", settings())]),
        )
        .await
    }

    /// With rules only, the policy asks for no response phase: answers pass unscanned,
    /// byte for byte with their length, and the policy is never called on them.
    #[tokio::test]
    async fn rules_only_needs_no_response_phase_and_answers_pass_unscanned() {
        let mut rules_only = settings();
        rules_only
            .as_object_mut()
            .unwrap()
            .remove("care_unit_restrictions");
        let stack = start(
            &owned_records(),
            &route(&[policy("caller-filter", rules_only)]),
        )
        .await;
        let slots = stack.proxy.reloader().policies().unwrap().slots().to_vec();
        assert!(slots[0].current().wants_request);
        assert!(!slots[0].current().wants_response);
        let reply = send(&stack, "consumer", soap(text(CD2_REQUEST))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(record_ids(CD2, &reply).len(), 4, "nothing is dropped");
        assert_eq!(
            reply
                .headers
                .get(http::header::CONTENT_LENGTH)
                .map(|v| v.to_str().unwrap().to_owned()),
            Some(reply.body.len().to_string()),
            "an unscanned answer keeps its length (a filtered one goes out chunked)"
        );

        // With a restriction the same policy takes the response phase.
        let restricted = start(
            &owned_records(),
            &route(&[policy("caller-filter", settings())]),
        )
        .await;
        let slots = restricted
            .proxy
            .reloader()
            .policies()
            .unwrap()
            .slots()
            .to_vec();
        assert!(slots[0].current().wants_response);
    }

    #[tokio::test]
    async fn an_allow_rule_with_hsa_id_prefix_and_namespace_wildcards_lets_calls_through() {
        let stack = stack().await;
        let cd2 = send(&stack, "consumer", soap(text(CD2_REQUEST))).await;
        assert_eq!(cd2.status, StatusCode::OK, "{}", cd2.text());
        let med2 = send(&stack, "consumer", soap(text(MED2_REQUEST))).await;
        assert_eq!(med2.status, StatusCode::OK, "{}", med2.text());
        assert_eq!(forwarded(&stack, CD2).body, sample(CD2_REQUEST));
        assert_eq!(forwarded(&stack, MED2).body, sample(MED2_REQUEST));
    }

    #[tokio::test]
    async fn a_deny_rule_answers_vp007_naming_the_rule_and_ntjp_never_sees_the_call() {
        let stack = stack().await;
        // The first matching rule decides: `region-journals` would have allowed it.
        let reply = send(&stack, "consumer", soap(text(LAB3_REQUEST))).await;
        assert_fault(&reply, "VP007");
        reply.assert_text_contains("no-lab-for-journals");
        assert!(reached(&stack, LAB3).is_empty(), "NTjP never sees the call");
    }

    #[tokio::test]
    async fn a_call_no_rule_allows_is_denied_by_default() {
        let stack = stack().await;
        // The aggregator is allowed GetCareDocumentation only.
        let reply = send(&stack, "aggregator", soap(text(LAB3_REQUEST))).await;
        assert_fault(&reply, "VP007");
        assert!(reply.text().contains("default deny"), "{}", reply.text());
        // The journal system, at a logical address outside its rule's list.
        let elsewhere = text(CD2_REQUEST).replace(
            "<urn:LogicalAddress>VS-1<",
            "<urn:LogicalAddress>SE2321000016-XYZ<",
        );
        let reply = send(&stack, "consumer", soap(elsewhere)).await;
        assert_fault(&reply, "VP007");
        assert!(reply.text().contains("default deny"), "{}", reply.text());
        assert!(stack.sim.calls().is_empty(), "NTjP never sees the calls");
    }

    #[tokio::test]
    async fn a_care_unit_restriction_drops_the_units_records_as_if_it_was_not_queried() {
        let stack = stack().await;
        // The aggregator has no restriction: the units' records are there to be dropped.
        let all = send(&stack, "aggregator", soap(text(CD2_REQUEST))).await;
        assert_eq!(record_ids(CD2, &all), ids_of("CD2", &[1, 2, 3, 4]));

        let reply = send(&stack, "consumer", soap(text(CD2_REQUEST))).await;
        let kept = records(CD2, &reply);
        assert_eq!(
            kept.iter()
                .map(|r| r.id.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
            ids_of("CD2", &[1, 3])
        );
        assert!(kept
            .iter()
            .all(|r| r.care_unit.as_deref() == Some(VE01)
                && r.care_provider.as_deref() == Some(VG01)));
        let text = reply.text();
        assert!(!text.contains(VE02) && !text.contains(VG02), "{text}");
        assert!(
            text.contains("<x:resultCode>OK</x:resultCode>"),
            "an ordinary answer, not an error: {text}"
        );
        // The request went to NTjP as the consumer sent it: the restriction is not a
        // request filter.
        let seen = reached(&stack, CD2);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|c| c.body == sample(CD2_REQUEST)));
    }
}

// ---------------------------------------------------------------------------------------
// osc-aob
// ---------------------------------------------------------------------------------------

mod osc_aob {
    use super::*;

    async fn stack(settings: Value) -> Stack {
        start("", &route(&[policy("osc-aob", settings)])).await
    }

    /// The aggregator (on the proxy's global `osc_trusted_senders` list, so the host lets
    /// its OSC through to the policy) asserting the e-service as original consumer.
    fn asserted(headers: &[(&'static str, &str)]) -> Call<'static> {
        let mut call = soap(text(CD2_REQUEST));
        for (name, value) in headers {
            call = call.header(name, *value);
        }
        call
    }

    #[tokio::test]
    async fn an_untrusted_callers_osc_is_stripped_to_the_authenticated_caller() {
        let stack = stack(json!({})).await;
        let reply = send(&stack, "aggregator", asserted(&[(OSC, E_SERVICE)])).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            forwarded(&stack, CD2).header(OSC),
            Some(ids::AGGREGATOR),
            "the OSC NTjP sees is the caller the proxy authenticated"
        );
    }

    #[tokio::test]
    async fn reject_mode_refuses_a_spoofed_osc_with_vp013_and_an_aob_with_rtp102() {
        let stack = stack(json!({ "untrusted": "reject" })).await;
        let reply = send(&stack, "aggregator", asserted(&[(OSC, E_SERVICE)])).await;
        assert_fault(&reply, "VP013");
        assert!(
            reply.text().contains("on this route") && !reply.text().contains(E_SERVICE),
            "the policy's refusal, without the asserted value: {}",
            reply.text()
        );
        let reply = send(&stack, "consumer", asserted(&[(AOB, PRINCIPAL)])).await;
        assert_fault(&reply, "RTP102");
        assert!(!reply.text().contains(PRINCIPAL), "{}", reply.text());
        assert!(stack.sim.calls().is_empty(), "NTjP never sees the calls");
    }

    #[tokio::test]
    async fn a_trusted_callers_osc_and_aob_pass_unchanged() {
        let stack = stack(json!({
            "trusted_osc": "SE2321000016-AGP*",
            "trusted_aob": ["SE2321000016-AGP*"],
            "untrusted": "reject"
        }))
        .await;
        let reply = send(
            &stack,
            "aggregator",
            asserted(&[(OSC, E_SERVICE), (AOB, PRINCIPAL)]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let seen = forwarded(&stack, CD2);
        assert_eq!(seen.header(OSC), Some(E_SERVICE));
        assert_eq!(seen.header(AOB), Some(PRINCIPAL));
    }

    #[tokio::test]
    async fn an_untrusted_callers_aob_is_removed() {
        // Trust for OSC gives none for AoB.
        let stack = stack(json!({ "trusted_osc": "SE2321000016-AGP*" })).await;
        let reply = send(&stack, "consumer", asserted(&[(AOB, PRINCIPAL)])).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let reply = send(
            &stack,
            "aggregator",
            asserted(&[(OSC, E_SERVICE), (AOB, PRINCIPAL)]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

        let seen = reached(&stack, CD2);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].header(OSC), Some(ids::CONSUMER));
        assert_eq!(seen[0].header(AOB), None, "the consumer's AoB is removed");
        assert_eq!(seen[1].header(OSC), Some(E_SERVICE), "a trusted OSC passes");
        assert_eq!(seen[1].header(AOB), None, "the aggregator's AoB is removed");
    }
}

// ---------------------------------------------------------------------------------------
// All three on one route
// ---------------------------------------------------------------------------------------

mod pipeline {
    use super::*;

    /// The NPÖ route of a region: `osc-aob` first, then `caller-filter`, then `look-back`.
    fn npo_route(osc_aob: Value) -> String {
        route(&[
            policy("osc-aob", osc_aob),
            policy(
                "caller-filter",
                json!({
                    "default": "deny",
                    "rules": [
                        { "name": "no-e-services", "effect": "deny", "osc": "SE2321000016-EHS9" },
                        { "name": "aggregator", "effect": "allow", "consumer": ids::AGGREGATOR },
                        { "name": "journals", "effect": "allow", "consumer": ids::CONSUMER }
                    ],
                    "care_unit_restrictions": [
                        { "name": "e-services-without-ve02", "osc": "SE2321000016-EHS*",
                          "care_units": VE02 }
                    ]
                }),
            ),
            policy(
                "look-back",
                json!({
                    "default": "36 months",
                    "consumers": { E_SERVICE: "12 months" }
                }),
            ),
        ])
    }

    /// Last month at VE01, two months ago at VE02, two years ago at VE01, five years ago
    /// at VE02.
    fn records_of(day: Date) -> String {
        patient(&[
            (months_before(day, 1), VG01, VE01),
            (months_before(day, 2), VG02, VE02),
            (months_before(day, 24), VG01, VE01),
            (months_before(day, 60), VG02, VE02),
        ])
    }

    #[tokio::test]
    async fn an_aggregated_call_for_an_e_service_passes_all_three_policies() {
        let day = today();
        let osc_aob = json!({
            "trusted_osc": "SE2321000016-AGP*",
            "trusted_aob": "SE2321000016-AGP*"
        });
        let stack = start(&records_of(day), &npo_route(osc_aob)).await;
        let call = soap(text(CD2_REQUEST))
            .header(OSC, E_SERVICE)
            .header(AOB, PRINCIPAL);
        let reply = send(&stack, "aggregator", call).await;
        let ids = record_ids(CD2, &reply);
        if !still(day) {
            return;
        }
        // osc-aob: the trusted aggregator's OSC and AoB reach NTjP.
        let seen = forwarded(&stack, CD2);
        assert_eq!(seen.header(OSC), Some(E_SERVICE));
        assert_eq!(seen.header(AOB), Some(PRINCIPAL));
        // look-back: the e-service's own limit (by OSC), 12 months, in the request...
        assert!(
            seen.body_text().contains(&format!(
                "</urn1:patientId><urn1:timePeriod><urn2:start>{}</urn2:start><urn2:end>{}</urn2:end></urn1:timePeriod>",
                ymd(months_before(day, 12)),
                ymd(day)
            )),
            "{}",
            seen.body_text()
        );
        // ...and in the answer; caller-filter: no VE02 records for e-services.
        assert_eq!(ids, ids_of("CD2", &[1]));
        assert!(!reply.text().contains(VE02), "{}", reply.text());
    }

    #[tokio::test]
    async fn the_policies_after_osc_aob_see_the_stripped_osc() {
        let day = today();
        // Nobody may assert an OSC on this route: the aggregator's is reset to itself, so
        // neither the deny rule, nor the restriction, nor the 12-month limit of the
        // e-service it named applies.
        let stack = start(&records_of(day), &npo_route(json!({}))).await;
        let call = soap(text(CD2_REQUEST)).header(OSC, "SE2321000016-EHS9");
        let reply = send(&stack, "aggregator", call).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let seen = forwarded(&stack, CD2);
        assert_eq!(seen.header(OSC), Some(ids::AGGREGATOR));

        let call = soap(text(CD2_REQUEST)).header(OSC, E_SERVICE);
        let reply = send(&stack, "aggregator", call).await;
        let ids = record_ids(CD2, &reply);
        if !still(day) {
            return;
        }
        let seen = reached(&stack, CD2);
        assert!(seen[1].body_text().contains(&format!(
            "<urn2:start>{}</urn2:start>",
            ymd(months_before(day, 36))
        )));
        assert_eq!(ids, ids_of("CD2", &[1, 2, 3]));
    }
}
