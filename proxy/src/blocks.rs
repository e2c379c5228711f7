//! The block lookup policies consult (the WIT `blocks` capability): the region's block
//! service, contract GetBlocksForPatient 2 (`urn:riv:ehr:blocking:querying:
//! GetBlocksForPatientResponder:2`, `reference/riv-contracts.md` §2.1), asked through a
//! configured upstream under the logical address of the accessing actor's care provider,
//! and cached per (patient, care provider).
//!
//! Cache rules: an answer is used for `ttl_ms` without asking again. After that the
//! service is asked (one request per key however many calls wait for it); if it fails, an
//! answer younger than `ttl_ms + stale_if_error_ms` is still served, else the lookup is an
//! error and the policy fails closed. At most `max_entries` answers are kept, the oldest
//! evicted first.
//!
//! Personal data: the personnummer goes to the block service and into the cache key,
//! never into an error text or a log line.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{HeaderMap, Uri};
use http_body_util::{BodyExt, Limited};
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::Reader;
use tokio::time::Instant;

use crate::config::{millis, BlocksConfig, Config};
use crate::metrics::{self, Metrics};
use crate::policy::capabilities::blocks::{Block, BlockKind, TemporaryRevoke};
use crate::policy::{BlockLookup, BlocksAnswer};
use crate::upstream::Upstream;

/// The GetBlocksForPatient 2 responder namespace (the service contract).
pub const GET_BLOCKS_FOR_PATIENT_NS: &str =
    "urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2";
const SOAP_ACTION: &str =
    "\"urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2:GetBlocksForPatient\"";
/// Largest answer read from the block service.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a lookup has no answer. Texts name the service and what went wrong, never the
/// patient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlocksError {
    #[error("block lookup without {0}")]
    Input(&'static str),
    #[error("block service: {0}")]
    Config(String),
    #[error("block service unreachable: {0}")]
    Unreachable(String),
    #[error("block service did not answer within {0:?}")]
    Timeout(Duration),
    #[error("block service answered HTTP status {status}{}", if *.soap_fault { " with a SOAP fault" } else { "" })]
    Status { status: u16, soap_fault: bool },
    #[error("block service answer unusable: {0}")]
    Answer(String),
    #[error("block service did not perform the lookup: result code {0}")]
    ResultCode(String),
}

/// The block-service client with its cache. Cheap to clone (one shared cache).
#[derive(Clone)]
pub struct BlockService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BlockService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockService")
            .field("upstream", &self.inner.upstream.name)
            .field("uri", &self.inner.uri)
            .field("cached", &self.cached_entries())
            .finish()
    }
}

struct Inner {
    upstream: Arc<Upstream>,
    uri: Uri,
    ttl: Duration,
    stale_if_error: Duration,
    timeout: Duration,
    max_entries: usize,
    state: Mutex<CacheState>,
    /// Where hits, misses and errors are counted.
    metrics: Arc<Metrics>,
}

/// (patient, care provider).
type Key = (String, String);
type Fetch = Shared<BoxFuture<'static, Result<Arc<Vec<Block>>, BlocksError>>>;

#[derive(Default)]
struct CacheState {
    entries: HashMap<Key, Cached>,
    /// Insertion order: sequence number → key, oldest first.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    /// Lookups on their way to the service, shared by every caller of the same key.
    inflight: HashMap<Key, Fetch>,
}

struct Cached {
    blocks: Arc<Vec<Block>>,
    fetched: Instant,
    seq: u64,
}

impl CacheState {
    fn insert(&mut self, key: Key, blocks: Arc<Vec<Block>>, now: Instant, inner: &Inner) {
        if let Some(old) = self.entries.remove(&key) {
            self.order.remove(&old.seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(
            key,
            Cached {
                blocks,
                fetched: now,
                seq,
            },
        );
        // Oldest first: answers past any use, then whatever exceeds the bound.
        let useful = inner.ttl + inner.stale_if_error;
        while let Some((_, oldest)) = self.order.first_key_value() {
            let expired = self
                .entries
                .get(oldest)
                .is_none_or(|c| now.duration_since(c.fetched) > useful);
            if !expired && self.entries.len() <= inner.max_entries {
                break;
            }
            if let Some((_, key)) = self.order.pop_first() {
                self.entries.remove(&key);
            }
        }
    }

    /// The cached answer for `key` if it is at most `max_age` old.
    fn get(
        &self,
        key: &Key,
        now: Instant,
        max_age: Duration,
    ) -> Option<(Arc<Vec<Block>>, Duration)> {
        let cached = self.entries.get(key)?;
        let age = now.duration_since(cached.fetched);
        (age <= max_age).then(|| (cached.blocks.clone(), age))
    }
}

impl BlockService {
    /// A block service reached through `upstream` (shared with the relay, so the
    /// connection pool is too).
    pub fn new(
        config: &BlocksConfig,
        upstream: Arc<Upstream>,
    ) -> Result<BlockService, BlocksError> {
        BlockService::with_metrics(config, upstream, Metrics::detached())
    }

    /// [`BlockService::new`], counting lookups in `metrics`.
    pub fn with_metrics(
        config: &BlocksConfig,
        upstream: Arc<Upstream>,
        metrics: Arc<Metrics>,
    ) -> Result<BlockService, BlocksError> {
        let uri = upstream
            .uri_for(&config.path)
            .map_err(|e| BlocksError::Config(e.to_string()))?;
        Ok(BlockService {
            inner: Arc::new(Inner {
                upstream,
                uri,
                ttl: millis(config.ttl_ms),
                stale_if_error: millis(config.stale_if_error_ms),
                timeout: millis(config.timeout_ms),
                max_entries: config.max_entries.max(1),
                state: Mutex::new(CacheState::default()),
                metrics,
            }),
        })
    }

    /// The service of the config's `[blocks]` with a client of its own for the upstream;
    /// none when the config has no `[blocks]`.
    pub fn from_config(config: &Config) -> Result<Option<BlockService>, BlocksError> {
        BlockService::from_config_with_metrics(config, Metrics::detached())
    }

    /// [`BlockService::from_config`], counting lookups in `metrics`.
    pub fn from_config_with_metrics(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<Option<BlockService>, BlocksError> {
        let Some(blocks) = &config.blocks else {
            return Ok(None);
        };
        let upstream = config.upstream(&blocks.upstream).ok_or_else(|| {
            BlocksError::Config(format!("no [[upstream]] is named {:?}", blocks.upstream))
        })?;
        let upstream = Upstream::new(upstream, config)
            .map_err(|e| BlocksError::Config(format!("upstream {}: {e}", upstream.name)))?
            .serving("block lookups");
        BlockService::with_metrics(blocks, Arc::new(upstream), metrics).map(Some)
    }

    /// The client lookups are made with (its certificate is reloaded with the
    /// listener's).
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.inner.upstream
    }

    /// The patient's blocks as seen by `care_provider` (the accessing actor's care
    /// provider, the logical address of the lookup).
    pub async fn lookup(
        &self,
        patient_id: &str,
        care_provider: &str,
    ) -> Result<Vec<Block>, BlocksError> {
        let (counted, answer) = self.lookup_counted(patient_id, care_provider).await;
        self.inner.metrics.block_lookup(counted);
        answer
    }

    /// The lookup, with how it was answered (for the metrics).
    async fn lookup_counted(
        &self,
        patient_id: &str,
        care_provider: &str,
    ) -> (metrics::BlockLookup, Result<Vec<Block>, BlocksError>) {
        use metrics::BlockLookup::{Error, Hit, Miss, Stale};
        let (patient_id, care_provider) = (patient_id.trim(), care_provider.trim());
        if patient_id.is_empty() {
            return (Error, Err(BlocksError::Input("a patient id")));
        }
        if care_provider.is_empty() {
            return (Error, Err(BlocksError::Input("a care provider")));
        }
        let key: Key = (patient_id.to_owned(), care_provider.to_owned());
        let fetch = {
            let mut state = self.state();
            if let Some((blocks, _)) = state.get(&key, Instant::now(), self.inner.ttl) {
                return (Hit, Ok(blocks.as_ref().clone()));
            }
            state
                .inflight
                .entry(key.clone())
                .or_insert_with(|| self.start_fetch(key.clone()))
                .clone()
        };
        match fetch.await {
            Ok(blocks) => (Miss, Ok(blocks.as_ref().clone())),
            Err(error) => {
                let max_age = self.inner.ttl + self.inner.stale_if_error;
                match self.state().get(&key, Instant::now(), max_age) {
                    Some((blocks, age)) => {
                        tracing::warn!(
                            upstream = %self.inner.upstream.name,
                            %error,
                            age_ms = age.as_millis() as u64,
                            "block service failing: serving a cached answer past its TTL"
                        );
                        (Stale, Ok(blocks.as_ref().clone()))
                    }
                    None => (Error, Err(error)),
                }
            }
        }
    }

    /// Answers held in the cache.
    pub fn cached_entries(&self) -> usize {
        self.state().entries.len()
    }

    /// Forgets every cached answer (lookups in flight still complete and are kept).
    pub fn clear_cache(&self) {
        let mut state = self.state();
        state.entries.clear();
        state.order.clear();
    }

    fn state(&self) -> MutexGuard<'_, CacheState> {
        // The state stays consistent across a panic (no half-done updates), so a
        // poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the service in a task of its own, so that the answer is cached even if every
    /// caller waiting for it gives up.
    fn start_fetch(&self, key: Key) -> Fetch {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let result = inner.fetch(&key.0, &key.1).await;
            let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            state.inflight.remove(&key);
            match result {
                Ok(blocks) => {
                    let blocks = Arc::new(blocks);
                    state.insert(key, blocks.clone(), Instant::now(), &inner);
                    Ok(blocks)
                }
                Err(error) => {
                    tracing::warn!(upstream = %inner.upstream.name, %error, "block lookup failed");
                    Err(error)
                }
            }
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(BlocksError::Unreachable(format!("lookup task: {e}"))))
        }
        .boxed()
        .shared()
    }
}

impl Inner {
    async fn fetch(
        &self,
        patient_id: &str,
        care_provider: &str,
    ) -> Result<Vec<Block>, BlocksError> {
        let body = request_body(patient_id, care_provider);
        let headers = self.headers();
        let exchange = async {
            let response = self
                .upstream
                .send(self.uri.clone(), headers, body, self.timeout)
                .await
                .map_err(|e| BlocksError::Unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| BlocksError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, BlocksError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| BlocksError::Timeout(self.timeout))??;
        if !status.is_success() {
            return Err(BlocksError::Status {
                status: status.as_u16(),
                soap_fault: looks_like_fault(&bytes),
            });
        }
        parse_answer(&bytes, patient_id)
    }

    fn headers(&self) -> HeaderMap {
        crate::upstream::service_call_headers(&self.upstream, SOAP_ACTION)
    }
}

impl BlockLookup for BlockService {
    fn blocks_for_patient<'a>(
        &'a self,
        patient_id: &'a str,
        care_provider: &'a str,
    ) -> Pin<Box<dyn Future<Output = BlocksAnswer> + Send + 'a>> {
        Box::pin(async move {
            self.lookup(patient_id, care_provider)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The GetBlocksForPatient 2 request, as RIV-TA 2.1 (`LogicalAddress` header).
fn request_body(patient_id: &str, care_provider: &str) -> Bytes {
    Bytes::from(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:add="urn:riv:itintegration:registry:1" xmlns:urn="{ns}">"#,
            r#"<soapenv:Header><add:LogicalAddress>{address}</add:LogicalAddress></soapenv:Header>"#,
            r#"<soapenv:Body><urn:GetBlocksForPatient><urn:PatientId>{patient}</urn:PatientId>"#,
            r#"</urn:GetBlocksForPatient></soapenv:Body></soapenv:Envelope>"#
        ),
        ns = GET_BLOCKS_FOR_PATIENT_NS,
        address = escape(care_provider.trim()),
        patient = escape(patient_id.trim()),
    ))
}

/// Whether an error answer looks like a SOAP fault (for the error text only).
fn looks_like_fault(body: &[u8]) -> bool {
    body.windows(b"Fault>".len()).any(|w| w == b"Fault>")
}

/// Parses an answer by local names: `Result/ResultCode` and each `Blocks` element below
/// the SOAP Body. Refuses DTDs and unknown entities, as request inspection does.
pub fn parse_answer(xml: &[u8], patient_id: &str) -> Result<Vec<Block>, BlocksError> {
    let bad = |m: String| BlocksError::Answer(m);
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut result_code: Option<String> = None;
    let mut block: Option<BlockFields> = None;
    let mut revoke: Option<RevokeFields> = None;
    let mut blocks = Vec::new();
    let mut seen_body = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            bad(format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let in_body = path.iter().any(|p| p == "Body");
                if in_body {
                    match name.as_str() {
                        "Fault" if path.last().is_some_and(|p| p == "Body") => {
                            return Err(bad("a SOAP fault".into()))
                        }
                        "Blocks" if block.is_none() => block = Some(BlockFields::default()),
                        "TemporaryRevokes" if block.is_some() => {
                            revoke = Some(RevokeFields::default())
                        }
                        _ => {}
                    }
                }
                if name == "Body" {
                    seen_body = true;
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(start) => {
                let name = start.local_name();
                if name.as_ref() == b"Body" {
                    seen_body = true;
                }
                text.clear();
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| bad(e.to_string()))?;
                text.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| bad(e.to_string()))?;
                text.push_str(&s);
            }
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) => text.push(c),
                Ok(None) => {
                    let name = r.decode().map_err(|e| bad(e.to_string()))?;
                    let resolved = resolve_predefined_entity(&name)
                        .ok_or_else(|| bad("an undefined entity".into()))?;
                    text.push_str(resolved);
                }
                Err(e) => return Err(bad(e.to_string())),
            },
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err(bad("unbalanced end tag".into()));
                };
                let parent = path.last().map(String::as_str).unwrap_or("");
                let value = std::mem::take(&mut text).trim().to_owned();
                match (parent, name.as_str()) {
                    ("Result", "ResultCode") if block.is_none() => result_code = Some(value),
                    (_, "TemporaryRevokes") if revoke.is_some() => {
                        if let (Some(b), Some(r)) = (block.as_mut(), revoke.take()) {
                            b.revokes.push(r.finish()?);
                        }
                    }
                    ("TemporaryRevokes", field) => {
                        if let Some(r) = revoke.as_mut() {
                            r.set(field, value);
                        }
                    }
                    ("ExcludedInformationTypes", "InfoTypeId") => {
                        if let Some(b) = block.as_mut() {
                            if !value.is_empty() {
                                b.excluded.push(value);
                            }
                        }
                    }
                    (_, "Blocks") if block.is_some() && revoke.is_none() => {
                        if let Some(b) = block.take() {
                            blocks.push(b.finish(patient_id)?);
                        }
                    }
                    ("Blocks", field) => {
                        if let Some(b) = block.as_mut() {
                            b.set(field, value);
                        }
                    }
                    _ => {}
                }
            }
            Event::DocType(_) => return Err(bad("document type declarations are refused".into())),
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(bad(
            "the document ends before its elements are closed".into()
        ));
    }
    if !seen_body {
        return Err(bad("no SOAP Body".into()));
    }
    match result_code.as_deref() {
        Some("OK") | Some("INFO") => Ok(blocks),
        Some(code) => Err(BlocksError::ResultCode(printable_code(code))),
        None => Err(bad("no Result/ResultCode".into())),
    }
}

/// A result code fit for an error text: a code token, not free text from the service.
fn printable_code(code: &str) -> String {
    if !code.is_empty()
        && code.len() <= 32
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        code.to_owned()
    } else {
        "(not a code token)".to_owned()
    }
}

#[derive(Default)]
struct BlockFields {
    id: Option<String>,
    kind: Option<String>,
    patient: Option<String>,
    start: Option<String>,
    end: Option<String>,
    care_unit: Option<String>,
    care_provider: Option<String>,
    excluded: Vec<String>,
    revokes: Vec<TemporaryRevoke>,
}

impl BlockFields {
    fn set(&mut self, field: &str, value: String) {
        let slot = match field {
            "BlockId" => &mut self.id,
            "BlockType" => &mut self.kind,
            "PatientId" => &mut self.patient,
            "InformationStartDate" => &mut self.start,
            "InformationEndDate" => &mut self.end,
            "InformationCareUnitId" => &mut self.care_unit,
            "InformationCareProviderId" => &mut self.care_provider,
            _ => return,
        };
        *slot = Some(value).filter(|v| !v.is_empty());
    }

    fn finish(self, patient_id: &str) -> Result<Block, BlocksError> {
        let bad = |m: &str| BlocksError::Answer(format!("a block {m}"));
        let kind = match self.kind.as_deref() {
            Some("Inner") => BlockKind::Inner,
            Some("Outer") => BlockKind::Outer,
            Some(_) => return Err(bad("whose BlockType is neither Inner nor Outer")),
            None => return Err(bad("without BlockType")),
        };
        if let Some(patient) = &self.patient {
            if patient != patient_id.trim() {
                return Err(bad("of another patient"));
            }
        }
        let care_unit = self.care_unit;
        if kind == BlockKind::Inner && care_unit.is_none() {
            return Err(bad("of type Inner without InformationCareUnitId"));
        }
        Ok(Block {
            id: self.id.ok_or_else(|| bad("without BlockId"))?,
            kind,
            care_provider: self
                .care_provider
                .ok_or_else(|| bad("without InformationCareProviderId"))?,
            care_unit,
            start_date: self
                .start
                .map(|d| date_of(&d).ok_or_else(|| bad("with an unreadable InformationStartDate")))
                .transpose()?,
            end_date: self
                .end
                .map(|d| date_of(&d).ok_or_else(|| bad("with an unreadable InformationEndDate")))
                .transpose()?,
            excluded_information_types: self.excluded,
            temporary_revokes: self.revokes,
        })
    }
}

#[derive(Default)]
struct RevokeFields {
    care_unit: Option<String>,
    employee: Option<String>,
    end_date: Option<String>,
}

impl RevokeFields {
    fn set(&mut self, field: &str, value: String) {
        let slot = match field {
            "RevokedForCareUnitId" => &mut self.care_unit,
            "RevokedForEmployeeId" => &mut self.employee,
            "EndDate" => &mut self.end_date,
            _ => return,
        };
        *slot = Some(value).filter(|v| !v.is_empty());
    }

    fn finish(self) -> Result<TemporaryRevoke, BlocksError> {
        let bad = |m: &str| BlocksError::Answer(format!("a temporary revoke {m}"));
        let end = self.end_date.ok_or_else(|| bad("without EndDate"))?;
        Ok(TemporaryRevoke {
            revoked_for_care_unit: self
                .care_unit
                .ok_or_else(|| bad("without RevokedForCareUnitId"))?,
            revoked_for_employee: self.employee,
            end_date: date_of(&end).ok_or_else(|| bad("with an unreadable EndDate"))?,
        })
    }
}

/// The calendar date of an xs:dateTime (`YYYY-MM-DDThh:mm:ss`, optionally with fraction
/// and zone) or xs:date, as `YYYYMMDD`. The date is taken as written: the block service
/// writes Swedish local time.
pub fn date_of(value: &str) -> Option<String> {
    let value = value.trim();
    let date = value.get(..10)?;
    let rest = &value[10..];
    if !(rest.is_empty() || rest.starts_with(['T', 'Z', '+', '-'])) {
        return None;
    }
    let parsed: jiff::civil::Date = date.parse().ok()?;
    Some(parsed.strftime("%Y%m%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: &str = "191212121212";

    fn answer(blocks: &str, code: &str) -> String {
        format!(
            r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<r:GetBlocksForPatientResponse xmlns:r="{GET_BLOCKS_FOR_PATIENT_NS}" xmlns:b="urn:riv:ehr:blocking:2"><r:GetBlocksForPatient>
<b:Result><b:ResultCode>{code}</b:ResultCode><b:ResultText>text</b:ResultText></b:Result>{blocks}
</r:GetBlocksForPatient></r:GetBlocksForPatientResponse></soap:Body></soap:Envelope>"#
        )
    }

    const INNER: &str = r#"<b:Blocks><b:BlockId>B1</b:BlockId><b:BlockType>Inner</b:BlockType>
<b:PatientId>191212121212</b:PatientId><b:InformationStartDate>2020-01-31T00:00:00</b:InformationStartDate>
<b:InformationEndDate>2024-12-24T23:59:59.000+01:00</b:InformationEndDate>
<b:InformationCareUnitId>SE-VE1</b:InformationCareUnitId><b:InformationCareProviderId>SE-VG1</b:InformationCareProviderId>
<b:ExcludedInformationTypes><b:InfoTypeId>lak</b:InfoTypeId><b:InfoTypeDescription>x</b:InfoTypeDescription></b:ExcludedInformationTypes>
<b:ExcludedInformationTypes><b:InfoTypeId>upp</b:InfoTypeId></b:ExcludedInformationTypes>
<b:TemporaryRevokes><b:TemporaryRevokeId>R1</b:TemporaryRevokeId><b:EndDate>2030-06-01T00:00:00</b:EndDate>
<b:RevokedForCareUnitId>SE-VE9</b:RevokedForCareUnitId><b:RevokedForEmployeeId>SE-E1</b:RevokedForEmployeeId><b:OwnerId>SE-VG1</b:OwnerId></b:TemporaryRevokes>
<b:OwnerId>SE-VG1</b:OwnerId></b:Blocks>"#;

    const OUTER: &str = r#"<b:Blocks><b:BlockId>B2</b:BlockId><b:BlockType>Outer</b:BlockType>
<b:InformationCareProviderId>SE-VG2</b:InformationCareProviderId><b:OwnerId>SE-VG2</b:OwnerId></b:Blocks>"#;

    #[test]
    fn blocks_are_read_with_dates_as_yyyymmdd() {
        let xml = answer(&format!("{INNER}{OUTER}"), "OK");
        let blocks = parse_answer(xml.as_bytes(), PATIENT).unwrap();
        assert_eq!(blocks.len(), 2);
        let b = &blocks[0];
        assert_eq!(b.id, "B1");
        assert!(matches!(b.kind, BlockKind::Inner));
        assert_eq!(b.care_provider, "SE-VG1");
        assert_eq!(b.care_unit.as_deref(), Some("SE-VE1"));
        assert_eq!(b.start_date.as_deref(), Some("20200131"));
        assert_eq!(b.end_date.as_deref(), Some("20241224"));
        assert_eq!(b.excluded_information_types, vec!["lak", "upp"]);
        assert_eq!(b.temporary_revokes.len(), 1);
        let r = &b.temporary_revokes[0];
        assert_eq!(r.revoked_for_care_unit, "SE-VE9");
        assert_eq!(r.revoked_for_employee.as_deref(), Some("SE-E1"));
        assert_eq!(r.end_date, "20300601");
        let o = &blocks[1];
        assert!(matches!(o.kind, BlockKind::Outer));
        assert_eq!(o.care_unit, None);
        assert_eq!(o.start_date, None);
        assert!(o.temporary_revokes.is_empty());
    }

    #[test]
    fn info_is_ok_and_other_result_codes_are_errors() {
        assert!(parse_answer(answer("", "INFO").as_bytes(), PATIENT)
            .unwrap()
            .is_empty());
        let err = parse_answer(answer("", "ACCESSDENIED").as_bytes(), PATIENT).unwrap_err();
        assert_eq!(err, BlocksError::ResultCode("ACCESSDENIED".into()));
        let err = parse_answer(answer("", "<x>").as_bytes(), PATIENT);
        assert!(err.is_err());
        let err = parse_answer(answer("", "no code").as_bytes(), PATIENT).unwrap_err();
        assert!(!err.to_string().contains("no code"), "{err}");
    }

    #[test]
    fn unusable_answers_are_errors_without_personal_data() {
        let cases = [
            answer(&INNER.replace("Inner", "Sideways"), "OK"),
            answer(
                &INNER.replace("<b:InformationCareUnitId>SE-VE1</b:InformationCareUnitId>", ""),
                "OK",
            ),
            answer(&INNER.replace("2020-01-31T", "2020-02-31T"), "OK"),
            answer(&INNER.replace("191212121212", "190101010101"), "OK"),
            answer(&OUTER.replace("<b:BlockId>B2</b:BlockId>", ""), "OK"),
            answer("", "OK").replace("<b:Result>", "<b:Other>").replace("</b:Result>", "</b:Other>"),
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "a">]><x/>"#.to_string(),
            answer("", "OK").replace("text</b:ResultText>", "&ext;</b:ResultText>"),
            answer("", "OK").replace("</soap:Envelope>", ""),
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode></soap:Fault></soap:Body></soap:Envelope>"#.to_string(),
        ];
        for xml in cases {
            let err = parse_answer(xml.as_bytes(), PATIENT).expect_err(&xml);
            assert!(!err.to_string().contains(PATIENT), "{err}");
        }
    }

    #[test]
    fn dates_of_xs_datetimes() {
        assert_eq!(date_of("2024-01-02T03:04:05").as_deref(), Some("20240102"));
        assert_eq!(date_of("2024-01-02").as_deref(), Some("20240102"));
        assert_eq!(date_of("2024-01-02Z").as_deref(), Some("20240102"));
        assert_eq!(date_of("2024-13-02T00:00:00"), None);
        assert_eq!(date_of("20240102"), None);
        assert_eq!(date_of("2024-01-02 00:00"), None);
        assert_eq!(date_of(""), None);
    }

    #[test]
    fn the_request_escapes_its_values() {
        let body = request_body("19121212<1212", "SE&1");
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("<add:LogicalAddress>SE&amp;1</add:LogicalAddress>"));
        assert!(text.contains("19121212&lt;1212"));
        assert!(text.contains(GET_BLOCKS_FOR_PATIENT_NS));
    }

    fn service(ttl_ms: u64, stale_ms: u64, max_entries: usize, url: &str) -> BlockService {
        let text = format!(
            r#"
[proxy]
instance_id = "t"
[http]
listen = "127.0.0.1:0"
allowed_sources = []
[[upstream]]
name = "ntjp"
url = "{url}"
connect_timeout_ms = 200
[[route]]
name = "all"
upstream = "ntjp"
[blocks]
upstream = "ntjp"
ttl_ms = {ttl_ms}
stale_if_error_ms = {stale_ms}
timeout_ms = 500
max_entries = {max_entries}
"#
        );
        let config = Config::parse(
            &text,
            std::path::Path::new("t.toml"),
            std::path::Path::new("."),
        )
        .unwrap();
        BlockService::from_config(&config).unwrap().unwrap()
    }

    fn seed(service: &BlockService, patient: &str, at: Instant) {
        let mut state = service.state();
        let inner = service.inner.clone();
        state.insert(
            (patient.into(), "SE-VG".into()),
            Arc::new(Vec::new()),
            at,
            &inner,
        );
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_max_entries_oldest_evicted() {
        let s = service(60_000, 0, 2, "http://127.0.0.1:9");
        let now = Instant::now();
        seed(&s, "1", now);
        seed(&s, "2", now);
        seed(&s, "3", now);
        assert_eq!(s.cached_entries(), 2);
        let state = s.state();
        assert!(!state.entries.contains_key(&("1".into(), "SE-VG".into())));
        assert!(state.entries.contains_key(&("3".into(), "SE-VG".into())));
    }

    #[tokio::test]
    async fn stale_answers_serve_only_within_the_error_window() {
        // Nothing listens on the discard port: every fetch fails fast.
        let s = service(100, 10_000, 10, "http://127.0.0.1:9");
        let old = Instant::now() - Duration::from_millis(5_000);
        seed(&s, "1", old);
        assert!(s.lookup("1", "SE-VG").await.unwrap().is_empty());

        let s = service(100, 1_000, 10, "http://127.0.0.1:9");
        seed(&s, "1", Instant::now() - Duration::from_millis(5_000));
        let err = s.lookup("1", "SE-VG").await.unwrap_err();
        assert!(matches!(err, BlocksError::Unreachable(_)), "{err}");
        assert!(s.lookup("", "SE-VG").await.is_err());
    }
    #[tokio::test]
    async fn lookups_are_counted_as_hit_stale_or_error() {
        let s = service(60_000, 10_000, 10, "http://127.0.0.1:9");
        let metrics = Arc::new(Metrics::new());
        let s = BlockService {
            inner: Arc::new(Inner {
                metrics: metrics.clone(),
                upstream: s.inner.upstream.clone(),
                uri: s.inner.uri.clone(),
                ttl: Duration::from_millis(100),
                stale_if_error: Duration::from_millis(10_000),
                timeout: s.inner.timeout,
                max_entries: 10,
                state: Mutex::new(CacheState::default()),
            }),
        };
        seed(&s, "1", Instant::now());
        seed(&s, "2", Instant::now() - Duration::from_millis(5_000));
        assert!(s.lookup("1", "SE-VG").await.is_ok());
        assert!(s.lookup("2", "SE-VG").await.is_ok());
        assert!(s.lookup("3", "SE-VG").await.is_err());
        let text = metrics.render();
        for outcome in ["hit", "stale", "error"] {
            let line = format!("rtp_block_lookups_total{{outcome=\"{outcome}\"}} 1");
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("191212121212"));
    }
}
