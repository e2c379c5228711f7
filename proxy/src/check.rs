//! `rtp-proxy check`: everything a start loads, loaded and proved without binding a port
//! or opening the journal. The config is parsed and validated (file and line on error).
//! Every upstream's TLS files are read, and so are the listener's certificate, key,
//! client CA and revocation lists. Every policy is compiled and initialised with its
//! settings. Run before a deploy, it also says when the certificates and lists run out,
//! and it fails on one that already has: with that, the proxy would refuse every call or
//! be refused by NTjP.

use std::fmt;
use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::relay::{BuildError, Relay};
use crate::tls::TlsError;
use crate::tls_reload::{RefreshTls, Validity};

/// A certificate expiring sooner than this is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// What `check` found in a config that loads.
#[derive(Debug)]
pub struct CheckReport {
    pub upstreams: usize,
    pub routes: usize,
    pub policies: usize,
    /// Per TLS configuration (`https listener`, `upstream <name>`): when its
    /// certificate and revocation lists run out.
    pub tls: Vec<(String, Validity)>,
    /// Certificates close to expiry, revocation lists past their nextUpdate where
    /// `allow_expired_crls` accepts them.
    pub warnings: Vec<String>,
}

/// Why a config does not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: {source}")]
    Build { file: String, source: BuildError },
    #[error("{file}: [https]: {source}")]
    Listener { file: String, source: TlsError },
    #[error("{file}: {}", .problems.join("; "))]
    Expired { file: String, problems: Vec<String> },
}

/// Checks the config at `path` as of `now` (Unix seconds).
pub async fn check(path: &Path, now: i64) -> Result<CheckReport, CheckError> {
    let file = path.display().to_string();
    let config = Config::load(path)?;
    let relay = Relay::build(&config)
        .await
        .map_err(|source| CheckError::Build {
            file: file.clone(),
            source,
        })?;
    let mut tls: Vec<(String, Validity)> = Vec::new();
    if let Some(https) = &config.https {
        let listener =
            crate::server::listener_tls(&config, https).map_err(|source| CheckError::Listener {
                file: file.clone(),
                source,
            })?;
        tls.push((listener.what().to_owned(), listener.validity()));
    }
    for upstream in relay.upstreams() {
        tls.push((upstream.what().to_owned(), upstream.validity()));
    }
    let (problems, warnings) = judge(&tls, now);
    if !problems.is_empty() {
        return Err(CheckError::Expired { file, problems });
    }
    Ok(CheckReport {
        upstreams: config.upstreams.len(),
        routes: config.routes.len(),
        policies: relay.policy_count(),
        tls,
        warnings,
    })
}

/// What has run out (problems) and what will soon (warnings).
fn judge(tls: &[(String, Validity)], now: i64) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for (what, validity) in tls {
        if let Some(not_after) = validity.certificate_not_after {
            if not_after <= now {
                problems.push(format!(
                    "{what}: the certificate expired at {}",
                    utc(not_after)
                ));
            } else if not_after - now < EXPIRY_WARNING_DAYS * DAY {
                warnings.push(format!(
                    "{what}: the certificate expires in {} day(s), at {}",
                    (not_after - now) / DAY,
                    utc(not_after)
                ));
            }
        }
        for (file, next_update) in &validity.crl_next_update {
            if *next_update > now {
                continue;
            }
            let text = format!(
                "{what}: the revocation list {} was due for renewal at {}",
                file.display(),
                utc(*next_update)
            );
            if validity.stale_crls_accepted {
                warnings.push(format!("{text} (accepted: allow_expired_crls)"));
            } else {
                problems.push(format!(
                    "{text}: every peer it covers would be refused in the handshake"
                ));
            }
        }
    }
    (problems, warnings)
}

/// A Unix time as RFC 3339 in UTC.
fn utc(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{seconds} (Unix seconds)"))
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "OK ({} upstream(s), {} route(s), {} policy(ies))",
            self.upstreams, self.routes, self.policies
        )?;
        for (what, validity) in &self.tls {
            if let Some(not_after) = validity.certificate_not_after {
                writeln!(f, "  {what}: certificate valid until {}", utc(not_after))?;
            }
            for (file, next_update) in &validity.crl_next_update {
                writeln!(
                    f,
                    "  {what}: revocation list {} next update {}",
                    file.display(),
                    utc(*next_update)
                )?;
            }
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const NOW: i64 = 1_800_000_000;

    fn certificate(days: i64) -> Validity {
        Validity {
            certificate_not_after: Some(NOW + days * DAY),
            ..Validity::default()
        }
    }

    #[test]
    fn an_expired_certificate_fails_and_one_close_to_expiry_is_warned_about() {
        let tls = [
            ("https listener".to_owned(), certificate(-1)),
            ("upstream ntjp".to_owned(), certificate(10)),
            ("upstream other".to_owned(), certificate(400)),
        ];
        let (problems, warnings) = judge(&tls, NOW);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("https listener: the certificate expired at"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("upstream ntjp: the certificate expires in 10 day(s)"));
    }

    #[test]
    fn a_stale_revocation_list_fails_unless_allowed() {
        let stale = Validity {
            certificate_not_after: Some(NOW + 400 * DAY),
            crl_next_update: vec![
                (PathBuf::from("/tls/fresh.crl"), NOW + DAY),
                (PathBuf::from("/tls/stale.crl"), NOW - DAY),
            ],
            stale_crls_accepted: false,
        };
        let mut tls = [("https listener".to_owned(), stale)];
        let (problems, warnings) = judge(&tls, NOW);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("/tls/stale.crl") && problems[0].contains("refused"));
        assert!(warnings.is_empty());

        tls[0].1.stale_crls_accepted = true;
        let (problems, warnings) = judge(&tls, NOW);
        assert!(problems.is_empty());
        assert!(
            warnings[0].contains("accepted: allow_expired_crls"),
            "{warnings:?}"
        );
    }
}
