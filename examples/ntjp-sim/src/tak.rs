//! TAK lookups: routing (vägval) and authorisation (behörighet), ntjp-vp.md 3.4-3.5.
//!
//! The simulator implements the exact match and the standard route/permission
//! (`*`); HSA tree climbing and old-style `VG#VE` addresses are not simulated.
//! Matching is case-insensitive, but the logical address is not trimmed: like VP,
//! a stray space makes the lookup fail (VP004).

use crate::config::{PermissionConfig, RouteConfig};
use crate::vp::{VpCode, VpFault};

/// The wildcard logical address (standardvägval / standardbehörighet).
pub const DEFAULT_ADDRESS: &str = "*";

/// Finds the producer for (contract, logical address): exact match, else the default route.
pub fn route<'a>(
    routes: &'a [RouteConfig],
    contract: &str,
    logical_address: &str,
) -> Result<&'a RouteConfig, VpFault> {
    let for_contract = || {
        routes
            .iter()
            .filter(move |r| r.contract.eq_ignore_ascii_case(contract))
    };
    for_contract()
        .find(|r| r.logical_address.eq_ignore_ascii_case(logical_address))
        .or_else(|| for_contract().find(|r| r.logical_address == DEFAULT_ADDRESS))
        .ok_or_else(|| {
            let mut detail = format!(
                "No receiverId (logical address) found for serviceNamespace: {contract}, receiverId: {logical_address}"
            );
            if logical_address.trim() != logical_address {
                detail.push_str(". Whitespace detected in incoming request!");
            }
            VpFault::new(VpCode::Vp004, detail)
        })
}

/// Checks (sender, contract, logical address): exact, else the standard permission `*`.
pub fn authorise(
    permissions: &[PermissionConfig],
    sender: &str,
    contract: &str,
    logical_address: &str,
) -> Result<(), VpFault> {
    let allowed = permissions.iter().any(|p| {
        p.sender.eq_ignore_ascii_case(sender)
            && p.contract.eq_ignore_ascii_case(contract)
            && (p.logical_address.eq_ignore_ascii_case(logical_address)
                || p.logical_address == DEFAULT_ADDRESS)
    });
    if allowed {
        Ok(())
    } else {
        Err(VpFault::new(
            VpCode::Vp007,
            format!(
                "Authorization missing for serviceNamespace: {contract}, receiverId: {logical_address}, senderId: {sender}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(c: &str, la: &str, p: &str) -> RouteConfig {
        RouteConfig {
            contract: c.into(),
            logical_address: la.into(),
            producer: p.into(),
        }
    }

    #[test]
    fn exact_then_default() {
        let routes = vec![r("urn:a", "*", "def"), r("urn:a", "SE1", "one")];
        assert_eq!(
            route(&routes, "URN:A", "se1").map(|x| x.producer.as_str()),
            Ok("one")
        );
        assert_eq!(
            route(&routes, "urn:a", "SE2").map(|x| x.producer.as_str()),
            Ok("def")
        );
        let err = route(&routes, "urn:b", "SE1").expect_err("no route");
        assert_eq!(err.code, VpCode::Vp004);
        let only_exact = vec![r("urn:a", "SE1", "one")];
        let err = route(&only_exact, "urn:a", " SE1").expect_err("whitespace");
        assert!(err.detail.contains("Whitespace"));
    }

    #[test]
    fn permissions() {
        let perms = vec![PermissionConfig {
            sender: "S1".into(),
            contract: "urn:a".into(),
            logical_address: "*".into(),
        }];
        assert!(authorise(&perms, "s1", "urn:a", "X").is_ok());
        assert_eq!(
            authorise(&perms, "S2", "urn:a", "X").map_err(|e| e.code),
            Err(VpCode::Vp007)
        );
    }
}
