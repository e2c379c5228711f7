//! The response phase with real compiled components: records a policy drops never reach
//! the consumer, the answer stays well-formed XML, large answers stream in batches, and
//! routes without response policies pass the body through byte for byte.

use http::StatusCode;
use rtp_proxy_tests::*;

const REQUEST: &str = "01_GetCareDocumentation_v2_request.xml";
const CD2: &str = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";

async fn call_stack(stack: &Stack) -> Reply {
    post_tls(
        stack.proxy.https_addr.unwrap(),
        &stack.pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap()
}

/// Sends the sample request through a proxy whose route has the test policy with
/// `behaviour`, in front of a producer that answers `answer`; `policies` adds lines to
/// the config's `[policies]` section (e.g. a small `response_batch_bytes`).
async fn answer_through(answer: Vec<u8>, behaviour: &str, policies: &str) -> Reply {
    let producer = StaticProducer::start(StatusCode::OK, answer).await;
    let pki = Pki::generate();
    let config = proxy_toml(
        &pki,
        &producer.url(),
        &route_with_test_policy(behaviour, "fail-closed"),
    )
    .replace("deadline_ms = 50", &format!("deadline_ms = 50\n{policies}"));
    let proxy = start_proxy(&config).await;
    post_tls(
        proxy.https_addr.unwrap(),
        &pki.client(Some("consumer")),
        Call::soap(sample(REQUEST)),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn dropped_records_never_reach_the_consumer_and_the_xml_stays_valid() {
    let all = Stack::start(&route_with_test_policy("noop", "fail-closed")).await;
    let reply = call_stack(&all).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let every = record_ids(CD2, &reply.body);
    assert!(every.len() >= 2, "the simulator answers several records");

    let filtered = Stack::start(&route_with_test_policy("drop-even-records", "fail-closed")).await;
    let reply = call_stack(&filtered).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let kept = record_ids(CD2, &reply.body);
    let odd: Vec<String> = every.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(kept, odd, "exactly the odd-indexed records are left");
    let text = reply.text();
    assert!(text.contains("GetCareDocumentationResponse") && text.contains("resultCode"));
}

/// A CD2 answer with `n` records, each about 600 bytes.
fn big_answer(n: usize) -> Vec<u8> {
    let mut body = String::from(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body><r:GetCareDocumentationResponse xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2">"#,
    );
    for i in 0..n {
        body.push_str(&format!(
            "\n<r:careDocumentation><c:careDocumentationHeader><c:documentId>doc-{i}</c:documentId><c:sourceSystemHSAid>SYS</c:sourceSystemHSAid><c:documentTime>20240101120000</c:documentTime><c:accountableHealthcareProfessional><c:authorTime>20240101120000</c:authorTime><c:healthcareProfessionalCareUnitHSAId>U{i}</c:healthcareProfessionalCareUnitHSAId><c:healthcareProfessionalCareGiverHSAId>P</c:healthcareProfessionalCareGiverHSAId></c:accountableHealthcareProfessional><c:approvedForPatient>true</c:approvedForPatient></c:careDocumentationHeader><c:careDocumentationBody><c:clinicalDocumentNote><c:clinicalDocumentNoteText>note {i} with &lt;escaped&gt; text and some length to it, so that records span chunks</c:clinicalDocumentNoteText></c:clinicalDocumentNote></c:careDocumentationBody></r:careDocumentation>"
        ));
    }
    body.push_str("\n<r:result><c:resultCode>OK</c:resultCode></r:result></r:GetCareDocumentationResponse></s:Body></s:Envelope>");
    body.into_bytes()
}

#[tokio::test]
async fn a_large_answer_is_filtered_in_batches_without_losing_or_reordering_records() {
    // Batches of about two records: the answer goes out in a hundred releases.
    let reply = answer_through(
        big_answer(200),
        "drop-even-records",
        "response_batch_bytes = 1200",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let kept = record_ids(CD2, &reply.body);
    let expected: Vec<String> = (0..200)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("doc-{i}"))
        .collect();
    assert_eq!(kept, expected);
    // What is not a dropped record is passed byte for byte.
    let text = reply.text();
    assert!(text.starts_with(r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">"#));
    assert!(text.contains("note 1 with &lt;escaped&gt; text"));
    assert!(!text.contains("doc-0<"));
    assert!(text.ends_with("</s:Body></s:Envelope>"));
}

/// The answer's length as its headers state it: Content-Length, or none when chunked.
fn content_length(reply: &Reply) -> Option<u64> {
    reply
        .headers
        .get(http::header::CONTENT_LENGTH)
        .map(|value| value.to_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn an_answer_decided_in_one_batch_goes_out_with_its_new_length() {
    let answer = big_answer(20);
    let reply = answer_through(answer.clone(), "drop-even-records", "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(record_ids(CD2, &reply.body).len(), 10);
    assert!(reply.body.len() < answer.len());
    assert_eq!(content_length(&reply), Some(reply.body.len() as u64));
    assert!(reply.headers.get(http::header::TRANSFER_ENCODING).is_none());
}

#[tokio::test]
async fn an_answer_longer_than_a_batch_goes_out_chunked() {
    let reply = answer_through(
        big_answer(20),
        "drop-even-records",
        "response_batch_bytes = 1200",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(record_ids(CD2, &reply.body).len(), 10);
    assert_eq!(content_length(&reply), None);
    assert_eq!(
        reply.headers.get(http::header::TRANSFER_ENCODING).unwrap(),
        "chunked"
    );
}

#[tokio::test]
async fn without_response_policies_the_body_passes_byte_for_byte() {
    let answer = big_answer(20);
    let reply = answer_through(answer.clone(), "allow", "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.body, answer);
}

#[tokio::test]
async fn a_malformed_answer_becomes_a_fault_not_a_partial_release() {
    let mut answer = big_answer(3);
    answer.truncate(answer.len() - 40);
    let reply = answer_through(answer, "drop-even-records", "").await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.text()
    );
    reply.assert_fault_code("VP009");
}

/// A record bigger than `max_record_bytes` cannot be held whole: the answer is refused
/// with VP009 instead of growing the proxy's memory; normal records still pass.
#[tokio::test]
async fn a_record_over_max_record_bytes_is_refused_not_buffered() {
    let answer = big_answer(3);
    let text = String::from_utf8(answer.clone()).unwrap();
    let huge_note = "x".repeat(64 * 1024);
    // The first record: nothing has gone out yet, so the caller gets the fault (later,
    // the body would be broken off, as for any fault after the first release).
    let oversized = text.replacen("note 0 with", &format!("note 0 {huge_note} with"), 1);
    let limits = "response_batch_bytes = 1200\nmax_record_bytes = 16384";

    let reply = answer_through(oversized.into_bytes(), "drop-even-records", limits).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    reply.assert_fault_code("VP009");
    reply.assert_text_contains("max_record_bytes");

    let reply = answer_through(answer, "drop-even-records", limits).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// An answer in which the scanner finds no records streams in batches like any other:
/// it is not held whole (which `max_record_bytes` would refuse), and goes out unchanged.
#[tokio::test]
async fn an_answer_without_records_streams_in_batches() {
    let mut text = String::from_utf8(big_answer(0)).unwrap();
    let filler: String = (0..400)
        .map(|i| {
            format!(
                "<c:note>filler {i}, some length to it so the answer spans many batches</c:note>\n"
            )
        })
        .collect();
    text = text.replacen("<r:result>", &format!("{filler}<r:result>"), 1);
    let answer = text.into_bytes();
    assert!(answer.len() > 30_000);
    let reply = answer_through(
        answer.clone(),
        "drop-even-records",
        "response_batch_bytes = 1200\nmax_record_bytes = 4096",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.body, answer);
}
