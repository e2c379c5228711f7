//! Turns the body, as it arrives in chunks, into scanned records. Each stretch of
//! complete markup is parsed with quick-xml's slice reader (borrowed events, nothing
//! copied per event); the bytes are copied once into a contiguous buffer, because an
//! event may span chunks. What goes out is still sliced from the received chunks
//! ([`super::source`]).

use quick_xml::events::{BytesText, Event};
use quick_xml::Reader;

use super::scan::{ScanError, ScannedRecord, Scanner};
use crate::contracts::ContractInfo;

/// Where parsing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Everything received is parsed (or waits for the rest of its markup).
    NeedMore,
    /// The caller asked to cut here: between records, at this body offset.
    Cut(u64),
    /// The body ended at this offset, with every element closed.
    End(u64),
}

/// Why the body cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Scan(#[from] ScanError),
    #[error("{0}")]
    Xml(String),
    #[error("the answer ends before its elements are closed")]
    Cut,
}

pub struct RecordParser {
    scanner: Scanner,
    /// Received bytes not parsed yet, from body offset `base`.
    bytes: Vec<u8>,
    base: u64,
    /// Length of the prefix of `bytes` that ends with a `>`: only whole markup is
    /// parsed before the body has ended.
    complete: usize,
}

impl RecordParser {
    pub fn new(contract: &'static ContractInfo) -> RecordParser {
        RecordParser {
            scanner: Scanner::new(contract),
            bytes: Vec::new(),
            base: 0,
            complete: 0,
        }
    }

    /// Takes the next chunk of the body.
    pub fn append(&mut self, chunk: &[u8]) {
        // Only the new chunk is searched: a long text spread over many chunks is not
        // searched again for every chunk.
        if let Some(last) = memchr::memrchr(b'>', chunk) {
            self.complete = self.bytes.len() + last + 1;
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// Parses what can be parsed, pushing each record found to `batch`. After each event
    /// that leaves the scanner between records, `cut_here(offset, records in batch)` is
    /// asked whether to stop there. `finished`: the body has ended; all of it is parsed.
    pub fn parse(
        &mut self,
        finished: bool,
        batch: &mut Vec<ScannedRecord>,
        mut cut_here: impl FnMut(u64, usize) -> bool,
    ) -> Result<Parsed, ParseError> {
        let len = if finished {
            self.bytes.len()
        } else {
            self.complete
        };
        // quick-xml skips a byte order mark at the start of a reader's input (only the
        // first) without counting it in its positions, which would shift every later
        // span by three bytes: it is added back. At the body's start it is the body's
        // BOM, skipped as `scan_document` skips it. A later stretch starts with one only
        // inside text (a stretch starts after an event), where it is a character of the
        // text: the scanner gets it as such, as it does reading the whole body.
        let bom = crate::inspect::bom_len(&self.bytes[..len]) as u64;
        if bom > 0 && self.base > 0 {
            let text = Event::Text(BytesText::from_escaped("\u{feff}"));
            self.scanner.event(&text, self.base, self.base + bom)?;
        }
        let base = self.base + bom;
        let mut reader = Reader::from_reader(&self.bytes[..len]);
        // The scanner checks end tags: this reader has not seen the start tags of the
        // stretches parsed before.
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        let mut parsed = 0;
        let stop = loop {
            let start = reader.buffer_position();
            let event = match reader.read_event() {
                Ok(event) => event,
                // Every syntax error means "the input ended inside markup": more of the
                // body completes it, unless there is no more.
                Err(quick_xml::Error::Syntax(_)) if !finished => break Parsed::NeedMore,
                Err(e) => return Err(ParseError::Xml(e.to_string())),
            };
            let end = reader.buffer_position();
            if matches!(event, Event::Eof) {
                parsed = end;
                if !finished {
                    break Parsed::NeedMore;
                }
                if !self.scanner.is_complete() {
                    return Err(ParseError::Cut);
                }
                break Parsed::End(base + end);
            }
            if let Some(record) = self.scanner.event(&event, base + start, base + end)? {
                batch.push(record);
            }
            parsed = end;
            if self.scanner.between_records() && cut_here(base + end, batch.len()) {
                break Parsed::Cut(base + end);
            }
        };
        self.consume(bom + parsed);
        Ok(stop)
    }

    /// Forgets the first `n` unparsed bytes: they were parsed.
    fn consume(&mut self, n: u64) {
        let n = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        self.bytes.drain(..n);
        self.base += n as u64;
        self.complete = self.complete.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::lookup;
    use crate::response::scan::scan_document;

    const CD2: &str =
        "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";

    /// Markup that holds `>` where a naive cut would end it: in attribute values,
    /// comments, CDATA and processing instructions, and in text, escaped and not.
    fn tricky_document() -> String {
        let mut body = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><!-- a > b --><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header a="x > y"/><s:Body><r:GetCareDocumentationResponse xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2">"#,
        );
        for i in 0..4 {
            body.push_str(&format!(
                r#"<r:careDocumentation note='1 > 0'><c:careDocumentationHeader><c:documentId>doc-{i} > x</c:documentId><?pi x > y?><c:accountableHealthcareProfessional><c:authorTime>2024010{i}120000</c:authorTime><c:healthcareProfessionalCareUnitHSAId>U{i}</c:healthcareProfessionalCareUnitHSAId><c:healthcareProfessionalCareGiverHSAId><![CDATA[P>{i}]]></c:healthcareProfessionalCareGiverHSAId></c:accountableHealthcareProfessional></c:careDocumentationHeader><c:careDocumentationBody><c:clinicalDocumentNote><c:clinicalDocumentNoteText>a &gt; b <!-- c > d --> e</c:clinicalDocumentNoteText></c:clinicalDocumentNote></c:careDocumentationBody></r:careDocumentation>"#
            ));
        }
        body.push_str("<r:result><c:resultCode>OK</c:resultCode></r:result></r:GetCareDocumentationResponse></s:Body></s:Envelope>\n");
        body
    }

    /// Parses `body` fed in chunks of `size` bytes, cutting after every record.
    fn parse_in_chunks(
        body: &[u8],
        size: usize,
    ) -> Result<(Vec<ScannedRecord>, Vec<u64>), ParseError> {
        let mut parser = RecordParser::new(lookup(CD2).unwrap());
        let (mut batch, mut records, mut cuts) = (Vec::new(), Vec::new(), Vec::new());
        let mut chunks = body.chunks(size);
        loop {
            let chunk = chunks.next();
            if let Some(chunk) = chunk {
                parser.append(chunk);
            }
            loop {
                let parsed = parser.parse(chunk.is_none(), &mut batch, |_, records| records > 0)?;
                // As the filter does: a cut releases the batch.
                records.append(&mut batch);
                match parsed {
                    Parsed::NeedMore => break,
                    Parsed::Cut(at) => cuts.push(at),
                    Parsed::End(at) => {
                        cuts.push(at);
                        return Ok((records, cuts));
                    }
                }
            }
        }
    }

    #[test]
    fn any_chunking_gives_the_records_of_the_whole_document() {
        let body = tricky_document();
        let whole = scan_document(lookup(CD2).unwrap(), body.as_bytes()).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[2].summary.care_provider.as_deref(), Some("P>2"));
        // A `>` may stand unescaped in text: a cut there splits the text, not the record.
        assert_eq!(whole[2].summary.id.as_deref(), Some("doc-2 > x"));
        for size in (1..=97).chain([1000, body.len()]) {
            let (records, cuts) = parse_in_chunks(body.as_bytes(), size).unwrap();
            let spans = |r: &[ScannedRecord]| -> Vec<(u64, u64, Option<String>, Option<String>)> {
                r.iter()
                    .map(|r| {
                        (
                            r.start,
                            r.end,
                            r.summary.id.clone(),
                            r.summary.care_provider.clone(),
                        )
                    })
                    .collect()
            };
            assert_eq!(spans(&records), spans(&whole), "chunks of {size} bytes");
            let mut expected: Vec<u64> = whole.iter().map(|r| r.end).collect();
            expected.push(body.len() as u64);
            assert_eq!(
                cuts, expected,
                "cuts right after each record, chunks of {size}"
            );
        }
    }

    #[test]
    fn a_cut_or_malformed_body_is_an_error_whatever_the_chunking() {
        let body = tricky_document();
        let unclosed_element = body.replace("</s:Envelope>\n", "");
        let unclosed_tag = &body.as_bytes()[..body.len() - 4];
        let swapped = body.replace("</s:Body></s:Envelope>", "</s:Envelope></s:Body>");
        for size in [1, 7, 64, 100_000] {
            assert_eq!(
                parse_in_chunks(unclosed_element.as_bytes(), size).unwrap_err(),
                ParseError::Cut,
                "{size}"
            );
            assert!(
                matches!(parse_in_chunks(unclosed_tag, size), Err(ParseError::Xml(_))),
                "{size}"
            );
            assert!(
                matches!(
                    parse_in_chunks(swapped.as_bytes(), size),
                    Err(ParseError::Scan(_))
                ),
                "{size}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped_at_the_start_and_kept_in_text() {
        // Caught by fuzz target `chunked_parse`: a fresh reader on a stretch that starts
        // with a BOM skipped it without counting it, so the text lost a character and
        // the record's end was three bytes early. At the body's start the BOM is not
        // content, but quick-xml did not count it there either.
        let body = tricky_document().replace("doc-2 > x", "doc-2 >\u{feff}x");
        let body = format!("\u{feff}\u{feff}{body}");
        let whole = scan_document(lookup(CD2).unwrap(), body.as_bytes()).unwrap();
        assert_eq!(whole[2].summary.id.as_deref(), Some("doc-2 >\u{feff}x"));
        let span = &body[whole[0].start as usize..whole[0].end as usize];
        assert!(span.starts_with("<r:careDocumentation ") && span.ends_with('>'));
        // Chunks ending right after the `>` in that text make the next one start with
        // the BOM; and chunks of 1 and 2 bytes split the leading BOM.
        let at = body.find("\u{feff}x").unwrap();
        for size in [1, 2, at, at - 1, 64] {
            let (records, _) = parse_in_chunks(body.as_bytes(), size).unwrap();
            let found: Vec<_> = records
                .iter()
                .map(|r| (r.start, r.end, r.summary.id.clone()))
                .collect();
            let expected: Vec<_> = whole
                .iter()
                .map(|r| (r.start, r.end, r.summary.id.clone()))
                .collect();
            assert_eq!(found, expected, "chunks of {size} bytes");
        }
    }

    #[test]
    fn a_second_byte_order_mark_at_the_start_is_text() {
        // Found by fuzz target `chunked_parse`: with the body's BOM taken off, a fresh
        // reader skipped the second one too, uncounted, and the parser then read the
        // last three bytes again, as an end tag without a start tag.
        let body = b"\xEF\xBB\xBF\xEF\xBB\xBF<co\x01\x00\x00co\xbb</>";
        let contract = lookup(CD2).unwrap();
        assert!(scan_document(contract, body).unwrap().is_empty());
        let mut parser = RecordParser::new(contract);
        let mut batch = Vec::new();
        for chunk in [&body[..11], &body[11..14], &body[14..]] {
            parser.append(chunk);
            let parsed = parser.parse(false, &mut batch, |_, _| false);
            assert_eq!(parsed, Ok(Parsed::NeedMore));
        }
        let parsed = parser.parse(true, &mut batch, |_, _| false);
        assert_eq!(parsed, Ok(Parsed::End(body.len() as u64)));
    }

    #[test]
    fn an_answer_without_records_can_be_cut_too() {
        let body = tricky_document()
            .replace("careDocumentation note", "other note")
            .replace("</r:careDocumentation>", "</r:other>");
        assert!(scan_document(lookup(CD2).unwrap(), body.as_bytes())
            .unwrap()
            .is_empty());
        let mut parser = RecordParser::new(lookup(CD2).unwrap());
        parser.append(body.as_bytes());
        let mut batch = Vec::new();
        let parsed = parser.parse(false, &mut batch, |at, _| at >= 1000).unwrap();
        let Parsed::Cut(at) = parsed else {
            panic!("no cut: {parsed:?}");
        };
        assert!(at >= 1000 && batch.is_empty(), "{at}");
        assert_eq!(&body.as_bytes()[at as usize - 1..at as usize], b">");
    }
}
