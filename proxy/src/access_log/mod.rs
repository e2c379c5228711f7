//! The PDL access log: every access a policy records becomes a StoreLog 1 `LogType`
//! entry (`reference/riv-contracts.md` §2.4), written to a durable journal before the
//! response it covers is released, then delivered to the log service.
//!
//! - [`journal`]: append-only JSON-lines files in `[access_log] dir`. Appends are
//!   group-committed by one writer thread: whatever is pending is written together and
//!   fsync'ed once, then every waiter is told. A torn last line after a crash is cut off
//!   at the next open; everything before it is kept.
//! - [`delivery`]: a background task reads undelivered entries from the journal and sends
//!   them with StoreLog 1 (logical address: the user's care provider, whose log it is),
//!   in batches, retrying with bounded exponential backoff. The delivery cursor is
//!   persisted (fsync'ed) only after the log service answered OK, so delivery is
//!   at-least-once and survives restarts; fully delivered journal files are deleted.
//!
//! Personal data: entries hold the personnummer; they go to the journal files (mode 0600
//! in a 0700 directory) and to the log service, never into a log line or an error text.
//! `Debug` of an entry masks it.

pub mod delivery;
pub mod journal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{millis, AccessLogConfig, Config};
use crate::policy::{AccessContext, AccessEntry, AccessSink};
use crate::upstream::Upstream;

pub use delivery::{DeliveryHandle, DeliveryTask};
pub use journal::Position;

/// The time zone of `Activity/StartDate`.
const SWEDISH_TIME_ZONE: &str = "Europe/Stockholm";

/// One StoreLog 1 `LogType` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// `LogId`: a UUID v4, assigned by [`AccessJournal::append`].
    pub log_id: String,
    /// `System`: the configured system, set by [`AccessJournal::append`].
    pub system: LogSystem,
    pub activity: LogActivity,
    pub user: LogUser,
    /// `Resources/Resource`, one or more.
    pub resources: Vec<LogResource>,
}

/// `System`: the system that created the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSystem {
    pub system_id: String,
    pub system_name: Option<String>,
}

/// `Activity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogActivity {
    /// `Läsa` or `Nödöppning`.
    pub activity_type: String,
    /// Swedish local time, `YYYY-MM-DDThh:mm:ss`.
    pub start_date: String,
    /// e.g. `Vård och behandling`.
    pub purpose: String,
}

/// `User`: who accessed, with their care provider and care unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogUser {
    pub user_id: String,
    pub care_provider_id: String,
    pub care_unit_id: String,
}

/// `Resource`: whose information about which patient was accessed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogResource {
    pub resource_type: String,
    pub patient_id: String,
    /// Owner of the information.
    pub care_provider_id: String,
    pub care_unit_id: Option<String>,
}

impl std::fmt::Debug for LogResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogResource")
            .field("resource_type", &self.resource_type)
            .field("patient_id", &"<masked>")
            .field("care_provider_id", &self.care_provider_id)
            .field("care_unit_id", &self.care_unit_id)
            .finish()
    }
}

impl std::fmt::Debug for JournalEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalEntry")
            .field("log_id", &self.log_id)
            .field("system", &self.system)
            .field("activity", &self.activity)
            .field("user", &self.user)
            .field("resources", &self.resources)
            .finish()
    }
}

impl JournalEntry {
    /// The entry for an access a policy recorded: one resource per distinct owner of
    /// the released records, or, when none were released, one owned by the user's own
    /// care provider and unit (the access itself is what is logged). `LogId` and
    /// `System` are left for [`AccessJournal::append`] to fill in.
    pub fn from_access(
        access: &AccessEntry,
        resource_type: &str,
        at: SystemTime,
    ) -> Result<JournalEntry, JournalError> {
        let patient_id = access.patient_id.trim().to_owned();
        let resource = |provider: &str, unit: Option<&str>| LogResource {
            resource_type: resource_type.to_owned(),
            patient_id: patient_id.clone(),
            care_provider_id: provider.to_owned(),
            care_unit_id: unit.map(str::to_owned),
        };
        let mut resources: Vec<LogResource> = Vec::new();
        for owner in &access.owners {
            let r = resource(owner.care_provider.trim(), owner.care_unit.as_deref());
            if !resources.contains(&r) {
                resources.push(r);
            }
        }
        if resources.is_empty() {
            resources.push(resource(
                access.care_provider.trim(),
                Some(access.care_unit.trim()),
            ));
        }
        Ok(JournalEntry {
            log_id: String::new(),
            system: LogSystem::default(),
            activity: LogActivity {
                activity_type: access.activity.clone(),
                start_date: swedish_local_time(at)?,
                purpose: access.purpose.clone(),
            },
            user: LogUser {
                user_id: access.user.trim().to_owned(),
                care_provider_id: access.care_provider.trim().to_owned(),
                care_unit_id: access.care_unit.trim().to_owned(),
            },
            resources,
        })
    }

    /// Every field StoreLog makes mandatory is there (besides LogId and System).
    pub fn validate(&self) -> Result<(), JournalError> {
        let missing = |what: &str| Err(JournalError::Invalid(format!("entry without {what}")));
        let required = [
            ("ActivityType", &self.activity.activity_type),
            ("StartDate", &self.activity.start_date),
            ("Purpose", &self.activity.purpose),
            ("UserId", &self.user.user_id),
            ("the user's CareProviderId", &self.user.care_provider_id),
            ("the user's CareUnitId", &self.user.care_unit_id),
        ];
        for (what, value) in required {
            if value.trim().is_empty() {
                return missing(what);
            }
        }
        if self.resources.is_empty() {
            return missing("Resources");
        }
        for r in &self.resources {
            if r.resource_type.trim().is_empty() {
                return missing("ResourceType");
            }
            if r.patient_id.trim().is_empty() {
                return missing("PatientId");
            }
            if r.care_provider_id.trim().is_empty() {
                return missing("the owner's CareProviderId");
            }
        }
        Ok(())
    }
}

/// `at` as Swedish local time, `YYYY-MM-DDThh:mm:ss`.
pub fn swedish_local_time(at: SystemTime) -> Result<String, JournalError> {
    static ZONE: OnceLock<Result<jiff::tz::TimeZone, String>> = OnceLock::new();
    let zone = ZONE
        .get_or_init(|| jiff::tz::TimeZone::get(SWEDISH_TIME_ZONE).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| JournalError::Invalid(format!("time zone {SWEDISH_TIME_ZONE}: {e}")))?;
    let timestamp = jiff::Timestamp::try_from(at)
        .map_err(|e| JournalError::Invalid(format!("timestamp: {e}")))?;
    Ok(zone
        .to_datetime(timestamp)
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string())
}

/// Why the journal could not take or keep entries. Texts name files and causes, never
/// entry contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("the config has no [access_log]")]
    NotConfigured,
    #[error("access-log journal: {context}: {message}")]
    Io { context: String, message: String },
    #[error("access-log journal directory {0} is in use by another process")]
    Locked(PathBuf),
    #[error("access-log journal is closed")]
    Closed,
    #[error("access-log journal failed earlier and takes no more entries until restarted: {0}")]
    Failed(String),
    #[error("access-log entry refused: {0}")]
    Invalid(String),
    #[error("access-log delivery: {0}")]
    Delivery(String),
}

impl JournalError {
    pub(crate) fn io(context: impl Into<String>, e: &std::io::Error) -> JournalError {
        JournalError::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

/// Counters for metrics: all cheap to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Entries written but not yet delivered.
    pub depth: u64,
    /// Age of the oldest undelivered entry (zero when none).
    pub delivery_lag: Duration,
    /// Entries appended since the journal was opened.
    pub appended_total: u64,
    /// Group commits (fsyncs) since the journal was opened.
    pub commits_total: u64,
    /// Entries the log service confirmed since the journal was opened.
    pub delivered_total: u64,
    /// Failed delivery attempts since the journal was opened.
    pub delivery_failures_total: u64,
    /// Unreadable journal lines skipped (corruption in the middle of a file).
    pub skipped_lines_total: u64,
}

/// State shared by the journal handle, its writer thread and the delivery task.
pub(crate) struct Shared {
    backlog: Mutex<Backlog>,
    appended_total: AtomicU64,
    commits_total: AtomicU64,
    delivered_total: AtomicU64,
    delivery_failures_total: AtomicU64,
    skipped_lines_total: AtomicU64,
    last_delivery_error: Mutex<Option<String>>,
    /// How far the journal is durably written; delivery reads up to here.
    committed: watch::Sender<Position>,
}

#[derive(Debug, Default)]
struct Backlog {
    depth: u64,
    /// Unix millis of the oldest undelivered entry, while there is one.
    oldest_ms: Option<u64>,
}

impl Shared {
    fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer made `count` entries durable, the first appended at `first_ms`.
    pub(crate) fn committed(&self, count: u64, first_ms: u64, position: Position) {
        {
            let mut backlog = self.backlog();
            backlog.depth += count;
            backlog.oldest_ms.get_or_insert(first_ms);
        }
        self.appended_total.fetch_add(count, Ordering::Relaxed);
        self.commits_total.fetch_add(1, Ordering::Relaxed);
        self.committed.send_replace(position);
    }

    /// The writer moved on to a new file.
    pub(crate) fn rotated(&self, position: Position) {
        self.committed.send_replace(position);
    }

    /// Delivery is working on entries from `oldest_ms` on.
    pub(crate) fn delivering(&self, oldest_ms: u64) {
        let mut backlog = self.backlog();
        if backlog.depth > 0 {
            backlog.oldest_ms = Some(oldest_ms);
        }
    }

    /// The log service confirmed `count` entries.
    pub(crate) fn delivered(&self, count: u64) {
        {
            let mut backlog = self.backlog();
            backlog.depth = backlog.depth.saturating_sub(count);
            if backlog.depth == 0 {
                backlog.oldest_ms = None;
            }
        }
        self.delivered_total.fetch_add(count, Ordering::Relaxed);
        *self
            .last_delivery_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn delivery_failed(&self, error: &str) {
        self.delivery_failures_total.fetch_add(1, Ordering::Relaxed);
        *self
            .last_delivery_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(error.to_owned());
    }

    pub(crate) fn skipped_lines(&self, count: u64) {
        if count > 0 {
            self.skipped_lines_total.fetch_add(count, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> JournalStats {
        let (depth, oldest_ms) = {
            let backlog = self.backlog();
            (backlog.depth, backlog.oldest_ms)
        };
        let delivery_lag = match oldest_ms {
            Some(oldest) if depth > 0 => Duration::from_millis(now_ms().saturating_sub(oldest)),
            _ => Duration::ZERO,
        };
        JournalStats {
            depth,
            delivery_lag,
            appended_total: self.appended_total.load(Ordering::Relaxed),
            commits_total: self.commits_total.load(Ordering::Relaxed),
            delivered_total: self.delivered_total.load(Ordering::Relaxed),
            delivery_failures_total: self.delivery_failures_total.load(Ordering::Relaxed),
            skipped_lines_total: self.skipped_lines_total.load(Ordering::Relaxed),
        }
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The durable access-log journal. Cheap to clone: all clones append to one writer.
#[derive(Clone)]
pub struct AccessJournal {
    inner: Arc<JournalInner>,
}

struct JournalInner {
    tx: mpsc::Sender<journal::Message>,
    shared: Arc<Shared>,
    system: LogSystem,
    resource_type: String,
    dir: PathBuf,
}

impl std::fmt::Debug for AccessJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessJournal")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl AccessJournal {
    /// Opens (or creates) the journal of the config's `[access_log]`: takes the
    /// directory's lock, cuts a torn tail left by a crash, counts what is undelivered and
    /// starts the writer thread. The delivery task is returned unstarted (call
    /// [`DeliveryTask::spawn`]); none when `[access_log]` names no upstream. Delivery
    /// gets an upstream client of its own; [`AccessJournal::open_shared`] reuses one.
    pub fn open(config: &Config) -> Result<(AccessJournal, Option<DeliveryTask>), JournalError> {
        let settings = config
            .access_log
            .as_ref()
            .ok_or(JournalError::NotConfigured)?;
        let upstream = match &settings.upstream {
            Some(name) => {
                let upstream = config.upstream(name).ok_or_else(|| {
                    JournalError::Delivery(format!("no [[upstream]] is named {name:?}"))
                })?;
                let upstream = Upstream::new(upstream, config)
                    .map_err(|e| JournalError::Delivery(format!("upstream {name}: {e}")))?;
                Some(Arc::new(upstream.serving("access-log delivery")))
            }
            None => None,
        };
        AccessJournal::open_shared(config, upstream)
    }

    /// As [`AccessJournal::open`], delivering through `upstream` (e.g. the relay's client
    /// of the upstream `[access_log] upstream` names, sharing its connection pool). When
    /// the config names no upstream there is no delivery, whatever is given here.
    pub fn open_shared(
        config: &Config,
        upstream: Option<Arc<Upstream>>,
    ) -> Result<(AccessJournal, Option<DeliveryTask>), JournalError> {
        let settings = config
            .access_log
            .as_ref()
            .ok_or(JournalError::NotConfigured)?;
        let dir = config.resolve(&settings.dir);
        let opened = journal::open(&dir, settings.segment_bytes)?;
        let (committed, committed_rx) = watch::channel(opened.end);
        let shared = Arc::new(Shared {
            backlog: Mutex::new(Backlog {
                depth: opened.backlog,
                oldest_ms: opened.oldest_ms,
            }),
            appended_total: AtomicU64::new(0),
            commits_total: AtomicU64::new(0),
            delivered_total: AtomicU64::new(0),
            delivery_failures_total: AtomicU64::new(0),
            skipped_lines_total: AtomicU64::new(opened.skipped_lines),
            last_delivery_error: Mutex::new(None),
            committed,
        });
        if opened.backlog > 0 {
            tracing::info!(
                dir = %dir.display(),
                undelivered = opened.backlog,
                "access-log journal opened with undelivered entries"
            );
        }
        let lock = opened.lock.clone();
        let cursor = opened.cursor;
        let tx = journal::spawn_writer(opened, shared.clone())?;
        let delivery = match (&settings.upstream, upstream) {
            (Some(_), Some(upstream)) => Some(DeliveryTask::new(
                delivery::DeliverySettings::from_config(settings),
                upstream,
                dir.clone(),
                cursor,
                committed_rx,
                shared.clone(),
                lock,
            )?),
            _ => None,
        };
        let journal = AccessJournal {
            inner: Arc::new(JournalInner {
                tx,
                shared,
                system: LogSystem {
                    system_id: settings.system_id.trim().to_owned(),
                    system_name: Some(settings.system_name.clone()).filter(|n| !n.is_empty()),
                },
                resource_type: settings.resource_type.clone(),
                dir,
            }),
        };
        Ok((journal, delivery))
    }

    /// The entry for an access, with `information_type` (e.g. the contract's PDL
    /// information type) as `ResourceType`, else the configured `resource_type`.
    pub fn entry(
        &self,
        access: &AccessEntry,
        information_type: Option<&str>,
        at: SystemTime,
    ) -> Result<JournalEntry, JournalError> {
        let resource_type = information_type
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.inner.resource_type);
        JournalEntry::from_access(access, resource_type, at)
    }

    /// Appends entries. Resolves once they are written and fsync'ed (then, and only then,
    /// may the response they cover be released), or with the reason they are not. Each
    /// entry gets a fresh `LogId` and the configured `System`. Appends running at the
    /// same time are committed together: one write and one fsync for all of them.
    pub fn append(
        &self,
        entries: Vec<JournalEntry>,
    ) -> impl std::future::Future<Output = Result<(), JournalError>> + Send + 'static {
        let prepared = self.prepare(entries);
        let tx = self.inner.tx.clone();
        async move {
            let Some(request) = prepared? else {
                return Ok(());
            };
            let (done, wait) = oneshot::channel();
            tx.send(journal::Message::Append(journal::AppendRequest {
                lines: request.0,
                count: request.1,
                first_ms: request.2,
                done,
            }))
            .await
            .map_err(|_| JournalError::Closed)?;
            wait.await.map_err(|_| JournalError::Closed)?
        }
    }

    /// Builds entries for `accesses` at the current time and appends them.
    pub fn record(
        &self,
        accesses: &[AccessEntry],
        information_type: Option<&str>,
    ) -> impl std::future::Future<Output = Result<(), JournalError>> + Send + 'static {
        let now = SystemTime::now();
        let entries: Result<Vec<_>, _> = accesses
            .iter()
            .map(|a| self.entry(a, information_type, now))
            .collect();
        let journal = self.clone();
        async move { journal.append(entries?).await }
    }

    /// Serialised lines, entry count and append time; none for no entries.
    fn prepare(
        &self,
        entries: Vec<JournalEntry>,
    ) -> Result<Option<(Vec<u8>, u64, u64)>, JournalError> {
        if entries.is_empty() {
            return Ok(None);
        }
        let appended_ms = now_ms();
        let mut lines = Vec::with_capacity(entries.len() * 512);
        let count = entries.len() as u64;
        for mut entry in entries {
            entry.log_id = uuid::Uuid::new_v4().to_string();
            entry.system = self.inner.system.clone();
            entry.validate()?;
            journal::encode_line(&mut lines, appended_ms, &entry)?;
        }
        Ok(Some((lines, count, appended_ms)))
    }

    /// Entries written but not yet delivered.
    pub fn depth(&self) -> u64 {
        self.inner.shared.backlog().depth
    }

    /// Age of the oldest undelivered entry (zero when there is none).
    pub fn delivery_lag(&self) -> Duration {
        self.inner.shared.stats().delivery_lag
    }

    pub fn stats(&self) -> JournalStats {
        self.inner.shared.stats()
    }

    /// Why the last delivery attempt failed, until one succeeds.
    pub fn last_delivery_error(&self) -> Option<String> {
        self.inner
            .shared
            .last_delivery_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How far the journal is durably written.
    pub fn committed(&self) -> Position {
        *self.inner.shared.committed.borrow()
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// Stops taking entries: appends already sent are committed first, later ones get
    /// [`JournalError::Closed`]. Resolves when the writer has finished. The directory's
    /// lock is released once the delivery task (if any) has stopped too.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .inner
            .tx
            .send(journal::Message::Close(done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}

/// The journal as the policy host's access-log sink: entries get the current time and
/// the call's information type as `ResourceType` (the configured one when it is empty).
impl AccessSink for AccessJournal {
    fn append<'a>(
        &'a self,
        entries: Vec<AccessEntry>,
        context: &'a AccessContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        let recorded = self.record(&entries, Some(&context.information_type));
        Box::pin(async move { recorded.await.map_err(|e| e.to_string()) })
    }
}

/// Delivery settings in force, from `[access_log]`.
impl delivery::DeliverySettings {
    fn from_config(config: &AccessLogConfig) -> Self {
        delivery::DeliverySettings {
            path: config.path.clone(),
            batch_size: config.batch_size.max(1),
            retry_initial: millis(config.retry_initial_ms),
            retry_max: millis(config.retry_max_ms.max(config.retry_initial_ms)),
            timeout: millis(config.timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::journal::{read_batch, Position};
    use super::*;
    use crate::policy::capabilities::access_log::Owner;

    const PATIENT: &str = "191212121212";

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            r#"
[proxy]
instance_id = "t"
[http]
listen = "127.0.0.1:0"
allowed_sources = []
[[upstream]]
name = "ntjp"
url = "http://127.0.0.1:9"
[[route]]
name = "all"
upstream = "ntjp"
[access_log]
dir = "{dir}"
system_id = "SE-RTP"
{extra}
"#,
            dir = dir.display()
        );
        Config::parse(&text, Path::new("t.toml"), Path::new(".")).unwrap()
    }

    fn open(dir: &Path, extra: &str) -> AccessJournal {
        let (journal, delivery) = AccessJournal::open(&config(dir, extra)).unwrap();
        assert!(delivery.is_none());
        journal
    }

    fn access(owners: &[(&str, Option<&str>)]) -> AccessEntry {
        AccessEntry {
            user: "SE-USER".into(),
            care_unit: "SE-VE".into(),
            care_provider: "SE-VG".into(),
            activity: "Läsa".into(),
            purpose: "Vård och behandling".into(),
            patient_id: PATIENT.into(),
            owners: owners
                .iter()
                .map(|(p, u)| Owner {
                    care_provider: (*p).into(),
                    care_unit: u.map(Into::into),
                })
                .collect(),
        }
    }

    fn entries(journal: &AccessJournal, n: usize) -> Vec<JournalEntry> {
        (0..n)
            .map(|_| {
                journal
                    .entry(&access(&[]), Some("voo"), SystemTime::now())
                    .unwrap()
            })
            .collect()
    }

    fn read_all(dir: &Path) -> Vec<JournalEntry> {
        let to = Position {
            segment: u64::MAX,
            offset: u64::MAX,
        };
        let from = Position {
            segment: 0,
            offset: 0,
        };
        read_batch(dir, from, to, usize::MAX)
            .unwrap()
            .entries
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn entries_follow_the_storelog_shape() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_719_828_000); // 2024-07-01T10:00:00Z
        let e = JournalEntry::from_access(
            &access(&[
                ("SE-A", Some("SE-A1")),
                ("SE-B", None),
                ("SE-A", Some("SE-A1")),
            ]),
            "voo",
            at,
        )
        .unwrap();
        assert_eq!(e.activity.start_date, "2024-07-01T12:00:00");
        assert_eq!(e.resources.len(), 2, "owners are listed once each");
        assert_eq!(e.resources[0].care_provider_id, "SE-A");
        assert_eq!(e.resources[0].care_unit_id.as_deref(), Some("SE-A1"));
        assert_eq!(e.resources[1].care_unit_id, None);
        assert!(e.resources.iter().all(|r| r.patient_id == PATIENT));

        // No records released: the access is logged against the user's own unit.
        let winter = SystemTime::UNIX_EPOCH + Duration::from_secs(1_705_312_800); // 2024-01-15T10:00:00Z
        let e = JournalEntry::from_access(&access(&[]), "voo", winter).unwrap();
        assert_eq!(e.activity.start_date, "2024-01-15T11:00:00");
        assert_eq!(e.resources.len(), 1);
        assert_eq!(e.resources[0].care_provider_id, "SE-VG");
        assert_eq!(e.resources[0].care_unit_id.as_deref(), Some("SE-VE"));
        assert!(
            !format!("{e:?}").contains(PATIENT),
            "Debug masks the patient"
        );
    }

    #[tokio::test]
    async fn appended_entries_are_durable_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "");
        journal.append(entries(&journal, 3)).await.unwrap();
        journal.append(Vec::new()).await.unwrap();
        assert_eq!(journal.depth(), 3);
        journal.close().await;
        assert_eq!(
            journal.append(entries(&journal, 1)).await,
            Err(JournalError::Closed)
        );
        drop(journal);

        let journal = open(dir.path(), "");
        assert_eq!(journal.depth(), 3, "the backlog is counted at open");
        assert!(journal.delivery_lag() < Duration::from_secs(60));
        let back = read_all(dir.path());
        assert_eq!(back.len(), 3);
        assert!(back.iter().all(|e| e.system.system_id == "SE-RTP"));
        assert!(back
            .iter()
            .all(|e| uuid::Uuid::parse_str(&e.log_id).is_ok()));
        assert_ne!(back[0].log_id, back[1].log_id);
        assert_eq!(back[0].resources[0].resource_type, "voo");
    }

    #[tokio::test]
    async fn the_journal_is_the_hosts_access_sink() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "resource_type = \"Fallback\"");
        let sink: Arc<dyn AccessSink> = Arc::new(journal.clone());
        let mut context = AccessContext {
            contract:
                "urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2"
                    .into(),
            information_type: "voo".into(),
            correlation_id: "c-1".into(),
        };
        sink.append(vec![access(&[("SE-A", None)])], &context)
            .await
            .unwrap();
        context.information_type = String::new();
        sink.append(vec![access(&[])], &context).await.unwrap();
        let mut bad = access(&[]);
        bad.purpose = String::new();
        let err = sink.append(vec![bad], &context).await.unwrap_err();
        assert!(err.contains("Purpose") && !err.contains(PATIENT), "{err}");
        let back = read_all(dir.path());
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].resources[0].resource_type, "voo");
        assert_eq!(back[1].resources[0].resource_type, "Fallback");
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_journal() {
        let dir = tempfile::tempdir().unwrap();
        let _journal = open(dir.path(), "");
        let err = AccessJournal::open(&config(dir.path(), "")).unwrap_err();
        assert!(matches!(err, JournalError::Locked(_)), "{err}");
    }

    #[tokio::test]
    async fn invalid_entries_are_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "");
        let mut bad = entries(&journal, 2);
        bad[1].user.user_id = " ".into();
        let err = journal.append(bad).await.unwrap_err();
        assert!(err.to_string().contains("UserId"), "{err}");
        assert_eq!(journal.depth(), 0);
    }

    #[tokio::test]
    async fn concurrent_appends_are_committed_in_groups() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "");
        let appends: Vec<_> = (0..300)
            .map(|_| tokio::spawn(journal.append(entries(&journal, 1))))
            .collect();
        for append in appends {
            append.await.unwrap().unwrap();
        }
        let stats = journal.stats();
        assert_eq!(stats.appended_total, 300);
        assert_eq!(stats.depth, 300);
        assert!(
            stats.commits_total < 300,
            "{} fsyncs for 300 appends",
            stats.commits_total
        );
        assert_eq!(read_all(dir.path()).len(), 300);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_nothing_before_it_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "");
        journal.append(entries(&journal, 2)).await.unwrap();
        journal.close().await;
        drop(journal);
        // A crash in the middle of the third line.
        let file = segment_files(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let whole = bytes.len();
        let second = bytes[..whole - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap();
        bytes.extend_from_within(..second / 2);
        std::fs::write(&file, &bytes).unwrap();

        let journal = open(dir.path(), "");
        assert_eq!(journal.depth(), 2);
        assert_eq!(std::fs::metadata(&file).unwrap().len() as usize, whole);
        journal.append(entries(&journal, 1)).await.unwrap();
        assert_eq!(read_all(dir.path()).len(), 3);
        assert_eq!(journal.stats().skipped_lines_total, 0);
    }

    #[tokio::test]
    async fn an_unreadable_line_in_the_middle_is_skipped_not_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "");
        journal.append(entries(&journal, 1)).await.unwrap();
        journal.close().await;
        drop(journal);
        let file = segment_files(dir.path()).pop().unwrap();
        let good = std::fs::read(&file).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(b"{\"garbage\n");
        bytes.extend_from_slice(&good);
        std::fs::write(&file, &bytes).unwrap();

        let journal = open(dir.path(), "");
        assert_eq!(journal.depth(), 2);
        assert_eq!(journal.stats().skipped_lines_total, 1);
        assert_eq!(read_all(dir.path()).len(), 2);
    }

    #[tokio::test]
    async fn the_journal_continues_in_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), "segment_bytes = 4096");
        for _ in 0..20 {
            journal.append(entries(&journal, 3)).await.unwrap();
        }
        assert!(segment_files(dir.path()).len() > 2);
        assert!(journal.committed().segment > 1);
        assert_eq!(read_all(dir.path()).len(), 60);
        journal.close().await;
        drop(journal);
        let journal = open(dir.path(), "segment_bytes = 4096");
        assert_eq!(journal.depth(), 60);
    }
}
