//! The response phase, streaming: read the upstream answer once, collect its records
//! into batches, let the pipeline decide on each batch, make the access-log entries
//! durable, and emit the batch without the dropped records.
//!
//! Memory is bounded by one batch (`batch_bytes`) plus the record being received when it
//! runs past the batch (at most `max_record_bytes`), not by the body. The status and
//! headers wait for the first batch's verdict, so a response that fits in one batch (the
//! usual case) can still be replaced by a fault; it is decided in the caller's task and
//! goes out with its exact length. A fault on a later batch aborts the body mid-stream:
//! the consumer gets a broken answer, never records a policy refused.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

use super::parser::{Parsed, RecordParser};
use super::scan::ScannedRecord;
use super::source::BodySource;
use crate::contracts::ContractInfo;
use crate::decision::Decision;
use crate::fault::{Fault, FaultCode};
use crate::policy::{wit, AccessContext, AccessSink, Pipeline};
use crate::upstream::BoxError;

/// Everything the response phase of one call needs.
pub struct ResponseFilter {
    pub pipeline: Pipeline,
    /// The call as the request phase left it.
    pub call: wit::Call,
    pub contract: &'static ContractInfo,
    /// Bytes collected before a batch is decided and released.
    pub batch_bytes: u64,
    /// Largest record held while incomplete (beyond a full batch): bounds the memory
    /// a producer's answer can take.
    pub max_record_bytes: u64,
    pub access_log: Option<Arc<dyn AccessSink>>,
    pub access_context: AccessContext,
    /// The call's decision-log entry: the policies' verdicts on each batch go there.
    pub decision: Decision,
}

/// The filtered body: the first batch's bytes, then (for an answer longer than one
/// batch) chunks from the task filtering the rest.
pub struct FilteredBody {
    ready: VecDeque<Bytes>,
    rest: Option<mpsc::Receiver<Result<Bytes, BoxError>>>,
}

impl FilteredBody {
    /// The body's length, when all of it was decided before the headers go out (the
    /// answer fit in one batch): it can be sent with a Content-Length.
    pub fn exact_len(&self) -> Option<u64> {
        self.rest
            .is_none()
            .then(|| self.ready.iter().map(|chunk| chunk.len() as u64).sum())
    }
}

impl Body for FilteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.ready.pop_front() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match &mut self.rest {
            Some(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|result| result.map(Frame::data))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.exact_len() {
            Some(len) => http_body::SizeHint::with_exact(len),
            None => http_body::SizeHint::default(),
        }
    }
}

impl ResponseFilter {
    /// Filters `body` up to the first batch's verdict: resolves with the body to send,
    /// or with the fault to answer instead. An answer that fits in one batch (the usual
    /// case) is decided whole here; the rest of a longer one is filtered by a task
    /// while the first batch goes out.
    pub async fn start<B>(self, body: B) -> Result<FilteredBody, Fault>
    where
        B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
    {
        let contract = self.contract;
        let mut run = FilterRun {
            filter: self,
            source: BodySource::new(body),
            parser: RecordParser::new(contract),
            finished: false,
            batch: Vec::new(),
            emitted: 0,
            decided: false,
        };
        let first = run.next_release().await?;
        let ready = VecDeque::from(first.chunks);
        if first.end {
            return Ok(FilteredBody { ready, rest: None });
        }
        // A few chunks of slack: the task decides the next batch while these drain.
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let decision = run.filter.decision.clone();
            if let Err(fault) = run.stream_rest(&tx).await {
                decision.aborted(&fault.code.to_string());
                tracing::warn!(code = %fault.code, detail = %fault.detail, "response aborted mid-body");
                let _ = tx.send(Err(fault.detail.into())).await;
            }
        });
        Ok(FilteredBody {
            ready,
            rest: Some(rx),
        })
    }
}

/// What one release lets out.
struct Release {
    /// The body's bytes from where the previous release stopped, minus dropped records.
    chunks: Vec<Bytes>,
    /// Whether the body ended with this release.
    end: bool,
}

/// The state of one response's filtering, carried from the first batch (decided in the
/// caller's task) to the task that streams the rest.
struct FilterRun<B> {
    filter: ResponseFilter,
    source: BodySource<B>,
    parser: RecordParser,
    /// Whether the whole body has been received.
    finished: bool,
    batch: Vec<ScannedRecord>,
    /// Body offset up to which bytes went out (or were dropped).
    emitted: u64,
    /// Whether the pipeline has seen any batch: a response without records is still
    /// shown to it once (a block check logs every access, even of nothing).
    decided: bool,
}

impl<B> FilterRun<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    /// Sends every later release to the consumer's body.
    async fn stream_rest(
        &mut self,
        tx: &mpsc::Sender<Result<Bytes, BoxError>>,
    ) -> Result<(), Fault> {
        loop {
            let release = self.next_release().await?;
            for chunk in release.chunks {
                tx.send(Ok(chunk)).await.map_err(|_| {
                    // The consumer went away; stop reading the upstream.
                    Fault::new(FaultCode::Vp009, "the consumer closed the connection")
                })?;
            }
            if release.end {
                return Ok(());
            }
        }
    }

    /// Reads and parses until a batch is cut (or the body ends), decides it and returns
    /// what may go out.
    async fn next_release(&mut self) -> Result<Release, Fault> {
        loop {
            // What was received is parsed before more is read (the previous cut may have
            // left complete batches behind it). A batch is cut between records once it
            // spans `batch_bytes`, also when it holds no record (an answer the scanner
            // finds no records in).
            let batch_bytes = self.filter.batch_bytes;
            let emitted = self.emitted;
            let parsed = self
                .parser
                .parse(self.finished, &mut self.batch, |at, _| {
                    at.saturating_sub(emitted) >= batch_bytes
                })
                .map_err(|e| unreadable(&e.to_string()))?;
            match parsed {
                Parsed::NeedMore => {
                    // Nothing can be released before the record being read ends.
                    let held = self.source.received() - self.emitted;
                    let max_record_bytes = self.filter.max_record_bytes;
                    if held > batch_bytes.saturating_add(max_record_bytes) {
                        return Err(unreadable(&format!(
                            "{held} bytes held without a complete record; a record may take at most {max_record_bytes} bytes ([policies] max_record_bytes)"
                        )));
                    }
                    let chunk = self
                        .source
                        .next_chunk()
                        .await
                        .map_err(|e| unreadable(&e.to_string()))?;
                    match &chunk {
                        Some(chunk) => self.parser.append(chunk),
                        None => self.finished = true,
                    }
                }
                Parsed::Cut(upto) => {
                    // Without records the pipeline is not asked (yet): it still sees
                    // the answer once at the end if it never saw a record.
                    self.decided |= !self.batch.is_empty();
                    let chunks = self.release(false, upto).await?;
                    return Ok(Release { chunks, end: false });
                }
                Parsed::End(upto) => {
                    let chunks = self.release(!self.decided, upto).await?;
                    return Ok(Release { chunks, end: true });
                }
            }
        }
    }

    /// Decides on the batch (also when empty, if `force`) and returns the body up to
    /// `upto`, minus dropped records.
    async fn release(&mut self, force: bool, upto: u64) -> Result<Vec<Bytes>, Fault> {
        let filter = &self.filter;
        let mut spans = Vec::with_capacity(self.batch.len());
        let summaries: Vec<wit::RecordSummary> = self
            .batch
            .drain(..)
            .map(|r| {
                spans.push((r.summary.index, r.start, r.end));
                r.summary
            })
            .collect();
        let mut dropped: Vec<(u64, u64)> = Vec::new();
        if !summaries.is_empty() || force {
            let mut decision = filter.pipeline.on_response(&filter.call, summaries).await;
            filter
                .decision
                .policies(std::mem::take(&mut decision.trace));
            if let Some(fault) = decision.fault {
                return Err(fault);
            }
            if !decision.access.is_empty() {
                let Some(journal) = &filter.access_log else {
                    return Err(Fault::new(
                        FaultCode::Rtp190,
                        "a policy recorded an access but no access log is configured",
                    ));
                };
                journal
                    .append(decision.access, &filter.access_context)
                    .await
                    .map_err(|e| {
                        Fault::new(
                            FaultCode::Rtp190,
                            format!("the access log could not be written: {e}"),
                        )
                    })?;
            }
            dropped = spans
                .iter()
                .filter(|(index, _, _)| decision.dropped.binary_search(index).is_ok())
                .map(|&(_, start, end)| (start, end))
                .collect();
        }
        let mut chunks = Vec::new();
        let mut from = self.emitted;
        for (start, end) in dropped {
            self.source.slice(from, start, &mut chunks);
            from = end;
        }
        self.source.slice(from, upto, &mut chunks);
        self.source.release(upto);
        self.emitted = upto;
        Ok(chunks)
    }
}

fn unreadable(message: &str) -> Fault {
    Fault::new(
        FaultCode::Vp009,
        format!("the producer's answer could not be read for the response policies: {message}"),
    )
}
