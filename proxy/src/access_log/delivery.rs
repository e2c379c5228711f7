//! Delivery of journal entries to the log service with StoreLog 1
//! (`urn:riv:ehr:log:store:StoreLogResponder:1`).
//!
//! One task reads up to `batch_size` undelivered entries, sends them, one StoreLog call
//! per care provider in the batch (the logical address is the care provider whose log
//! the entry belongs to: the user's), and moves the persisted cursor past the batch only
//! when every call was answered OK (or INFO). A failed batch is retried as it was read,
//! after a pause that doubles from `retry_initial_ms` up to `retry_max_ms`; calls of the
//! batch already answered OK are not repeated within the process. After a restart the
//! unconfirmed batch is sent again: at-least-once, so the log service may see an entry
//! twice (same `LogId`), never zero times.
//!
//! Order matters for the cursor, so a care provider whose log service keeps failing
//! holds up delivery for everyone behind it (visible as depth and lag).

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::journal::{self, Batch, Position};
use super::{JournalEntry, JournalError, Shared};
use crate::upstream::Upstream;

/// The StoreLog 1 responder namespace (the service contract).
pub const STORE_LOG_NS: &str = "urn:riv:ehr:log:store:StoreLogResponder:1";
/// The log domain's core types.
pub const LOG_CORE_NS: &str = "urn:riv:ehr:log:1";
const SOAP_ACTION: &str = "\"urn:riv:ehr:log:store:StoreLogResponder:1:StoreLog\"";
/// Largest answer read from the log service.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub(crate) struct DeliverySettings {
    pub path: String,
    pub batch_size: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
}

/// The delivery loop, not yet started.
pub struct DeliveryTask {
    settings: DeliverySettings,
    upstream: Arc<Upstream>,
    uri: Uri,
    dir: PathBuf,
    cursor: Position,
    committed: watch::Receiver<Position>,
    shared: Arc<Shared>,
    /// The journal directory stays locked while delivery runs.
    _lock: Arc<File>,
}

impl std::fmt::Debug for DeliveryTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTask")
            .field("upstream", &self.upstream.name)
            .field("uri", &self.uri)
            .field("cursor", &self.cursor)
            .finish()
    }
}

/// A running delivery task.
#[derive(Debug)]
pub struct DeliveryHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DeliveryHandle {
    /// Stops delivery (a call in flight is abandoned; its entries stay undelivered and
    /// are sent again later) and waits for the task to end.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// A batch read from the journal, kept until the log service confirmed all of it.
struct Pending {
    batch: Batch,
    /// Care providers whose part of the batch the log service already confirmed.
    confirmed: HashSet<String>,
}

impl DeliveryTask {
    pub(crate) fn new(
        settings: DeliverySettings,
        upstream: Arc<Upstream>,
        dir: PathBuf,
        cursor: Position,
        committed: watch::Receiver<Position>,
        shared: Arc<Shared>,
        lock: Arc<File>,
    ) -> Result<DeliveryTask, JournalError> {
        let uri = upstream
            .uri_for(&settings.path)
            .map_err(|e| JournalError::Delivery(e.to_string()))?;
        Ok(DeliveryTask {
            settings,
            upstream,
            uri,
            dir,
            cursor,
            committed,
            shared,
            _lock: lock,
        })
    }

    /// The client entries are delivered with (its certificate is reloaded with the
    /// listener's).
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Runs the loop on the tokio runtime. Dropping the handle leaves it running.
    pub fn spawn(self) -> DeliveryHandle {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(self.run(stop_rx));
        DeliveryHandle { stop, task }
    }

    /// Delivers until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.settings.retry_initial;
        let mut pending: Option<Pending> = None;
        let mut failing = false;
        loop {
            let mut current = match pending.take() {
                Some(p) => p,
                None => {
                    let to = *self.committed.borrow_and_update();
                    if self.cursor >= to {
                        tokio::select! {
                            _ = self.committed.changed() => {}
                            _ = stop_requested(&mut stop) => return,
                        }
                        continue;
                    }
                    match self.read(to).await {
                        Ok(batch) => Pending {
                            batch,
                            confirmed: HashSet::new(),
                        },
                        Err(error) => {
                            tracing::error!(%error, "access-log delivery cannot read the journal");
                            self.shared.delivery_failed(&error.to_string());
                            if pause(&mut backoff, &self.settings, &mut stop).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            if let Some((first_ms, _)) = current.batch.entries.first() {
                self.shared.delivering(*first_ms);
                let outcome = tokio::select! {
                    outcome = self.send(&mut current) => outcome,
                    _ = stop_requested(&mut stop) => return,
                };
                if let Err(error) = outcome {
                    failing = true;
                    self.shared.delivery_failed(&error);
                    tracing::warn!(
                        upstream = %self.upstream.name,
                        %error,
                        entries = current.batch.entries.len(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "access-log delivery failed; will retry"
                    );
                    pending = Some(current);
                    if pause(&mut backoff, &self.settings, &mut stop).await {
                        return;
                    }
                    continue;
                }
            }
            if failing {
                tracing::info!(upstream = %self.upstream.name, "access-log delivery works again");
                failing = false;
            }
            backoff = self.settings.retry_initial;
            self.advance(&current.batch).await;
        }
    }

    async fn read(&self, to: Position) -> Result<Batch, JournalError> {
        let dir = self.dir.clone();
        let (from, max) = (self.cursor, self.settings.batch_size);
        tokio::task::spawn_blocking(move || journal::read_batch(&dir, from, to, max))
            .await
            .map_err(|e| JournalError::Io {
                context: "reading the journal".into(),
                message: e.to_string(),
            })?
    }

    /// Moves the cursor past a confirmed batch, persists it and deletes the files
    /// before it.
    async fn advance(&mut self, batch: &Batch) {
        let dir = self.dir.clone();
        let end = batch.end;
        let stored = tokio::task::spawn_blocking(move || {
            journal::store_cursor(&dir, end)?;
            journal::remove_segments_before(&dir, end.segment)
        })
        .await;
        match stored {
            Ok(Ok(_)) => {}
            // Delivered all the same; after a restart these entries go once more.
            Ok(Err(error)) => {
                tracing::error!(%error, "access-log cursor not saved");
            }
            Err(error) => {
                tracing::error!(%error, "access-log cursor not saved");
            }
        }
        self.cursor = end;
        self.shared.skipped_lines(batch.skipped);
        self.shared.delivered(batch.entries.len() as u64);
    }

    /// Sends the parts of the batch not yet confirmed, one call per care provider.
    async fn send(&self, pending: &mut Pending) -> Result<(), String> {
        let mut providers: Vec<&str> = Vec::new();
        for (_, entry) in &pending.batch.entries {
            let provider = entry.user.care_provider_id.as_str();
            if !providers.contains(&provider) {
                providers.push(provider);
            }
        }
        for provider in providers {
            if pending.confirmed.contains(provider) {
                continue;
            }
            let entries: Vec<&JournalEntry> = pending
                .batch
                .entries
                .iter()
                .map(|(_, e)| e)
                .filter(|e| e.user.care_provider_id == provider)
                .collect();
            self.store_log(provider, &entries).await?;
            pending.confirmed.insert(provider.to_owned());
        }
        Ok(())
    }

    async fn store_log(
        &self,
        care_provider: &str,
        entries: &[&JournalEntry],
    ) -> Result<(), String> {
        let body = Bytes::from(store_log_request(care_provider, entries));
        let exchange = async {
            let response = self
                .upstream
                .send(
                    self.uri.clone(),
                    self.headers(),
                    body,
                    self.settings.timeout,
                )
                .await
                .map_err(|e| format!("log service unreachable: {e}"))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the log service's answer: {e}"))?
                .to_bytes();
            check_answer(status, &bytes)
        };
        tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| {
                format!(
                    "log service did not answer within {:?}",
                    self.settings.timeout
                )
            })?
    }

    fn headers(&self) -> HeaderMap {
        crate::upstream::service_call_headers(&self.upstream, SOAP_ACTION)
    }
}

/// Resolves when a stop is asked for; never, if the handle was dropped.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits out the backoff (then doubles it, bounded); true if a stop came first.
async fn pause(
    backoff: &mut Duration,
    settings: &DeliverySettings,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(settings.retry_max);
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop_requested(stop) => true,
    }
}

/// The StoreLog 1 request for one care provider's entries (RIV-TA 2.1).
pub fn store_log_request(care_provider: &str, entries: &[&JournalEntry]) -> String {
    let mut out = String::with_capacity(512 + entries.len() * 1024);
    out.push_str(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns:add="urn:riv:itintegration:registry:1" "#,
        r#"xmlns:urn="urn:riv:ehr:log:store:StoreLogResponder:1" xmlns:log="urn:riv:ehr:log:1">"#,
        r#"<soapenv:Header><add:LogicalAddress>"#
    ));
    out.push_str(&escape(care_provider));
    out.push_str("</add:LogicalAddress></soapenv:Header><soapenv:Body><urn:StoreLogRequest>");
    for entry in entries {
        write_log(&mut out, entry);
    }
    out.push_str("</urn:StoreLogRequest></soapenv:Body></soapenv:Envelope>");
    out
}

fn el(out: &mut String, name: &str, value: &str) {
    out.push_str("<log:");
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</log:");
    out.push_str(name);
    out.push('>');
}

fn open(out: &mut String, name: &str) {
    out.push_str("<log:");
    out.push_str(name);
    out.push('>');
}

fn close(out: &mut String, name: &str) {
    out.push_str("</log:");
    out.push_str(name);
    out.push('>');
}

/// One `Log` (`LogType`), elements in schema order.
fn write_log(out: &mut String, entry: &JournalEntry) {
    out.push_str("<urn:Log>");
    el(out, "LogId", &entry.log_id);
    open(out, "System");
    el(out, "SystemId", &entry.system.system_id);
    if let Some(name) = &entry.system.system_name {
        el(out, "SystemName", name);
    }
    close(out, "System");
    open(out, "Activity");
    el(out, "ActivityType", &entry.activity.activity_type);
    el(out, "StartDate", &entry.activity.start_date);
    el(out, "Purpose", &entry.activity.purpose);
    close(out, "Activity");
    open(out, "User");
    el(out, "UserId", &entry.user.user_id);
    open(out, "CareProvider");
    el(out, "CareProviderId", &entry.user.care_provider_id);
    close(out, "CareProvider");
    open(out, "CareUnit");
    el(out, "CareUnitId", &entry.user.care_unit_id);
    close(out, "CareUnit");
    close(out, "User");
    open(out, "Resources");
    for r in &entry.resources {
        open(out, "Resource");
        el(out, "ResourceType", &r.resource_type);
        open(out, "Patient");
        el(out, "PatientId", &r.patient_id);
        close(out, "Patient");
        open(out, "CareProvider");
        el(out, "CareProviderId", &r.care_provider_id);
        close(out, "CareProvider");
        if let Some(unit) = &r.care_unit_id {
            open(out, "CareUnit");
            el(out, "CareUnitId", unit);
            close(out, "CareUnit");
        }
        close(out, "Resource");
    }
    close(out, "Resources");
    out.push_str("</urn:Log>");
}

/// Whether the log service stored the entries: HTTP 2xx and ResultCode OK or INFO.
pub fn check_answer(status: StatusCode, body: &[u8]) -> Result<(), String> {
    if !status.is_success() {
        let fault = body.windows(b"Fault>".len()).any(|w| w == b"Fault>");
        return Err(format!(
            "log service answered HTTP status {}{}",
            status.as_u16(),
            if fault { " with a SOAP fault" } else { "" }
        ));
    }
    match result_code(body)?.as_deref() {
        Some("OK") | Some("INFO") => Ok(()),
        Some(code) => {
            let code = if code.len() <= 32
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                code
            } else {
                "(not a code token)"
            };
            Err(format!(
                "log service did not store the entries: result code {code}"
            ))
        }
        None => Err("log service answer without ResultCode".into()),
    }
}

/// The text of the first `ResultCode` element (any namespace); DTDs are refused.
fn result_code(body: &[u8]) -> Result<Option<String>, String> {
    let mut reader = Reader::from_reader(body);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Err(e) => return Err(format!("log service answer is not well-formed XML: {e}")),
            Ok(Event::DocType(_)) => {
                return Err("log service answer has a document type declaration".into())
            }
            Ok(Event::Start(e)) if e.local_name().as_ref() == b"ResultCode" => {
                inside = true;
                text.clear();
            }
            Ok(Event::Text(t)) if inside => {
                let s = t
                    .xml10_content()
                    .map_err(|e| format!("log service answer: {e}"))?;
                text.push_str(&s);
            }
            Ok(Event::End(_)) if inside => return Ok(Some(text.trim().to_owned())),
            Ok(Event::Eof) => return Ok(None),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::{LogActivity, LogResource, LogSystem, LogUser};

    fn entry(provider: &str) -> JournalEntry {
        JournalEntry {
            log_id: "L1".into(),
            system: LogSystem {
                system_id: "SE-SYS".into(),
                system_name: Some("rtp & proxy".into()),
            },
            activity: LogActivity {
                activity_type: "Läsa".into(),
                start_date: "2024-05-01T12:00:00".into(),
                purpose: "Vård och behandling".into(),
            },
            user: LogUser {
                user_id: "SE-U".into(),
                care_provider_id: provider.into(),
                care_unit_id: "SE-VE".into(),
            },
            resources: vec![LogResource {
                resource_type: "voo".into(),
                patient_id: "191212121212".into(),
                care_provider_id: "SE-OWNER".into(),
                care_unit_id: None,
            }],
        }
    }

    #[test]
    fn the_request_carries_every_entry_escaped() {
        let a = entry("SE-VG1");
        let xml = store_log_request("SE-VG1", &[&a, &a]);
        assert_eq!(xml.matches("<urn:Log>").count(), 2);
        assert!(xml.contains("<add:LogicalAddress>SE-VG1</add:LogicalAddress>"));
        assert!(xml.contains("<log:SystemName>rtp &amp; proxy</log:SystemName>"));
        assert!(
            xml.contains("<log:Patient><log:PatientId>191212121212</log:PatientId></log:Patient>")
        );
        assert!(!xml.contains("<log:CareUnit><log:CareUnitId>SE-OWNER"));
        assert!(xml.contains(STORE_LOG_NS) && xml.contains(LOG_CORE_NS));
    }

    #[test]
    fn answers_are_judged_by_status_and_result_code() {
        let ok = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><StoreLogResponse xmlns="urn:riv:ehr:log:store:StoreLogResponder:1"><ResultType><ResultCode xmlns="urn:riv:ehr:log:1">OK</ResultCode></ResultType></StoreLogResponse></s:Body></s:Envelope>"#;
        assert_eq!(check_answer(StatusCode::OK, ok.as_bytes()), Ok(()));
        let error = ok.replace(">OK<", ">ERROR<");
        assert!(check_answer(StatusCode::OK, error.as_bytes())
            .unwrap_err()
            .contains("ERROR"));
        assert!(check_answer(StatusCode::SERVICE_UNAVAILABLE, b"down")
            .unwrap_err()
            .contains("503"));
        assert!(check_answer(StatusCode::OK, b"<x/>").is_err());
        assert!(check_answer(StatusCode::OK, b"<!DOCTYPE x><x/>").is_err());
    }
}
