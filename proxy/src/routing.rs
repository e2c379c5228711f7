//! Which upstream a call goes to: the first `[[route]]` whose contract, logical-address
//! and (optional) sender patterns all match. Matching is case-insensitive, as NTjP's TAK
//! lookups are. Like NTjP, the URL path and SOAPAction play no part.

use std::sync::Arc;
use std::time::Duration;

use wildmatch::WildMatch;

use crate::config::{millis, Config};
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::policy::Pipeline;
use crate::upstream::Upstream;

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    contract: WildMatch,
    logical_address: WildMatch,
    sender: Option<WildMatch>,
    pub upstream: Arc<Upstream>,
    /// Fixed upstream path, instead of the incoming one.
    pub path: Option<String>,
    pub response_timeout: Duration,
    /// The route's policies; empty for a pure relay.
    pub pipeline: Pipeline,
    /// The second upstream calls are copied to and compared with, if any.
    pub mirror: Option<Mirror>,
}

impl Route {
    fn matches(&self, contract: &str, logical_address: &str, sender: &str) -> bool {
        self.contract.matches(contract)
            && self.logical_address.matches(logical_address)
            && self.sender.as_ref().is_none_or(|s| s.matches(sender))
    }
}

/// The ordered route table.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Builds the table; `upstreams` holds one client per configured upstream and
    /// `pipelines` one pipeline per route, in config order. The config has been
    /// validated, so every route's upstream (and mirror upstream) exists.
    pub fn new(
        config: &Config,
        upstreams: &[Arc<Upstream>],
        pipelines: Vec<Pipeline>,
        metrics: &Arc<Metrics>,
    ) -> Router {
        let routes = config
            .routes
            .iter()
            .zip(
                pipelines
                    .into_iter()
                    .chain(std::iter::repeat_with(Pipeline::default)),
            )
            .filter_map(|(route, pipeline)| {
                let name = config.route_upstream(route)?;
                let upstream = upstreams.iter().find(|u| u.name == name)?.clone();
                let timeout = route
                    .response_timeout_ms
                    .map(millis)
                    .unwrap_or(upstream.response_timeout);
                let mirror = route.mirror.as_ref().and_then(|m| {
                    let target = upstreams.iter().find(|u| u.name == m.upstream)?.clone();
                    Some(Mirror::new(&route.name, m, target, metrics.clone()))
                });
                Some(Route {
                    name: route.name.clone(),
                    contract: WildMatch::new_case_insensitive(&route.contract),
                    logical_address: WildMatch::new_case_insensitive(&route.logical_address),
                    sender: route.sender.as_deref().map(WildMatch::new_case_insensitive),
                    upstream,
                    path: route.path.clone(),
                    response_timeout: timeout,
                    pipeline,
                    mirror,
                })
            })
            .collect();
        Router { routes }
    }

    /// How many policies the routes hold in all.
    pub fn policy_count(&self) -> usize {
        self.routes.iter().map(|r| r.pipeline.slots().len()).sum()
    }

    pub fn find(&self, contract: &str, logical_address: &str, sender: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matches(contract, logical_address, sender))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn first_matching_route_wins_case_insensitively() {
        let text = r#"
[proxy]
instance_id = "rtp"
default_upstream = "ntjp"
[http]
listen = "127.0.0.1:0"
allowed_sources = ["127.0.0.1"]
[[upstream]]
name = "ntjp"
url = "http://127.0.0.1:1"
[[upstream]]
name = "direct"
url = "http://127.0.0.1:2"
response_timeout_ms = 5000
[[route]]
name = "lab-from-one-consumer"
contract = "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:*"
sender = "SE2321000016-A*"
upstream = "direct"
response_timeout_ms = 1000
[[route]]
name = "care-documentation"
contract = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:*"
logical_address = "SE2321000016-*"
upstream = "direct"
"#;
        let config = Config::parse(text, Path::new("t.toml"), Path::new(".")).unwrap();
        let upstreams: Vec<Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| Arc::new(Upstream::new(u, &config).unwrap()))
            .collect();
        let router = Router::new(&config, &upstreams, Vec::new(), &Metrics::detached());
        let lab =
            "urn:riv:clinicalprocess:healthcond:actoutcome:GetLaboratoryOrderOutcomeResponder:4";
        let route = router.find(lab, "X", "se2321000016-a12b").unwrap();
        assert_eq!(route.name, "lab-from-one-consumer");
        assert_eq!(route.response_timeout, Duration::from_millis(1000));
        assert!(router.find(lab, "X", "SE999").is_none());
        let cd = "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2";
        let route = router.find(cd, "SE2321000016-7P3S", "anyone").unwrap();
        assert_eq!(route.upstream.name, "direct");
        assert_eq!(route.response_timeout, Duration::from_millis(5000));
        assert!(router.find(cd, "SE999", "anyone").is_none());
    }
}
