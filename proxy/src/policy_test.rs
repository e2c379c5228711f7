//! `rtp-proxy policy test`: runs a built policy component against recorded cases, like
//! `opa test`. A case file (TOML) holds a request (and optionally the producer's
//! response), the policy's settings, what the host lends the policy for the case (a
//! fixed clock, the blocks the block service answers, an access log) and the expected
//! outcome: the request verdict, edits and notes, the records dropped, the access-log
//! entries. The policy runs through the real host (compile, link, canary `init`, the
//! sandbox), the call is built from the request exactly as the proxy builds it
//! (`inspect`, `relay::policy_call`), and the response's records are those the proxy's
//! scanner finds. The case format is documented in `plugins/README.md`.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;
use wasmtime::component::Component;
use wildmatch::WildMatch;

use crate::contracts;
use crate::headers::{self, ForwardedIdentity};
use crate::inspect::inspect;
use crate::policy::capabilities::blocks;
use crate::policy::loaded::Limits;
use crate::policy::pipeline::apply_to_call;
use crate::policy::{
    wit, AccessContext, AccessEntry, AccessSink, BlockLookup, BlocksAnswer, FailureMode,
    FixedClock, HostServices, LoadError, LoadedPolicy, PolicyEngine,
};
use crate::response::scan::scan_document;

/// The authenticated sender of a case that names none.
pub const DEFAULT_SENDER: &str = "SE2321000016-A12B";
/// The route name policies see.
pub const DEFAULT_ROUTE: &str = "policy-test";
/// The correlation id policies see when the case sends no `x-skltp-correlation-id`.
pub const DEFAULT_CORRELATION_ID: &str = "policy-test";
/// The zone in which a `now` given as a date is read (at noon).
const ZONE: &str = "Europe/Stockholm";

/// What `rtp-proxy policy test` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The built policy component.
    pub policy: PathBuf,
    /// Case files, or directories whose `*.toml` files are cases.
    pub cases: Vec<PathBuf>,
    /// Print the call, the records and the outcome of every case.
    pub show: bool,
    /// The deadline of one guest entry. Generous by default: cases test decisions, and a
    /// loaded test machine must not fail them.
    pub deadline_ms: u64,
    /// The compile cache, as `[policies] cache_dir` in the config.
    pub cache_dir: Option<PathBuf>,
}

/// The tally of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// Case files that could not be read or are not valid cases.
    pub invalid: usize,
}

impl Summary {
    pub fn success(&self) -> bool {
        self.failed == 0 && self.invalid == 0 && self.passed > 0
    }
}

/// A case file that is not a valid case: located (file, line, key) like the config's
/// errors, and printed the same way.
pub use crate::config::ConfigError as CaseError;

/// Runs every case against the policy, writing `PASS`/`FAIL`/`ERROR` lines, the
/// differences of failed cases and a summary to `out`. An error is returned only when
/// nothing can be tested: the component does not compile, or a case path does not exist.
pub async fn run(options: &Options, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let files = case_files(&options.cases)?;
    let engine = PolicyEngine::new(options.cache_dir.clone(), HostServices::default())?;
    let (component, content_hash) = engine.compile(&options.policy).await?;
    let limits = Limits {
        deadline_ticks: options.deadline_ms.max(1),
        ..Limits::default()
    };
    let policy = Compiled {
        engine,
        file: options.policy.clone(),
        component,
        content_hash,
        limits,
    };
    let mut summary = Summary::default();
    let mut described = None;
    for file in &files {
        let case = match Case::load(file) {
            Ok(case) => case,
            Err(e) => {
                writeln!(out, "ERROR {e}")?;
                summary.invalid += 1;
                continue;
            }
        };
        let actual = match policy.run(&case).await {
            Ok(actual) => actual,
            Err(e) => {
                writeln!(out, "ERROR {e}")?;
                summary.invalid += 1;
                continue;
            }
        };
        if let Some(loaded) = &actual.policy {
            described = Some(loaded.clone());
        }
        let differences = compare(&case.expect, &actual);
        if differences.is_empty() {
            writeln!(out, "PASS {} ({})", case.name, file.display())?;
            summary.passed += 1;
        } else {
            writeln!(
                out,
                "FAIL {} ({}) (- expected, + actual)",
                case.name,
                file.display()
            )?;
            for difference in &differences {
                write_difference(out, difference)?;
            }
            summary.failed += 1;
        }
        if options.show {
            show(out, &case, &actual)?;
        }
    }
    let policy_name = described
        .map(|(name, version)| format!("{name} {version}"))
        .unwrap_or_else(|| "policy not loaded".to_owned());
    writeln!(
        out,
        "{} case(s): {} passed, {} failed, {} invalid ({}, {policy_name})",
        files.len(),
        summary.passed,
        summary.failed,
        summary.invalid,
        options.policy.display()
    )?;
    Ok(summary)
}

/// The case files named: files as given, directories' `*.toml` files sorted by name.
fn case_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("{}: cannot list the directory: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
                .collect();
            if found.is_empty() {
                anyhow::bail!(
                    "{}: no case files (*.toml) in the directory",
                    path.display()
                );
            }
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{}: no such case file or directory", path.display());
        }
    }
    if files.is_empty() {
        anyhow::bail!("no case files given");
    }
    Ok(files)
}

// ---------------------------------------------------------------------------------------
// The case file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Option<String>,
    policy: Option<Spanned<String>>,
    settings: Option<Spanned<toml::Table>>,
    request: Option<Spanned<String>>,
    request_xml: Option<Spanned<String>>,
    response: Option<Spanned<String>>,
    response_xml: Option<Spanned<String>>,
    #[serde(default)]
    placeholders: BTreeMap<String, String>,
    sender: Option<String>,
    original_consumer: Option<String>,
    route: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    now: Option<Spanned<toml::Value>>,
    #[serde(default)]
    blocks: Vec<RawBlock>,
    #[serde(default)]
    blocks_unavailable: bool,
    #[serde(default)]
    access_log_unavailable: bool,
    batch_records: Option<Spanned<usize>>,
    expect: Spanned<RawExpect>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawBlockKind {
    Inner,
    Outer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    id: Option<String>,
    kind: RawBlockKind,
    care_provider: String,
    care_unit: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    #[serde(default)]
    excluded_information_types: Vec<String>,
    #[serde(default)]
    temporary_revokes: Vec<RawRevoke>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevoke {
    revoked_for_care_unit: String,
    revoked_for_employee: Option<String>,
    end_date: String,
}

/// The expected request verdict.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Verdict {
    Proceed,
    Reject,
    /// `init` refuses the settings: the policy would not load.
    SettingsRefused,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    verdict: Verdict,
    fault_code: Option<Spanned<String>>,
    fault_message: Option<Spanned<String>>,
    edits: Option<Spanned<Vec<ExpectedEdit>>>,
    notes: Option<Spanned<BTreeMap<String, String>>>,
    dropped: Option<Spanned<Vec<u32>>>,
    response_fault_code: Option<Spanned<String>>,
    response_fault_message: Option<Spanned<String>>,
    access: Option<Spanned<Vec<ExpectedAccess>>>,
}

/// An edit a case expects (notes are expected separately).
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ExpectedEdit {
    SetHeader {
        name: String,
        value: String,
    },
    RemoveHeader(String),
    SetPeriod {
        start: Option<String>,
        end: Option<String>,
    },
}

/// An access-log entry a case expects; only the fields given are compared.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct ExpectedAccess {
    user: Option<String>,
    care_unit: Option<String>,
    care_provider: Option<String>,
    activity: Option<String>,
    purpose: Option<String>,
    patient_id: Option<String>,
    /// `care-provider/care-unit`, or `care-provider` for an owner without a unit.
    owners: Option<Vec<String>>,
}

/// What a case expects, validated.
#[derive(Debug, Clone)]
struct Expect {
    verdict: Verdict,
    fault_code: Option<String>,
    fault_message: Option<String>,
    edits: Option<Vec<ExpectedEdit>>,
    notes: BTreeMap<String, String>,
    dropped: Option<Vec<u32>>,
    response_fault_code: Option<String>,
    response_fault_message: Option<String>,
    access: Option<Vec<ExpectedAccess>>,
}

/// A valid case, with the call built and the response scanned.
#[derive(Debug)]
struct Case {
    file: PathBuf,
    name: String,
    /// The `describe()` name the case is written for, and its line.
    policy: Option<(String, usize)>,
    settings_json: String,
    call: wit::Call,
    /// The response's records; none when the case has no response.
    records: Option<Vec<wit::RecordSummary>>,
    information_type: String,
    now_millis: Option<u64>,
    blocks: BlocksAnswer,
    access_log: bool,
    batch_records: Option<usize>,
    expect: Expect,
}

/// Locates errors in one case file.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn at<T>(&self, spanned: &Spanned<T>, key: &str, message: impl Into<String>) -> CaseError {
        CaseError {
            file: self.file.to_owned(),
            line: Some(line_of(self.text, spanned.span().start)),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    fn file(&self, message: impl Into<String>) -> CaseError {
        CaseError {
            file: self.file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Case {
    fn load(file: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(file).map_err(|e| CaseError {
            file: file.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        let raw: RawCase = toml::from_str(&text).map_err(|e| CaseError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(&text, s.start)),
            key: None,
            message: e.message().trim().to_owned(),
        })?;
        let at = Locator { file, text: &text };
        let dir = file.parent().unwrap_or(Path::new("."));

        let name = raw.name.clone().unwrap_or_else(|| {
            file.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        });
        let settings_json = match &raw.settings {
            Some(settings) => serde_json::to_string(settings.get_ref()).map_err(|e| {
                at.at(
                    settings,
                    "settings",
                    format!("cannot be passed as JSON: {e}"),
                )
            })?,
            None => "{}".to_owned(),
        };
        let placeholders = &raw.placeholders;

        let request = match (&raw.request, &raw.request_xml) {
            (Some(path), None) => read_document(&at, dir, path, "request", placeholders)?,
            (None, Some(xml)) => substitute(
                &at,
                xml,
                "request_xml",
                xml.get_ref().as_bytes(),
                placeholders,
            )?,
            (Some(_), Some(xml)) => {
                return Err(at.at(
                    xml,
                    "request_xml",
                    "give `request` or `request_xml`, not both",
                ))
            }
            (None, None) => {
                return Err(at.file("a case needs a request: `request` (a file) or `request_xml`"))
            }
        };
        let request_key = raw.request.as_ref().map_or("request_xml", |_| "request");
        let request_span = raw
            .request
            .as_ref()
            .map(|s| s.span())
            .or_else(|| raw.request_xml.as_ref().map(|s| s.span()))
            .unwrap_or(0..0);
        let inspected = inspect(&request).map_err(|e| CaseError {
            file: file.to_owned(),
            line: Some(line_of(&text, request_span.start)),
            key: Some(request_key.to_owned()),
            message: format!("the proxy would refuse this request before any policy: {e}"),
        })?;

        let mut header_map = HeaderMap::new();
        for (name, value) in &raw.headers {
            let key = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| at.at(value, &key, "not a valid header name"))?;
            // As on the wire: bytes beyond ASCII are accepted here, and the host then
            // leaves the header out of what policies see, as the proxy does.
            let value = HeaderValue::from_bytes(value.get_ref().as_bytes())
                .map_err(|_| at.at(value, &key, "not a valid header value"))?;
            header_map.append(header, value);
        }
        let sender = raw
            .sender
            .clone()
            .unwrap_or_else(|| DEFAULT_SENDER.to_owned());
        // As the proxy forwards it for a caller on its global trusted list: the policy
        // under test is what narrows it per route.
        let original_consumer = match &raw.original_consumer {
            Some(osc) => osc.clone(),
            None => headers::original_consumer(&header_map, &sender, |_| true)
                .unwrap_or_else(|_| sender.clone()),
        };
        let correlation_id = if header_map.contains_key(headers::CORRELATION_ID) {
            headers::correlation_id(&header_map)
        } else {
            DEFAULT_CORRELATION_ID.to_owned()
        };
        let identity = ForwardedIdentity {
            correlation_id,
            original_consumer,
            routing_history: format!("{sender}#{DEFAULT_ROUTE}"),
            vp_sender_id: None,
        };
        let route = raw.route.as_deref().unwrap_or(DEFAULT_ROUTE);
        let call = crate::relay::policy_call(&inspected, route, &sender, &identity, &header_map);

        let contract = contracts::lookup(&call.contract).unwrap_or(&contracts::UNKNOWN_CONTRACT);
        let response = match (&raw.response, &raw.response_xml) {
            (Some(path), None) => Some((
                read_document(&at, dir, path, "response", placeholders)?,
                "response",
                path.span(),
            )),
            (None, Some(xml)) => Some((
                substitute(
                    &at,
                    xml,
                    "response_xml",
                    xml.get_ref().as_bytes(),
                    placeholders,
                )?,
                "response_xml",
                xml.span(),
            )),
            (Some(_), Some(xml)) => {
                return Err(at.at(
                    xml,
                    "response_xml",
                    "give `response` or `response_xml`, not both",
                ))
            }
            (None, None) => None,
        };
        let records = match response {
            Some((body, key, span)) => Some(
                scan_document(contract, &body)
                    .map_err(|e| CaseError {
                        file: file.to_owned(),
                        line: Some(line_of(&text, span.start)),
                        key: Some(key.to_owned()),
                        message: format!("the response cannot be scanned: {e}"),
                    })?
                    .into_iter()
                    .map(|r| r.summary)
                    .collect(),
            ),
            None => None,
        };

        let now_millis = raw
            .now
            .as_ref()
            .map(|now| parse_now(now.get_ref()).map_err(|m| at.at(now, "now", m)))
            .transpose()?;
        let blocks = if raw.blocks_unavailable {
            Err("the block service is unavailable (blocks_unavailable in the case)".to_owned())
        } else {
            Ok(raw.blocks.into_iter().enumerate().map(block).collect())
        };
        let batch_records = match &raw.batch_records {
            Some(n) if *n.get_ref() == 0 => return Err(at.at(n, "batch_records", "at least 1")),
            Some(n) => Some(*n.get_ref()),
            None => None,
        };
        let expect = expectation(&at, &raw.expect, records.is_some())?;
        Ok(Case {
            file: file.to_owned(),
            name,
            policy: raw
                .policy
                .as_ref()
                .map(|p| (p.get_ref().clone(), line_of(&text, p.span().start))),
            settings_json,
            call,
            records,
            information_type: contract.information_type.to_owned(),
            now_millis,
            blocks,
            access_log: !raw.access_log_unavailable,
            batch_records,
            expect,
        })
    }
}

/// A request or response file, relative to the case file, with its placeholders filled.
fn read_document(
    at: &Locator<'_>,
    dir: &Path,
    path: &Spanned<String>,
    key: &str,
    placeholders: &BTreeMap<String, String>,
) -> Result<Vec<u8>, CaseError> {
    let resolved = dir.join(path.get_ref());
    let bytes = std::fs::read(&resolved).map_err(|e| {
        at.at(
            path,
            key,
            format!("cannot read {}: {e}", resolved.display()),
        )
    })?;
    substitute(at, path, key, &bytes, placeholders)
}

/// Replaces each `${name}` of `placeholders` in a document (the samples are SoapUI mocks
/// with such placeholders). Values go in as written: escape `&` and `<` yourself.
fn substitute<T>(
    at: &Locator<'_>,
    spanned: &Spanned<T>,
    key: &str,
    bytes: &[u8],
    placeholders: &BTreeMap<String, String>,
) -> Result<Vec<u8>, CaseError> {
    if placeholders.is_empty() {
        return Ok(bytes.to_vec());
    }
    let mut text = std::str::from_utf8(bytes)
        .map_err(|_| at.at(spanned, key, "placeholders need a UTF-8 document"))?
        .to_owned();
    for (name, value) in placeholders {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    Ok(text.into_bytes())
}

/// `now`: a date (noon in Sweden that day) or an RFC 3339 instant, as a string or a
/// TOML date/date-time.
fn parse_now(value: &toml::Value) -> Result<u64, String> {
    let text = match value {
        toml::Value::String(s) => s.trim().to_owned(),
        toml::Value::Datetime(d) => d.to_string(),
        _ => return Err("a date (2024-03-15) or an RFC 3339 time (2024-03-15T10:00:00Z)".into()),
    };
    let millis = if text.len() == 10 {
        let date: jiff::civil::Date = text
            .parse()
            .map_err(|e| format!("{text:?} is not a date (YYYY-MM-DD): {e}"))?;
        date.at(12, 0, 0, 0)
            .in_tz(ZONE)
            .map_err(|e| format!("{text:?}: {e}"))?
            .timestamp()
            .as_millisecond()
    } else {
        let at: jiff::Timestamp = text.parse().map_err(|e| {
            format!("{text:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time: {e}")
        })?;
        at.as_millisecond()
    };
    u64::try_from(millis).map_err(|_| format!("{text:?} is before 1970"))
}

fn block((index, raw): (usize, RawBlock)) -> blocks::Block {
    blocks::Block {
        id: raw.id.unwrap_or_else(|| format!("block-{index}")),
        kind: match raw.kind {
            RawBlockKind::Inner => blocks::BlockKind::Inner,
            RawBlockKind::Outer => blocks::BlockKind::Outer,
        },
        care_provider: raw.care_provider,
        care_unit: raw.care_unit,
        start_date: raw.start_date,
        end_date: raw.end_date,
        excluded_information_types: raw.excluded_information_types,
        temporary_revokes: raw
            .temporary_revokes
            .into_iter()
            .map(|r| blocks::TemporaryRevoke {
                revoked_for_care_unit: r.revoked_for_care_unit,
                revoked_for_employee: r.revoked_for_employee,
                end_date: r.end_date,
            })
            .collect(),
    }
}

/// Checks that the expectations fit together and with the case.
fn expectation(
    at: &Locator<'_>,
    raw: &Spanned<RawExpect>,
    has_response: bool,
) -> Result<Expect, CaseError> {
    let e = raw.get_ref();
    let only = |field: &Option<Spanned<String>>, key: &str, allowed: &[Verdict]| match field {
        Some(f) if !allowed.contains(&e.verdict) => Err(at.at(
            f,
            key,
            format!("does not go with verdict {:?}", verdict_name(e.verdict)),
        )),
        _ => Ok(()),
    };
    only(&e.fault_code, "expect.fault_code", &[Verdict::Reject])?;
    only(
        &e.fault_message,
        "expect.fault_message",
        &[Verdict::Reject, Verdict::SettingsRefused],
    )?;
    let proceed_only = [
        e.edits.as_ref().map(|s| (s.span(), "expect.edits")),
        e.notes.as_ref().map(|s| (s.span(), "expect.notes")),
        e.dropped.as_ref().map(|s| (s.span(), "expect.dropped")),
        e.access.as_ref().map(|s| (s.span(), "expect.access")),
        e.response_fault_code
            .as_ref()
            .map(|s| (s.span(), "expect.response_fault_code")),
        e.response_fault_message
            .as_ref()
            .map(|s| (s.span(), "expect.response_fault_message")),
    ];
    for (span, key) in proceed_only.iter().flatten() {
        let located = |message: String| CaseError {
            file: at.file.to_owned(),
            line: Some(line_of(at.text, span.start)),
            key: Some((*key).to_owned()),
            message,
        };
        if e.verdict != Verdict::Proceed {
            return Err(located(format!(
                "does not go with verdict {:?}",
                verdict_name(e.verdict)
            )));
        }
        let about_response = !matches!(*key, "expect.edits" | "expect.notes");
        if about_response && !has_response {
            return Err(located(
                "expects a response phase, but the case has no `response`".to_owned(),
            ));
        }
    }
    if let (Some(dropped), Some(_)) = (&e.dropped, &e.response_fault_code) {
        return Err(at.at(
            dropped,
            "expect.dropped",
            "a replaced response drops nothing: give `dropped` or `response_fault_code`",
        ));
    }
    if let (Some(message), None) = (&e.response_fault_message, &e.response_fault_code) {
        return Err(at.at(
            message,
            "expect.response_fault_message",
            "give `response_fault_code` with it",
        ));
    }
    Ok(Expect {
        verdict: e.verdict,
        fault_code: e.fault_code.as_ref().map(|s| s.get_ref().clone()),
        fault_message: e.fault_message.as_ref().map(|s| s.get_ref().clone()),
        edits: e.edits.as_ref().map(|s| s.get_ref().clone()),
        notes: e
            .notes
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default(),
        dropped: e.dropped.as_ref().map(|s| s.get_ref().clone()),
        response_fault_code: e.response_fault_code.as_ref().map(|s| s.get_ref().clone()),
        response_fault_message: e
            .response_fault_message
            .as_ref()
            .map(|s| s.get_ref().clone()),
        access: e.access.as_ref().map(|s| s.get_ref().clone()),
    })
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Proceed => "proceed",
        Verdict::Reject => "reject",
        Verdict::SettingsRefused => "settings-refused",
    }
}

// ---------------------------------------------------------------------------------------
// Running a case.

/// The block service of a case: answers every lookup with the case's blocks.
struct CaseBlocks(BlocksAnswer);

impl BlockLookup for CaseBlocks {
    fn blocks_for_patient<'a>(
        &'a self,
        _patient_id: &'a str,
        _care_provider: &'a str,
    ) -> Pin<Box<dyn Future<Output = BlocksAnswer> + Send + 'a>> {
        Box::pin(std::future::ready(self.0.clone()))
    }
}

/// The access log of a case: present, so `record-access` is accepted; the entries a
/// policy records reach the runner through `LoadedPolicy::on_response`.
struct CaseJournal;

impl AccessSink for CaseJournal {
    fn append<'a>(
        &'a self,
        _entries: Vec<AccessEntry>,
        _context: &'a AccessContext,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The policy under test, compiled once for all cases.
struct Compiled {
    engine: PolicyEngine,
    file: PathBuf,
    component: Component,
    content_hash: String,
    limits: Limits,
}

/// What the request phase did.
#[derive(Debug)]
enum RequestOutcome {
    Proceed(Vec<wit::Edit>),
    Reject(wit::Fault),
    SettingsRefused(String),
    /// The policy did not load for another reason, or trapped.
    Failed(String),
}

/// What the response phase did.
#[derive(Debug)]
enum ResponseOutcome {
    NotRun(&'static str),
    Done {
        dropped: Vec<u32>,
        replaced: Option<wit::Fault>,
        failed: Option<String>,
    },
}

#[derive(Debug)]
struct Actual {
    /// `describe()` name and version, when the policy loaded.
    policy: Option<(String, String)>,
    request: RequestOutcome,
    response: ResponseOutcome,
    access: Vec<AccessEntry>,
}

impl Compiled {
    async fn run(&self, case: &Case) -> Result<Actual, CaseError> {
        let services = HostServices {
            blocks: Some(Arc::new(CaseBlocks(case.blocks.clone()))),
            access_log: case
                .access_log
                .then(|| Arc::new(CaseJournal) as Arc<dyn AccessSink>),
            clock: case
                .now_millis
                .map(|ms| Arc::new(FixedClock(ms)) as Arc<dyn crate::policy::Clock>),
        };
        let engine = self.engine.with_services(services);
        let loaded = LoadedPolicy::load_compiled(
            &engine,
            &self.file,
            &self.component,
            self.content_hash.clone(),
            case.settings_json.clone(),
            FailureMode::FailClosed,
            self.limits,
        )
        .await;
        let policy = match loaded {
            Ok(policy) => policy,
            Err(LoadError::Init { message, .. }) => {
                return Ok(Actual {
                    policy: None,
                    request: RequestOutcome::SettingsRefused(message),
                    response: ResponseOutcome::NotRun("the policy did not load"),
                    access: Vec::new(),
                })
            }
            Err(e) => {
                return Ok(Actual {
                    policy: None,
                    request: RequestOutcome::Failed(e.to_string()),
                    response: ResponseOutcome::NotRun("the policy did not load"),
                    access: Vec::new(),
                })
            }
        };
        if let Some((expected, line)) = &case.policy {
            if *expected != *policy.name {
                return Err(CaseError {
                    file: case.file.clone(),
                    line: Some(*line),
                    key: Some("policy".into()),
                    message: format!(
                        "the case is for policy {expected:?}, {} is {:?}",
                        self.file.display(),
                        &*policy.name
                    ),
                });
            }
        }
        let described = Some((policy.name.to_string(), policy.version.clone()));
        let request = if policy.wants_request {
            match policy.on_request(&case.call).await {
                Ok(wit::RequestAction::Proceed(edits)) => RequestOutcome::Proceed(edits),
                Ok(wit::RequestAction::Reject(fault)) => RequestOutcome::Reject(fault),
                Err(failure) => RequestOutcome::Failed(failure.to_string()),
            }
        } else {
            RequestOutcome::Proceed(Vec::new())
        };
        let (response, access) = match (&request, &case.records) {
            (_, None) => (
                ResponseOutcome::NotRun("the case has no response"),
                Vec::new(),
            ),
            (RequestOutcome::Proceed(_), Some(_)) if !policy.wants_response => (
                ResponseOutcome::NotRun("the policy does not ask for the response phase"),
                Vec::new(),
            ),
            (RequestOutcome::Proceed(edits), Some(records)) => {
                let mut view = case.call.clone();
                for edit in edits {
                    apply_to_call(&mut view, edit);
                }
                respond(&policy, &view, records, case.batch_records).await
            }
            (_, Some(_)) => (
                ResponseOutcome::NotRun("the request phase did not proceed"),
                Vec::new(),
            ),
        };
        Ok(Actual {
            policy: described,
            request,
            response,
            access,
        })
    }
}

/// The response phase as the proxy's filter runs it: batches in document order, each
/// policy call seeing one batch; a response without records is shown once, empty.
async fn respond(
    policy: &LoadedPolicy,
    call: &wit::Call,
    records: &[wit::RecordSummary],
    batch_records: Option<usize>,
) -> (ResponseOutcome, Vec<AccessEntry>) {
    let size = batch_records.unwrap_or(records.len()).max(1);
    let batches: Vec<&[wit::RecordSummary]> = if records.is_empty() {
        vec![&[]]
    } else {
        records.chunks(size).collect()
    };
    let mut dropped = Vec::new();
    let mut access = Vec::new();
    for batch in batches {
        match policy.on_response(call, batch).await {
            Ok((action, entries)) => {
                access.extend(entries);
                match action {
                    wit::ResponseAction::KeepAll => {}
                    wit::ResponseAction::Drop(indexes) => dropped.extend(
                        batch
                            .iter()
                            .map(|r| r.index)
                            .filter(|index| indexes.contains(index)),
                    ),
                    wit::ResponseAction::Replace(fault) => {
                        let outcome = ResponseOutcome::Done {
                            dropped,
                            replaced: Some(fault),
                            failed: None,
                        };
                        return (outcome, access);
                    }
                }
            }
            Err(failure) => {
                let outcome = ResponseOutcome::Done {
                    dropped,
                    replaced: None,
                    failed: Some(failure.to_string()),
                };
                return (outcome, access);
            }
        }
    }
    let outcome = ResponseOutcome::Done {
        dropped,
        replaced: None,
        failed: None,
    };
    (outcome, access)
}

// ---------------------------------------------------------------------------------------
// Comparing.

/// One aspect of a case whose outcome differs from the expectation.
#[derive(Debug, PartialEq, Eq)]
struct Difference {
    what: &'static str,
    expected: Vec<String>,
    actual: Vec<String>,
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    WildMatch::new(pattern).matches(text)
}

fn fault_line(verdict: &str, code: Option<&str>, message: Option<&str>) -> String {
    let mut line = verdict.to_owned();
    if let Some(code) = code {
        line.push(' ');
        line.push_str(code);
    }
    if let Some(message) = message {
        line.push_str(&format!(" {message:?}"));
    }
    line
}

fn edit_line(edit: &ExpectedEdit) -> String {
    match edit {
        ExpectedEdit::SetHeader { name, value } => {
            format!("set-header {}: {value}", name.to_ascii_lowercase())
        }
        ExpectedEdit::RemoveHeader(name) => format!("remove-header {}", name.to_ascii_lowercase()),
        ExpectedEdit::SetPeriod { start, end } => format!(
            "set-period start={} end={}",
            start.as_deref().unwrap_or("none"),
            end.as_deref().unwrap_or("none")
        ),
    }
}

fn actual_edit_line(edit: &wit::Edit) -> Option<String> {
    let expected = match edit {
        wit::Edit::SetHeader(h) => ExpectedEdit::SetHeader {
            name: h.name.clone(),
            value: h.value.clone(),
        },
        wit::Edit::RemoveHeader(name) => ExpectedEdit::RemoveHeader(name.clone()),
        wit::Edit::SetPeriod(p) => ExpectedEdit::SetPeriod {
            start: p.start.clone(),
            end: p.end.clone(),
        },
        wit::Edit::Note(_) => return None,
    };
    Some(edit_line(&expected))
}

fn owner_text(owner: &crate::policy::capabilities::access_log::Owner) -> String {
    match &owner.care_unit {
        Some(unit) => format!("{}/{unit}", owner.care_provider),
        None => owner.care_provider.clone(),
    }
}

/// An access entry as a line, with the fields `fields` names (all when none).
fn access_line(entry: &AccessEntry, fields: Option<&ExpectedAccess>) -> String {
    let all = ExpectedAccess {
        user: Some(String::new()),
        care_unit: Some(String::new()),
        care_provider: Some(String::new()),
        activity: Some(String::new()),
        purpose: Some(String::new()),
        patient_id: Some(String::new()),
        owners: Some(Vec::new()),
    };
    let fields = fields.unwrap_or(&all);
    let owners: Vec<String> = entry.owners.iter().map(owner_text).collect();
    let actual = ExpectedAccess {
        user: Some(entry.user.clone()),
        care_unit: Some(entry.care_unit.clone()),
        care_provider: Some(entry.care_provider.clone()),
        activity: Some(entry.activity.clone()),
        purpose: Some(entry.purpose.clone()),
        patient_id: Some(entry.patient_id.clone()),
        owners: Some(owners),
    };
    expected_access_line(&actual, fields)
}

/// The fields of `entry` that `fields` names, as one line.
fn expected_access_line(entry: &ExpectedAccess, fields: &ExpectedAccess) -> String {
    let mut parts = Vec::new();
    let mut field = |name: &str, wanted: bool, value: &Option<String>| {
        if wanted {
            parts.push(format!("{name}={}", value.as_deref().unwrap_or("")));
        }
    };
    field("user", fields.user.is_some(), &entry.user);
    field("care_unit", fields.care_unit.is_some(), &entry.care_unit);
    field(
        "care_provider",
        fields.care_provider.is_some(),
        &entry.care_provider,
    );
    field("activity", fields.activity.is_some(), &entry.activity);
    field("purpose", fields.purpose.is_some(), &entry.purpose);
    field("patient_id", fields.patient_id.is_some(), &entry.patient_id);
    if fields.owners.is_some() {
        parts.push(format!(
            "owners=[{}]",
            entry.owners.as_deref().unwrap_or_default().join(", ")
        ));
    }
    if parts.is_empty() {
        "an entry".to_owned()
    } else {
        parts.join(" ")
    }
}

fn indexes_line(indexes: &[u32]) -> String {
    let list: Vec<String> = indexes.iter().map(u32::to_string).collect();
    format!("dropped [{}]", list.join(", "))
}

fn compare(expect: &Expect, actual: &Actual) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut differ = |what, expected: Vec<String>, actual: Vec<String>| {
        if expected != actual {
            differences.push(Difference {
                what,
                expected,
                actual,
            });
        }
    };

    // The verdict, with the fault's code and message when the case names them.
    let expected_verdict = fault_line(
        verdict_name(expect.verdict),
        expect.fault_code.as_deref(),
        expect.fault_message.as_deref(),
    );
    let actual_verdict = match &actual.request {
        RequestOutcome::Proceed(_) => "proceed".to_owned(),
        RequestOutcome::Reject(fault) => {
            let code_ok = expect.fault_code.as_deref().is_none_or(|c| c == fault.code);
            let message_ok = expect
                .fault_message
                .as_deref()
                .is_none_or(|m| pattern_matches(m, &fault.message));
            if expect.verdict == Verdict::Reject && code_ok && message_ok {
                expected_verdict.clone()
            } else {
                fault_line("reject", Some(&fault.code), Some(&fault.message))
            }
        }
        RequestOutcome::SettingsRefused(message) => {
            let message_ok = expect
                .fault_message
                .as_deref()
                .is_none_or(|m| pattern_matches(m, message));
            if expect.verdict == Verdict::SettingsRefused && message_ok {
                expected_verdict.clone()
            } else {
                fault_line("settings-refused", None, Some(message))
            }
        }
        RequestOutcome::Failed(message) => format!("policy failed: {message}"),
    };
    differ("verdict", vec![expected_verdict], vec![actual_verdict]);

    if let RequestOutcome::Proceed(edits) = &actual.request {
        if let Some(expected) = &expect.edits {
            differ(
                "edits",
                expected.iter().map(edit_line).collect(),
                edits.iter().filter_map(actual_edit_line).collect(),
            );
        }
        if !expect.notes.is_empty() {
            let notes: Vec<(&str, &str)> = edits
                .iter()
                .filter_map(|e| match e {
                    wit::Edit::Note(h) => Some((h.name.as_str(), h.value.as_str())),
                    _ => None,
                })
                .collect();
            let mut expected_lines = Vec::new();
            let mut actual_lines = Vec::new();
            for (key, pattern) in &expect.notes {
                let line = format!("{key} = {pattern}");
                let with_key: Vec<&str> = notes
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| *v)
                    .collect();
                if with_key.iter().any(|v| pattern_matches(pattern, v)) {
                    actual_lines.push(line.clone());
                } else {
                    actual_lines.extend(with_key.iter().map(|v| format!("{key} = {v}")));
                }
                expected_lines.push(line);
            }
            differ("notes", expected_lines, actual_lines);
        }
    }

    // The response phase.
    let wants_response_fault = expect.response_fault_code.is_some();
    if expect.dropped.is_some() || wants_response_fault {
        let expected = if let Some(code) = &expect.response_fault_code {
            fault_line(
                "replaced",
                Some(code),
                expect.response_fault_message.as_deref(),
            )
        } else {
            let mut dropped = expect.dropped.clone().unwrap_or_default();
            dropped.sort_unstable();
            dropped.dedup();
            indexes_line(&dropped)
        };
        let actual_line = match &actual.response {
            ResponseOutcome::NotRun(why) => format!("no response phase: {why}"),
            ResponseOutcome::Done {
                failed: Some(message),
                ..
            } => format!("policy failed: {message}"),
            ResponseOutcome::Done {
                replaced: Some(fault),
                ..
            } => {
                let code_ok = expect.response_fault_code.as_deref() == Some(&fault.code);
                let message_ok = expect
                    .response_fault_message
                    .as_deref()
                    .is_none_or(|m| pattern_matches(m, &fault.message));
                if code_ok && message_ok {
                    expected.clone()
                } else {
                    fault_line("replaced", Some(&fault.code), Some(&fault.message))
                }
            }
            ResponseOutcome::Done { dropped, .. } => {
                let mut dropped = dropped.clone();
                dropped.sort_unstable();
                indexes_line(&dropped)
            }
        };
        differ("response", vec![expected], vec![actual_line]);
    } else if let ResponseOutcome::Done {
        replaced, failed, ..
    } = &actual.response
    {
        // Unless the case expects it, a response phase that replaces the answer or fails
        // is a failure.
        if let Some(message) = failed {
            differ(
                "response",
                vec!["released".to_owned()],
                vec![format!("policy failed: {message}")],
            );
        } else if let Some(fault) = replaced {
            differ(
                "response",
                vec!["released".to_owned()],
                vec![fault_line(
                    "replaced",
                    Some(&fault.code),
                    Some(&fault.message),
                )],
            );
        }
    }

    if let Some(expected) = &expect.access {
        let expected_lines: Vec<String> = expected
            .iter()
            .map(|e| expected_access_line(e, e))
            .collect();
        let actual_lines: Vec<String> = actual
            .access
            .iter()
            .enumerate()
            .map(|(i, entry)| access_line(entry, expected.get(i)))
            .collect();
        differ("access", expected_lines, actual_lines);
    }
    differences
}

/// A line diff (longest common subsequence): `-` only expected, `+` only actual.
fn diff_lines<'a>(expected: &'a [String], actual: &'a [String]) -> Vec<(char, &'a str)> {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out.push((' ', expected[i].as_str()));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(('-', expected[i].as_str()));
            i += 1;
        } else {
            out.push(('+', actual[j].as_str()));
            j += 1;
        }
    }
    out
}

fn write_difference(out: &mut dyn Write, difference: &Difference) -> std::io::Result<()> {
    writeln!(out, "  {}:", difference.what)?;
    let lines = diff_lines(&difference.expected, &difference.actual);
    if lines.is_empty() {
        return Ok(());
    }
    for (mark, line) in lines {
        writeln!(out, "    {mark} {line}")?;
    }
    if difference.expected.is_empty() {
        writeln!(out, "    - (none)")?;
    }
    if difference.actual.is_empty() {
        writeln!(out, "    + (none)")?;
    }
    Ok(())
}

/// `--show`: what the policy saw and did.
fn show(out: &mut dyn Write, case: &Case, actual: &Actual) -> std::io::Result<()> {
    let call = &case.call;
    writeln!(out, "  call:")?;
    writeln!(out, "    contract {} ({})", call.contract, call.operation)?;
    writeln!(out, "    logical address {}", call.logical_address)?;
    writeln!(
        out,
        "    sender {}, original consumer {}, acting on behalf of {}",
        call.sender,
        call.original_consumer,
        call.acting_on_behalf_of.as_deref().unwrap_or("none")
    )?;
    if let Some(patient) = &call.patient {
        writeln!(
            out,
            "    patient {} ({})",
            patient.id,
            patient.kind.as_deref().unwrap_or("no type")
        )?;
    }
    match &call.period {
        Some(p) => writeln!(
            out,
            "    {} start={} end={}",
            call.period_element.as_deref().unwrap_or("period"),
            p.start.as_deref().unwrap_or("none"),
            p.end.as_deref().unwrap_or("none")
        )?,
        None => writeln!(out, "    no period")?,
    }
    for header in &call.headers {
        writeln!(out, "    header {}: {}", header.name, header.value)?;
    }
    if let Some(records) = &case.records {
        writeln!(
            out,
            "  records ({}, information type {}):",
            records.len(),
            if case.information_type.is_empty() {
                "none"
            } else {
                &case.information_type
            }
        )?;
        for r in records {
            let times: Vec<String> = r
                .times
                .iter()
                .map(|t| format!("{}={}", t.field, t.value))
                .collect();
            writeln!(
                out,
                "    [{}] id={} care_provider={} care_unit={} source_system={} approved_for_patient={} times: {}",
                r.index,
                r.id.as_deref().unwrap_or("none"),
                r.care_provider.as_deref().unwrap_or("none"),
                r.care_unit.as_deref().unwrap_or("none"),
                r.source_system.as_deref().unwrap_or("none"),
                r.approved_for_patient.map_or("none".to_owned(), |a| a.to_string()),
                times.join(" ")
            )?;
        }
    }
    writeln!(out, "  outcome:")?;
    match &actual.request {
        RequestOutcome::Proceed(edits) => {
            writeln!(out, "    proceed")?;
            for edit in edits {
                match edit {
                    wit::Edit::Note(h) => writeln!(out, "      note {} = {}", h.name, h.value)?,
                    other => {
                        writeln!(out, "      {}", actual_edit_line(other).unwrap_or_default())?
                    }
                }
            }
        }
        RequestOutcome::Reject(f) => writeln!(out, "    reject {} {:?}", f.code, f.message)?,
        RequestOutcome::SettingsRefused(m) => writeln!(out, "    settings-refused {m:?}")?,
        RequestOutcome::Failed(m) => writeln!(out, "    policy failed: {m}")?,
    }
    match &actual.response {
        ResponseOutcome::NotRun(why) => writeln!(out, "    no response phase: {why}")?,
        ResponseOutcome::Done {
            dropped,
            replaced,
            failed,
        } => {
            writeln!(out, "    response: {}", indexes_line(dropped))?;
            if let Some(f) = replaced {
                writeln!(out, "    response replaced: {} {:?}", f.code, f.message)?;
            }
            if let Some(m) = failed {
                writeln!(out, "    response phase failed: {m}")?;
            }
        }
    }
    for entry in &actual.access {
        writeln!(out, "    access {}", access_line(entry, None))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_line_diff_marks_what_only_one_side_has() {
        let expected = lines(&["a", "b", "c"]);
        let actual = lines(&["a", "x", "c", "d"]);
        assert_eq!(
            diff_lines(&expected, &actual),
            vec![(' ', "a"), ('-', "b"), ('+', "x"), (' ', "c"), ('+', "d")]
        );
    }

    #[test]
    fn now_takes_a_swedish_date_or_an_instant() {
        // Noon in Stockholm (CET, +01) on 2024-03-15 is 11:00 UTC.
        let date = parse_now(&toml::Value::String("2024-03-15".into())).unwrap();
        assert_eq!(date, 1_710_500_400_000);
        let instant = parse_now(&toml::Value::String("2024-03-15T11:00:00Z".into())).unwrap();
        assert_eq!(instant, date);
        let literal: toml::Table = toml::from_str("now = 2024-03-15").unwrap();
        assert_eq!(parse_now(&literal["now"]).unwrap(), date);
        assert!(parse_now(&toml::Value::String("15/3/2024".into())).is_err());
        assert!(parse_now(&toml::Value::Integer(3)).is_err());
    }

    fn write_case(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const REQUEST: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><l:LogicalAddress xmlns:l="urn:riv:itintegration:registry:1">VS-1</l:LogicalAddress></s:Header><s:Body><r:GetCareDocumentation xmlns:r="urn:riv:clinicalprocess:healthcond:description:GetCareDocumentationResponder:2" xmlns:c="urn:riv:clinicalprocess:healthcond:description:2"><r:patientId><c:id>${patient}</c:id><c:type>1.2.752.129.2.1.3.1</c:type></r:patientId></r:GetCareDocumentation></s:Body></s:Envelope>"#;

    #[test]
    fn a_case_builds_the_call_as_the_proxy_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("request.xml"), REQUEST).unwrap();
        let file = write_case(
            dir.path(),
            "case.toml",
            r#"
request = "request.xml"
sender = "SE2321000016-AGG1"
now = "2024-03-15"
placeholders = { patient = "191212121212" }

[headers]
X-Rivta-Original-Serviceconsumer-Hsaid = "SE2321000016-OTHER"
x-vp-sender-id = "never shown"
x-rtp-actor-purpose = "Vård"

[expect]
verdict = "proceed"
"#,
        );
        let case = Case::load(&file).unwrap();
        assert_eq!(case.name, "case");
        assert_eq!(case.call.sender, "SE2321000016-AGG1");
        assert_eq!(case.call.original_consumer, "SE2321000016-OTHER");
        assert_eq!(case.call.patient.as_ref().unwrap().id, "191212121212");
        assert_eq!(case.call.operation, "GetCareDocumentation");
        assert_eq!(case.call.correlation_id, DEFAULT_CORRELATION_ID);
        // x-vp-* is never shown, and a non-ASCII value is left out as the proxy does.
        let names: Vec<&str> = case.call.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["x-rivta-original-serviceconsumer-hsaid"]);
        assert_eq!(case.now_millis, Some(1_710_500_400_000));
        assert_eq!(case.settings_json, "{}");
    }

    #[test]
    fn invalid_cases_name_the_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("request.xml"), REQUEST).unwrap();
        let cases = [
            (
                "request = \"request.xml\"\nnow = \"soon\"\n\n[expect]\nverdict = \"proceed\"\n",
                2,
                "key `now`",
            ),
            (
                "request = \"request.xml\"\n\n[expect]\nverdict = \"proceed\"\ndropped = [0]\n",
                5,
                "key `expect.dropped`: expects a response phase",
            ),
            (
                "request = \"request.xml\"\n\n[expect]\nverdict = \"maybe\"\n",
                4,
                "unknown variant",
            ),
            (
                "request = \"missing.xml\"\n[expect]\nverdict = \"proceed\"\n",
                1,
                "key `request`: cannot read",
            ),
            (
                "request = \"request.xml\"\nsurprise = 1\n[expect]\nverdict = \"proceed\"\n",
                2,
                "unknown field `surprise`",
            ),
            (
                "request = \"request.xml\"\n[expect]\nverdict = \"proceed\"\nfault_code = \"X\"\n",
                4,
                "key `expect.fault_code`",
            ),
        ];
        for (i, (text, line, message)) in cases.iter().enumerate() {
            let file = write_case(dir.path(), &format!("case{i}.toml"), text);
            let error = Case::load(&file).unwrap_err().to_string();
            let located = format!("{}:{line}:", file.display());
            assert!(error.starts_with(&located), "{error} (wanted {located})");
            assert!(error.contains(message), "{error} (wanted {message})");
        }
    }

    fn proceed_actual(edits: Vec<wit::Edit>) -> Actual {
        Actual {
            policy: None,
            request: RequestOutcome::Proceed(edits),
            response: ResponseOutcome::Done {
                dropped: vec![2, 0],
                replaced: None,
                failed: None,
            },
            access: Vec::new(),
        }
    }

    fn expect(verdict: Verdict) -> Expect {
        Expect {
            verdict,
            fault_code: None,
            fault_message: None,
            edits: None,
            notes: BTreeMap::new(),
            dropped: None,
            response_fault_code: None,
            response_fault_message: None,
            access: None,
        }
    }

    #[test]
    fn outcomes_are_compared_field_by_field() {
        let actual = proceed_actual(vec![
            wit::Edit::SetPeriod(wit::Period {
                start: Some("20210315".into()),
                end: None,
            }),
            wit::Edit::Note(wit::Header {
                name: "look_back".into(),
                value: "GetCareDocumentation 2 may reach back 36 months".into(),
            }),
        ]);
        let mut e = expect(Verdict::Proceed);
        e.edits = Some(vec![ExpectedEdit::SetPeriod {
            start: Some("20210315".into()),
            end: None,
        }]);
        e.notes
            .insert("look_back".into(), "* may reach back 36 months".into());
        e.dropped = Some(vec![0, 2]);
        assert_eq!(compare(&e, &actual), vec![]);

        e.dropped = Some(vec![1]);
        e.notes.insert("look_back".into(), "* 12 months".into());
        let differences = compare(&e, &actual);
        let what: Vec<&str> = differences.iter().map(|d| d.what).collect();
        assert_eq!(what, ["notes", "response"]);
        assert_eq!(differences[1].actual, ["dropped [0, 2]"]);

        let e = expect(Verdict::Reject);
        let differences = compare(&e, &actual);
        assert_eq!(differences[0].expected, ["reject"]);
        assert_eq!(differences[0].actual, ["proceed"]);
    }
}
