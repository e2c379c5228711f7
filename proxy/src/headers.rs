//! RIV-TA header rules (DOMAIN.md, "Headers"), applied between the caller and the upstream.
//!
//! Towards the upstream the proxy presents its own certificate, so the consumer's identity
//! travels only in the original-consumer header: set from what was authenticated, never
//! from a caller's unverified claim. NTjP-internal `x-vp-*` headers never leave the proxy
//! as a caller wrote them.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::fault::{Fault, FaultCode};

pub const ORIGINAL_CONSUMER: &str = "x-rivta-original-serviceconsumer-hsaid";
pub const ACTING_ON_BEHALF_OF: &str = "x-rivta-acting-on-behalf-of-hsaid";
pub const CORRELATION_ID: &str = "x-skltp-correlation-id";
pub const ROUTING_HISTORY: &str = "x-rivta-routing-history";
pub const VP_SENDER_ID: &str = "x-vp-sender-id";
pub const VP_INSTANCE_ID: &str = "x-vp-instance-id";
pub const PRODUCER_RESPONSE_TIME: &str = "x-skltp-prt";

/// The caller's correlation id if it sent a usable one, else a new UUID.
pub fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The routing history to forward: the caller's with our id appended, or
/// `<sender>#<instance>` when the call starts here. Our id already in it is a loop.
pub fn routing_history(
    headers: &HeaderMap,
    sender: &str,
    instance_id: &str,
) -> Result<String, Fault> {
    let incoming = headers
        .get(ROUTING_HISTORY)
        .map(|v| {
            v.to_str().map_err(|_| {
                Fault::new(
                    FaultCode::Vp015,
                    "header x-rivta-routing-history is not visible ASCII",
                )
            })
        })
        .transpose()?
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match incoming {
        None => Ok(format!("{sender}#{instance_id}")),
        Some(history) => {
            if history.split('#').any(|hop| hop.trim() == instance_id) {
                return Err(Fault::new(
                    FaultCode::Vp014,
                    format!("this platform ({instance_id}) is already in the routing history"),
                ));
            }
            Ok(format!("{history}#{instance_id}"))
        }
    }
}

/// The original consumer to forward. A caller may only set it if trusted to; otherwise
/// the authenticated sender is the original consumer.
pub fn original_consumer(
    headers: &HeaderMap,
    sender: &str,
    trusted: impl Fn(&str) -> bool,
) -> Result<String, Fault> {
    match headers.get(ORIGINAL_CONSUMER) {
        None => Ok(sender.to_owned()),
        Some(value) => {
            if !trusted(sender) {
                return Err(Fault::new(
                    FaultCode::Vp013,
                    format!("sender {sender} is not on the list of callers allowed to set {ORIGINAL_CONSUMER}"),
                ));
            }
            let value = value.to_str().map(str::trim).unwrap_or_default();
            if value.is_empty() {
                Ok(sender.to_owned())
            } else {
                Ok(value.to_owned())
            }
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus those a relay must recompute.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in hop {
        headers.remove(name);
    }
}

/// What the proxy decided about a call's identity headers.
#[derive(Debug, Clone)]
pub struct ForwardedIdentity {
    pub correlation_id: String,
    pub original_consumer: String,
    pub routing_history: String,
    /// For plain-HTTP upstreams that read `x-vp-sender-id`: our own HSA-id.
    pub vp_sender_id: Option<String>,
}

/// The headers sent upstream: the caller's, minus hop-by-hop, framing and NTjP-internal
/// ones, plus the identity headers the proxy vouches for.
pub fn upstream_request_headers(incoming: &HeaderMap, identity: &ForwardedIdentity) -> HeaderMap {
    let mut headers = incoming.clone();
    remove_hop_by_hop(&mut headers);
    // Recomputed by the client for the upstream connection and the buffered body.
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    // Like NTjP: bodies stay uncompressed so the platform (and response policies) can read them.
    headers.remove(header::ACCEPT_ENCODING);
    // x-rtp-* is addressed to this proxy (e.g. the accessing actor for the block
    // check): it stops here, like NTjP's internal x-vp-*.
    let internal: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            n.starts_with("x-vp-") || n.starts_with("x-forwarded-") || n.starts_with("x-rtp-")
        })
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
    set(&mut headers, CORRELATION_ID, &identity.correlation_id);
    set(&mut headers, ORIGINAL_CONSUMER, &identity.original_consumer);
    set(&mut headers, ROUTING_HISTORY, &identity.routing_history);
    if let Some(id) = &identity.vp_sender_id {
        set(&mut headers, VP_SENDER_ID, id);
    }
    headers
}

/// The upstream's response headers as returned to the caller.
pub fn downstream_response_headers(headers: &mut HeaderMap, correlation_id: &str, prt_ms: u128) {
    remove_hop_by_hop(headers);
    headers.remove("soapaction");
    set(headers, CORRELATION_ID, correlation_id);
    set(headers, PRODUCER_RESPONSE_TIME, &prt_ms.to_string());
}

/// Sets a header from a string the proxy built or validated; values that cannot be a
/// header (control characters) are dropped rather than forwarded.
pub fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn correlation_id_is_kept_or_generated() {
        assert_eq!(correlation_id(&map(&[(CORRELATION_ID, "abc-1")])), "abc-1");
        let generated = correlation_id(&map(&[(CORRELATION_ID, " ")]));
        assert_eq!(generated.len(), 36);
    }

    #[test]
    fn routing_history_appends_and_detects_loops() {
        assert_eq!(
            routing_history(&HeaderMap::new(), "SE1", "rtp").unwrap(),
            "SE1#rtp"
        );
        assert_eq!(
            routing_history(&map(&[(ROUTING_HISTORY, "SE1#ntjp")]), "SE1", "rtp").unwrap(),
            "SE1#ntjp#rtp"
        );
        let fault = routing_history(&map(&[(ROUTING_HISTORY, "SE1# rtp #ntjp")]), "SE1", "rtp")
            .unwrap_err();
        assert_eq!(fault.code, FaultCode::Vp014);
        // A hop that merely contains our id is not us.
        assert!(routing_history(&map(&[(ROUTING_HISTORY, "rtp2")]), "SE1", "rtp").is_ok());
    }

    #[test]
    fn original_consumer_from_the_sender_or_a_trusted_caller_only() {
        let trusted = |s: &str| s == "AGP";
        assert_eq!(
            original_consumer(&HeaderMap::new(), "SE1", trusted).unwrap(),
            "SE1"
        );
        let claimed = map(&[(ORIGINAL_CONSUMER, "SE9")]);
        assert_eq!(original_consumer(&claimed, "AGP", trusted).unwrap(), "SE9");
        assert_eq!(
            original_consumer(&claimed, "SE1", trusted)
                .unwrap_err()
                .code,
            FaultCode::Vp013
        );
    }

    #[test]
    fn upstream_headers_drop_internal_and_hop_by_hop_and_set_identity() {
        let incoming = map(&[
            ("connection", "keep-alive, x-custom"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("x-vp-sender-id", "SPOOF"),
            ("x-vp-instance-id", "ntjp"),
            ("x-forwarded-for", "10.0.0.1"),
            (ORIGINAL_CONSUMER, "SPOOF"),
            (ACTING_ON_BEHALF_OF, "SE-AOB"),
            ("soapaction", "urn:x:Op"),
            ("host", "proxy"),
            ("content-length", "10"),
            ("x-rivta-test1", "kept"),
            ("x-rtp-actor-employee-hsaid", "SE-EMPLOYEE"),
        ]);
        let identity = ForwardedIdentity {
            correlation_id: "c1".into(),
            original_consumer: "SE1".into(),
            routing_history: "SE1#rtp".into(),
            vp_sender_id: Some("SE-RTP".into()),
        };
        let out = upstream_request_headers(&incoming, &identity);
        for gone in [
            "connection",
            "x-custom",
            "keep-alive",
            "x-vp-instance-id",
            "x-forwarded-for",
            "host",
            "content-length",
            "x-rtp-actor-employee-hsaid",
        ] {
            assert!(out.get(gone).is_none(), "{gone} should be removed");
        }
        assert_eq!(out[VP_SENDER_ID], "SE-RTP");
        assert_eq!(out[ORIGINAL_CONSUMER], "SE1");
        assert_eq!(out[ACTING_ON_BEHALF_OF], "SE-AOB");
        assert_eq!(out["soapaction"], "urn:x:Op");
        assert_eq!(out["x-rivta-test1"], "kept");
        assert_eq!(out[CORRELATION_ID], "c1");
        assert_eq!(out[ROUTING_HISTORY], "SE1#rtp");
    }

    #[test]
    fn response_headers_lose_soapaction_and_gain_correlation_and_prt() {
        let mut h = map(&[
            ("soapaction", "x"),
            ("content-type", "text/xml"),
            ("transfer-encoding", "chunked"),
        ]);
        downstream_response_headers(&mut h, "c1", 12);
        assert!(h.get("soapaction").is_none());
        assert!(h.get("transfer-encoding").is_none());
        assert_eq!(h[CORRELATION_ID], "c1");
        assert_eq!(h[PRODUCER_RESPONSE_TIME], "12");
        assert_eq!(h["content-type"], "text/xml");
    }
}
