//! The response phase's throughput, for BENCHMARKS.md: a 10 MB GetCareDocumentation 2
//! answer scanned for its records, and scanned, decided by a real policy component (the
//! test policy dropping every other record) and re-emitted, streaming in 64 KiB chunks
//! as a producer would send it.
//!
//! Run: `cargo bench -p rtp-proxy --bench response_filter`.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, StreamBody};
use rtp_proxy::contracts;
use rtp_proxy::policy::loaded::{FailureMode, Limits};
use rtp_proxy::policy::{
    AccessContext, LoadedPolicy, Pipeline, PolicyEngine, PolicyReloader, PolicySlot,
};
use rtp_proxy::response::scan::scan_document;
use rtp_proxy::response::ResponseFilter;
use rtp_proxy::upstream::BoxError;

mod common;
use common::{build_test_policy, call};

const CD2: &str = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";
const SIZE: usize = 10 * 1024 * 1024;

/// A CD2 answer of about `SIZE` bytes: records shaped like the shared sample's, each
/// with a clinical note of a few hundred bytes.
fn answer() -> Bytes {
    let mut body = String::with_capacity(SIZE + 4096);
    body.push_str(r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header/><soapenv:Body><urn:GetCareDocumentationResponse xmlns:urn="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:urn1="urn:riv:clinicalprocess:healthcond:description:2">"#);
    let mut i = 0;
    while body.len() < SIZE {
        body.push_str(&format!(
            r#"
         <urn:careDocumentation>
            <urn1:careDocumentationHeader>
               <urn1:documentId>doc-{i}</urn1:documentId>
               <urn1:sourceSystemHSAid>SE2321000016-15CQ</urn1:sourceSystemHSAid>
               <urn1:documentTitle>Anteckning</urn1:documentTitle>
               <urn1:documentTime>20240101120000</urn1:documentTime>
               <urn1:patientId><urn1:id>191212121212</urn1:id><urn1:type>1.2.752.129.2.1.3.1</urn1:type></urn1:patientId>
               <urn1:accountableHealthcareProfessional>
                  <urn1:authorTime>20240101120000</urn1:authorTime>
                  <urn1:healthcareProfessionalHSAId>SE2321000016-1234</urn1:healthcareProfessionalHSAId>
                  <urn1:healthcareProfessionalName>Doktor Doktorsson</urn1:healthcareProfessionalName>
                  <urn1:healthcareProfessionalCareUnitHSAId>SE2321000016-U{unit}</urn1:healthcareProfessionalCareUnitHSAId>
                  <urn1:healthcareProfessionalCareGiverHSAId>SE2321000016-P1</urn1:healthcareProfessionalCareGiverHSAId>
               </urn1:accountableHealthcareProfessional>
               <urn1:approvedForPatient>true</urn1:approvedForPatient>
            </urn1:careDocumentationHeader>
            <urn1:careDocumentationBody>
               <urn1:clinicalDocumentNote>
                  <urn1:clinicalDocumentNoteCode>utr</urn1:clinicalDocumentNoteCode>
                  <urn1:clinicalDocumentNoteText>Patienten söker för hosta sedan tre veckor. Ingen feber. Lungor: vesikulärt andningsljud bilateralt. Bedömning: postinfektiös hosta. Åtgärd: avvakta, återbesök vid behov. &lt;b&gt;Uppföljning&lt;/b&gt; om fyra veckor.</urn1:clinicalDocumentNoteText>
               </urn1:clinicalDocumentNote>
            </urn1:careDocumentationBody>
         </urn:careDocumentation>"#,
            unit = i % 7
        ));
        i += 1;
    }
    body.push_str("<urn:result><urn1:resultCode>OK</urn1:resultCode></urn:result></urn:GetCareDocumentationResponse></soapenv:Body></soapenv:Envelope>");
    Bytes::from(body)
}

fn chunked(answer: &Bytes) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError> {
    let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = answer
        .chunks(64 * 1024)
        .map(|c| Ok(http_body::Frame::data(answer.slice_ref(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

fn response_phase(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = answer();
    let contract = contracts::lookup(CD2).unwrap();
    let records = scan_document(contract, &answer).unwrap().len();
    eprintln!("answer: {} bytes, {records} records", answer.len());

    let mut group = c.benchmark_group("response phase, 10 MB GetCareDocumentation");
    group.throughput(Throughput::Bytes(answer.len() as u64));
    group.sample_size(20);
    // The ceiling the scanner works under: quick-xml's own events, nothing done with
    // them.
    group.bench_function("quick-xml events only", |b| {
        b.iter(|| {
            let mut reader = quick_xml::Reader::from_reader(&answer[..]);
            let mut events = 0u64;
            loop {
                match reader.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break events,
                    Ok(_) => events += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    group.bench_function("scan only", |b| {
        b.iter(|| scan_document(contract, &answer).unwrap().len())
    });

    let file = build_test_policy("a");
    let engine = PolicyEngine::new(None, Default::default()).unwrap();
    let settings = r#"{"behaviour":"drop-even-records"}"#.to_owned();
    let policy = rt
        .block_on(LoadedPolicy::load(
            &engine,
            &file,
            settings.clone(),
            FailureMode::FailClosed,
            Limits::default(),
        ))
        .unwrap();
    let slot = Arc::new(PolicySlot::new(
        "bench".into(),
        0,
        policy,
        settings,
        FailureMode::FailClosed,
        Limits::default(),
    ));
    let _reloader = PolicyReloader::new(engine, vec![slot.clone()]);
    let pipeline = Pipeline::new(vec![slot]);
    let call = call();

    group.bench_function("scan, drop every other record, re-emit", |b| {
        b.to_async(&rt).iter(|| async {
            let filter = ResponseFilter {
                pipeline: pipeline.clone(),
                call: call.clone(),
                contract,
                batch_bytes: 1024 * 1024,
                max_record_bytes: 32 * 1024 * 1024,
                access_log: None,
                access_context: AccessContext {
                    contract: CD2.into(),
                    information_type: "voo".into(),
                    correlation_id: "bench".into(),
                },
                decision: Default::default(),
            };
            let body = filter.start(chunked(&answer)).await.unwrap();
            let out = body.collect().await.unwrap().to_bytes();
            assert!(out.len() < answer.len() * 3 / 5, "about half is dropped");
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, response_phase);
criterion_main!(benches);
