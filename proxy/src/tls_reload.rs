//! TLS material replaced while the proxy runs. Certificates are renewed (a SITHS
//! function certificate before it expires, a cert-manager secret in Kubernetes) and a
//! restart for each would drop calls. A [`TlsFiles`] holds what was built from a set of
//! PEM files (the listener's rustls config, an upstream's client) and rebuilds it when
//! their content changes.
//!
//! A connection takes the value in force when it starts; one already open keeps its
//! certificate until it closes, so no call is cut off. A rebuild that fails keeps the
//! running value and says which file and why: a key that does not match its
//! certificate (only one of the two written yet; the write of the other is the next
//! change and the next check), a garbled or missing file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::tls::{Revocation, TlsError};

/// What a check of a [`TlsFiles`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOutcome {
    /// The files' content is what the value in force was built from.
    Unchanged,
    /// A value built from the changed files is in force.
    Reloaded,
    /// The changed files did not build; the value in force stays.
    Failed(String),
}

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// When what a TLS configuration relies on runs out, as read from its files when it was
/// last built: for alerts well before a certificate expires or a revocation list goes
/// stale (a stale list refuses every peer it covers unless `allow_expired_crls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validity {
    /// The notAfter of the certificate presented, Unix seconds.
    pub certificate_not_after: Option<i64>,
    /// Each revocation list file's earliest nextUpdate, Unix seconds.
    pub crl_next_update: Vec<(PathBuf, i64)>,
    /// Whether the lists are still used past their nextUpdate (`allow_expired_crls`):
    /// then a stale list is a warning, else it refuses every peer it covers.
    pub stale_crls_accepted: bool,
}

/// Which of a configuration's files [`Validity`] is read from.
#[derive(Debug, Clone, Default)]
struct ValidityFiles {
    presented: Option<PathBuf>,
    crls: Vec<PathBuf>,
    stale_crls_accepted: bool,
}

impl ValidityFiles {
    /// What the files say now; a file that cannot be read adds nothing (the build has
    /// already proved them, and the next check reads them again).
    fn read(&self) -> Validity {
        Validity {
            certificate_not_after: self
                .presented
                .as_deref()
                .and_then(|cert| crate::tls::not_after(cert).ok()),
            crl_next_update: self
                .crls
                .iter()
                .filter_map(|file| {
                    let next = crate::tls::crl_next_update(file).ok().flatten()?;
                    Some((file.clone(), next))
                })
                .collect(),
            stale_crls_accepted: self.stale_crls_accepted,
        }
    }
}

/// A value built from PEM files, rebuilt by [`TlsFiles::refresh`] when they change.
pub struct TlsFiles<T> {
    /// What it is, for logs, metrics and the reload report: `https listener`,
    /// `upstream ntjp`.
    what: String,
    files: Vec<PathBuf>,
    /// The hash of the files' content the value in force was built from.
    built_from: Mutex<Option<String>>,
    build: Build<T>,
    current: ArcSwap<T>,
    validity_files: ValidityFiles,
    validity: Mutex<Validity>,
}

impl<T> std::fmt::Debug for TlsFiles<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl<T> TlsFiles<T> {
    /// Builds the first value; `build` reads `files` (and only those) each time.
    pub fn load(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<TlsFiles<T>, TlsError> {
        // Hashed before the build reads them: a file changed in between has another
        // hash at the next check, which then builds again (never the other way round).
        let hash = content_hash(&files).ok();
        let value = build()?;
        Ok(TlsFiles {
            what: what.into(),
            files,
            built_from: Mutex::new(hash),
            build: Box::new(build),
            current: ArcSwap::from_pointee(value),
            validity_files: ValidityFiles::default(),
            validity: Mutex::new(Validity::default()),
        })
    }

    /// Reports the validity of `presented` (the certificate this configuration shows
    /// its peers) and of `revocation`'s lists.
    pub fn reporting(mut self, presented: Option<PathBuf>, revocation: &Revocation) -> TlsFiles<T> {
        self.validity_files = ValidityFiles {
            presented,
            crls: revocation.crls.clone(),
            stale_crls_accepted: revocation.allow_expired,
        };
        self.validity = Mutex::new(self.validity_files.read());
        self
    }

    /// When the certificate and lists in force run out.
    pub fn validity(&self) -> Validity {
        self.validity.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The same, called `what` in logs, metrics and reports.
    pub fn named(mut self, what: impl Into<String>) -> TlsFiles<T> {
        self.what = what.into();
        self
    }

    /// The value in force.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Borrows the value in force without taking a reference count (per call).
    pub fn with_current<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.current.load())
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// The files the value is built from (none for a plain-HTTP upstream).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Rebuilds the value if the files' content changed since it was built.
    pub fn refresh(&self) -> TlsOutcome {
        if self.files.is_empty() {
            return TlsOutcome::Unchanged;
        }
        let hash = match content_hash(&self.files) {
            Ok(hash) => hash,
            Err(message) => return self.failed(message),
        };
        let Ok(mut built_from) = self.built_from.lock() else {
            return TlsOutcome::Unchanged;
        };
        if built_from.as_deref() == Some(hash.as_str()) {
            return TlsOutcome::Unchanged;
        }
        match (self.build)() {
            Ok(value) => {
                self.current.store(Arc::new(value));
                *built_from = Some(hash);
                if let Ok(mut validity) = self.validity.lock() {
                    *validity = self.validity_files.read();
                }
                tracing::info!(what = %self.what, "TLS certificate and key reloaded; new connections use them");
                TlsOutcome::Reloaded
            }
            Err(e) => self.failed(e.to_string()),
        }
    }

    fn failed(&self, message: String) -> TlsOutcome {
        tracing::error!(what = %self.what, error = %message, "TLS reload failed; the certificate in force stays");
        TlsOutcome::Failed(message)
    }
}

/// Something with TLS files to check: the listener's config or an upstream's client.
pub trait RefreshTls: Send + Sync {
    fn what(&self) -> &str;
    fn files(&self) -> &[PathBuf];
    fn refresh(&self) -> TlsOutcome;
    fn validity(&self) -> Validity;
}

impl<T: Send + Sync> RefreshTls for TlsFiles<T> {
    fn what(&self) -> &str {
        TlsFiles::what(self)
    }

    fn files(&self) -> &[PathBuf] {
        TlsFiles::files(self)
    }

    fn refresh(&self) -> TlsOutcome {
        TlsFiles::refresh(self)
    }

    fn validity(&self) -> Validity {
        TlsFiles::validity(self)
    }
}

/// The files' content hashes, in order; an unreadable file is an error naming it.
fn content_hash(files: &[PathBuf]) -> Result<String, String> {
    let hashes = files
        .iter()
        .map(|file| {
            crate::reload::content_hash(file)
                .map_err(|e| format!("{}: cannot read: {e}", file.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(hashes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A "build" that reads the file as a number, refusing anything else.
    fn number_files(dir: &Path) -> TlsFiles<u32> {
        let file = dir.join("value.pem");
        let read_from = file.clone();
        TlsFiles::load("test value", vec![file], move || {
            let text = std::fs::read_to_string(&read_from).map_err(|e| TlsError::File {
                path: read_from.clone(),
                message: e.to_string(),
            })?;
            text.trim().parse().map_err(|_| TlsError::File {
                path: read_from.clone(),
                message: format!("not a number: {text:?}"),
            })
        })
        .expect("first value builds")
    }

    #[test]
    fn a_changed_file_is_rebuilt_once_and_a_broken_one_keeps_the_value_in_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("value.pem"), "1").unwrap();
        let files = number_files(dir.path());
        assert_eq!(*files.current(), 1);
        assert_eq!(files.refresh(), TlsOutcome::Unchanged);

        std::fs::write(dir.path().join("value.pem"), "2").unwrap();
        assert_eq!(files.refresh(), TlsOutcome::Reloaded);
        assert_eq!(*files.current(), 2);
        assert_eq!(
            files.refresh(),
            TlsOutcome::Unchanged,
            "built once per change"
        );

        std::fs::write(dir.path().join("value.pem"), "garbled").unwrap();
        match files.refresh() {
            TlsOutcome::Failed(message) => {
                assert!(message.contains("value.pem"), "names the file: {message}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(*files.current(), 2, "the value in force stays");

        std::fs::remove_file(dir.path().join("value.pem")).unwrap();
        match files.refresh() {
            TlsOutcome::Failed(message) => assert!(message.contains("cannot read")),
            other => panic!("expected a failure, got {other:?}"),
        }
        std::fs::write(dir.path().join("value.pem"), "3").unwrap();
        assert_eq!(files.refresh(), TlsOutcome::Reloaded, "mended: built again");
        assert_eq!(files.with_current(|v| *v), 3);
    }

    #[test]
    fn no_files_never_change() {
        let files = TlsFiles::load("plain", Vec::new(), || Ok(7)).unwrap();
        assert_eq!(files.refresh(), TlsOutcome::Unchanged);
        assert!(files.files().is_empty());
    }
}
