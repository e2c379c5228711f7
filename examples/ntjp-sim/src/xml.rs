//! Small XML helpers on top of quick-xml: escaping, VP's payload parsing and a
//! minimal element tree for reading request fields.

use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Resolves `&lt;`, `&#233;` and friends; unknown entities are kept verbatim.
pub fn resolve_ref(r: &BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    let name = r.decode().unwrap_or_default();
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => s.to_string(),
        None => format!("&{name};"),
    }
}

/// What VP learns from a request before routing (ntjp-vp.md 1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadInfo {
    /// Namespace of the first child of `Body` (the service contract).
    pub contract: Option<String>,
    /// Local name of that first child (the request root).
    pub root_name: Option<String>,
    /// Text of `LogicalAddress` (RIV-TA 2.1) or `To` (2.0) in the header; not trimmed.
    pub logical_address: Option<String>,
}

/// Streams the envelope like VP's PayloadInfoParser: elements are matched by
/// local name; parsing stops at the first child of `Body`. Errors are parser
/// messages suitable for a VP015 detail.
pub fn parse_payload(body: &[u8]) -> Result<PayloadInfo, String> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut info = PayloadInfo::default();
    let mut in_header = false;
    let mut in_body = false;
    // Some(text) while collecting the text of a LogicalAddress/To element.
    let mut collecting: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        let (ns, event) = match reader.read_resolved_event_into(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                return Err(format!(
                    "XML error at byte {}: {e}",
                    reader.error_position()
                ))
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_body {
                    info.contract = match ns {
                        ResolveResult::Bound(n) => {
                            Some(String::from_utf8_lossy(n.as_ref()).into_owned())
                        }
                        _ => None,
                    };
                    info.root_name = Some(local);
                    return Ok(info);
                }
                match local.as_str() {
                    "Header" => in_header = true,
                    "Body" => in_body = !is_empty,
                    "LogicalAddress" | "To" if in_header => {
                        // The last one wins, as in VP.
                        info.logical_address = None;
                        if !is_empty {
                            collecting = Some(String::new());
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let Some(acc) = collecting.as_mut() {
                    acc.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(acc) = collecting.as_mut() {
                    acc.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(acc) = collecting.as_mut() {
                    acc.push_str(&resolve_ref(&r));
                }
            }
            Event::End(ref e) => {
                if let Some(acc) = collecting.take() {
                    // Whitespace-only counts as missing (VP003), other text is kept as is.
                    if !acc.trim().is_empty() {
                        info.logical_address = Some(acc);
                    }
                }
                if e.local_name().as_ref() == b"Header" {
                    in_header = false;
                }
            }
            Event::Eof => {
                return Err("the request has no SOAP Body element with content".to_string());
            }
            _ => {}
        }
        buf.clear();
    }
}

/// A minimal element tree: local names, concatenated text, children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Parses a whole document into a tree (namespaces dropped). Iterative, so
    /// deep nesting cannot overflow the stack.
    pub fn parse(doc: &[u8]) -> Result<Element, String> {
        let mut reader = quick_xml::Reader::from_reader(doc);
        reader.config_mut().check_end_names = true;
        let mut stack: Vec<Element> = vec![Element::default()];
        let mut buf = Vec::new();
        loop {
            let event = reader
                .read_event_into(&mut buf)
                .map_err(|e| format!("XML error at byte {}: {e}", reader.error_position()))?;
            match event {
                Event::Start(e) => stack.push(Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Element::default()
                }),
                Event::Empty(e) => {
                    let el = Element {
                        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                        ..Element::default()
                    };
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(el);
                    }
                }
                Event::Text(t) => {
                    if let Some(cur) = stack.last_mut() {
                        cur.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                    }
                }
                Event::CData(t) => {
                    if let Some(cur) = stack.last_mut() {
                        cur.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(cur) = stack.last_mut() {
                        cur.text.push_str(&resolve_ref(&r));
                    }
                }
                Event::End(_) => {
                    if stack.len() < 2 {
                        return Err("unbalanced end tag".to_string());
                    }
                    if let Some(done) = stack.pop() {
                        if let Some(parent) = stack.last_mut() {
                            parent.children.push(done);
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if stack.len() != 1 {
            return Err("unexpected end of document".to_string());
        }
        stack
            .pop()
            .and_then(|doc| doc.children.into_iter().next())
            .ok_or_else(|| "empty document".to_string())
    }

    /// First child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a path of local names from this element.
    pub fn path(&self, path: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for p in path {
            cur = cur.child(p)?;
        }
        Some(cur)
    }

    /// Trimmed text at a path, if present and non-empty.
    pub fn text_at(&self, path: &[&str]) -> Option<String> {
        self.path(path)
            .map(|e| e.text.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The first child of the SOAP Body (the request/response root), for an envelope.
    pub fn body_root(&self) -> Option<&Element> {
        self.child("Body").and_then(|b| b.children.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
      <s:Header><a:LogicalAddress xmlns:a="urn:riv:itintegration:registry:1">SE1</a:LogicalAddress></s:Header>
      <s:Body><r:GetX xmlns:r="urn:x:GetXResponder:2"><r:patientId><id>1912</id></r:patientId></r:GetX></s:Body></s:Envelope>"#;

    #[test]
    fn payload_info() {
        let info = parse_payload(REQ.as_bytes()).expect("parses");
        assert_eq!(info.contract.as_deref(), Some("urn:x:GetXResponder:2"));
        assert_eq!(info.logical_address.as_deref(), Some("SE1"));
        assert_eq!(info.root_name.as_deref(), Some("GetX"));
    }

    #[test]
    fn payload_errors_and_missing_address() {
        assert!(parse_payload(b"<a><b></a>").is_err());
        assert!(parse_payload(b"").is_err());
        let info =
            parse_payload(b"<E><Header><To> </To></Header><Body><Q xmlns='urn:q'/></Body></E>")
                .expect("parses");
        assert_eq!(info.logical_address, None);
        assert_eq!(info.contract.as_deref(), Some("urn:q"));
    }

    #[test]
    fn tree() {
        let doc = Element::parse(REQ.as_bytes()).expect("tree");
        let root = doc.body_root().expect("root");
        assert_eq!(root.text_at(&["patientId", "id"]).as_deref(), Some("1912"));
    }
}
