//! `scan_document` on arbitrary bytes, as a producer may answer: records or an error,
//! never a panic. The first byte picks one of the NPÖ contracts; the records found must
//! lie inside the body, in order, without overlapping, each from its start tag's `<` to
//! its end tag's `>` (the filter cuts the body at those spans).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_proxy::contracts::NPO_CONTRACTS;
use rtp_proxy::response::scan::scan_document;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let contract = &NPO_CONTRACTS[usize::from(pick) % NPO_CONTRACTS.len()];
    let Ok(records) = scan_document(contract, body) else {
        return;
    };
    let mut after = 0;
    for (i, record) in records.iter().enumerate() {
        assert!(
            after <= record.start && record.start < record.end && record.end <= body.len() as u64,
            "record {i} at {}..{} after {after} in {} bytes",
            record.start,
            record.end,
            body.len()
        );
        assert_eq!(record.summary.index as usize, i);
        let span = &body[record.start as usize..record.end as usize];
        assert!(
            span.starts_with(b"<") && span.ends_with(b">"),
            "record {i} spans {:?}",
            String::from_utf8_lossy(span)
        );
        after = record.end;
    }
});
