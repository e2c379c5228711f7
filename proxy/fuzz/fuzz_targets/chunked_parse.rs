//! Differential: the streaming `RecordParser`, fed a body cut into chunks where the
//! fuzzer says, must find the records `scan_document` finds in the whole body (same
//! spans, same summaries), or fail where it fails. This is the oracle of parser.rs's
//! `any_chunking_gives_the_records_of_the_whole_document` and
//! `a_cut_or_malformed_body_is_an_error_whatever_the_chunking`, over any body and any
//! chunking: the error kinds differ between the two (a cut body is `ParseError::Cut`
//! streaming, `ScanError::Malformed` whole), so only "an error" is compared.
//!
//! Input: byte 0 picks the contract; byte 1 is the number of cuts (low 4 bits) and
//! whether the parser is asked to cut the batch at every chance (bit 7) or, as the unit
//! test does, after each record; then two bytes per cut (a body offset, modulo its
//! length + 1); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_proxy::contracts::NPO_CONTRACTS;
use rtp_proxy::response::parser::{ParseError, Parsed, RecordParser};
use rtp_proxy::response::scan::{scan_document, ScannedRecord};

fn parse_in_chunks(
    parser: &mut RecordParser,
    body: &[u8],
    cuts: &[usize],
    always: bool,
) -> Result<(Vec<ScannedRecord>, Vec<u64>), ParseError> {
    let (mut batch, mut records, mut released) = (Vec::new(), Vec::new(), Vec::new());
    let mut chunks = cuts
        .iter()
        .copied()
        .chain([body.len()])
        .scan(0, |from, to| {
            let chunk = &body[*from..to];
            *from = to;
            Some(chunk)
        });
    loop {
        let chunk = chunks.next();
        if let Some(chunk) = chunk {
            parser.append(chunk);
        }
        loop {
            let parsed = parser.parse(chunk.is_none(), &mut batch, |_, n| always || n > 0)?;
            // As the filter does: a cut releases the batch.
            records.append(&mut batch);
            match parsed {
                Parsed::NeedMore => break,
                Parsed::Cut(at) => released.push(at),
                Parsed::End(at) => {
                    released.push(at);
                    return Ok((records, released));
                }
            }
        }
    }
}

fn key(records: &[ScannedRecord]) -> Vec<(u64, u64, String)> {
    records
        .iter()
        .map(|r| (r.start, r.end, format!("{:?}", r.summary)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let contract = &NPO_CONTRACTS[usize::from(data[0]) % NPO_CONTRACTS.len()];
    let always = data[1] & 0x80 != 0;
    let n = usize::from(data[1] & 0x0f);
    let Some(positions) = data.get(2..2 + 2 * n) else {
        return;
    };
    let body = &data[2 + 2 * n..];
    let mut cuts: Vec<usize> = positions
        .chunks(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = scan_document(contract, body);
    let mut parser = RecordParser::new(contract);
    let streamed = parse_in_chunks(&mut parser, body, &cuts, always);
    match (&whole, &streamed) {
        (Ok(whole), Ok((records, released))) => {
            assert_eq!(key(records), key(whole), "cuts at {cuts:?}");
            let mut after = 0;
            for r in records {
                assert!(after <= r.start && r.start < r.end && r.end <= body.len() as u64);
                let span = &body[r.start as usize..r.end as usize];
                assert!(span.starts_with(b"<") && span.ends_with(b">"), "{span:?}");
                after = r.end;
            }
            // The parser releases between records only, ending with the body's end.
            for at in released {
                assert!(
                    !records.iter().any(|r| r.start < *at && *at < r.end),
                    "cut at {at} inside a record"
                );
            }
            assert_eq!(released.last(), Some(&(body.len() as u64)));
            if !always {
                let mut expected: Vec<u64> = whole.iter().map(|r| r.end).collect();
                expected.push(body.len() as u64);
                assert_eq!(released, &expected, "cuts right after each record");
            }
        }
        (Err(_), Err(_)) => {}
        (whole, streamed) => panic!(
            "whole body: {:?}\nin chunks cut at {cuts:?}: {:?}",
            whole.as_ref().map(|r| key(r)),
            streamed.as_ref().map(|(r, _)| key(r))
        ),
    }
});
