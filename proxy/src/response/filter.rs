//! The response phase, streaming: read the upstream answer once, collect its records
//! into batches, let the pipeline decide on each batch, make the access-log entries
//! durable, and emit the batch without the dropped records.
//!
//! Memory is bounded by one batch (`batch_bytes`) plus the record being received when it
//! runs past the batch (at most `max_record_bytes`), not by the body. The status and headers wait for the first batch's verdict,
//! so a response that fits in one batch (the usual case) can still be replaced by a
//! fault. A fault on a later batch aborts the body mid-stream: the consumer gets a
//! broken answer, never records a policy refused.

use std::sync::Arc;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::{mpsc, oneshot};

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

/// The filtered body: chunks from the filter task.
pub struct FilteredBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for FilteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|result| result.map(Frame::data)))
    }
}

impl ResponseFilter {
    /// Starts filtering `body`. Resolves when the first batch is decided: with the
    /// body to send, or with the fault to answer instead.
    pub async fn start<B>(self, body: B) -> Result<FilteredBody, Fault>
    where
        B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
    {
        // A few chunks of slack: the task decides the next batch while these drain.
        let (tx, rx) = mpsc::channel(16);
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut out = Output {
                tx,
                first: Some(first_tx),
            };
            let decision = self.decision.clone();
            if let Err(fault) = self.run(body, &mut out).await {
                if out.first.is_none() {
                    decision.aborted(&fault.code.to_string());
                }
                out.fail(fault).await;
            }
        });
        match first_rx.await {
            Ok(Ok(())) => Ok(FilteredBody { rx }),
            Ok(Err(fault)) => Err(fault),
            Err(_) => Err(Fault::new(
                FaultCode::Vp009,
                "the response filter stopped before deciding",
            )),
        }
    }

    async fn run<B>(self, body: B, out: &mut Output) -> Result<(), Fault>
    where
        B: Body<Data = Bytes, Error = BoxError> + Unpin,
    {
        let mut source = BodySource::new(body);
        let mut parser = RecordParser::new(self.contract);
        let mut batch: Vec<ScannedRecord> = Vec::new();
        // Body offset up to which bytes went out (or were dropped).
        let mut emitted: u64 = 0;
        // Whether the pipeline has seen any batch: a response without records is still
        // shown to it once (a block check logs every access, even of nothing).
        let mut decided = false;
        loop {
            let chunk = source
                .next_chunk()
                .await
                .map_err(|e| unreadable(&e.to_string()))?;
            let finished = chunk.is_none();
            if let Some(chunk) = &chunk {
                parser.append(chunk);
            }
            loop {
                // A batch is cut between records once it spans `batch_bytes`, also when
                // it holds no record (an answer the scanner finds no records in).
                let batch_bytes = self.batch_bytes;
                let parsed = parser
                    .parse(finished, &mut batch, |at, _| {
                        at.saturating_sub(emitted) >= batch_bytes
                    })
                    .map_err(|e| unreadable(&e.to_string()))?;
                match parsed {
                    Parsed::NeedMore => {
                        // Nothing can be released before the record being read ends.
                        let held = source.received() - emitted;
                        if held > self.batch_bytes.saturating_add(self.max_record_bytes) {
                            return Err(unreadable(&format!(
                                "{held} bytes held without a complete record; a record may take at most {} bytes ([policies] max_record_bytes)",
                                self.max_record_bytes
                            )));
                        }
                        break;
                    }
                    Parsed::Cut(upto) => {
                        // Without records the pipeline is not asked (yet): it still sees
                        // the answer once at the end if it never saw a record.
                        decided |= !batch.is_empty();
                        self.release(&mut batch, false, &mut source, &mut emitted, upto, out)
                            .await?;
                    }
                    Parsed::End(upto) => {
                        let force = !decided;
                        self.release(&mut batch, force, &mut source, &mut emitted, upto, out)
                            .await?;
                        out.confirm();
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Decides on the batch (also when empty, if `force`) and emits the body up to
    /// `upto`, minus dropped records.
    async fn release<B>(
        &self,
        batch: &mut Vec<ScannedRecord>,
        force: bool,
        source: &mut BodySource<B>,
        emitted: &mut u64,
        upto: u64,
        out: &mut Output,
    ) -> Result<(), Fault> {
        let mut spans = Vec::with_capacity(batch.len());
        let summaries: Vec<wit::RecordSummary> = batch
            .drain(..)
            .map(|r| {
                spans.push((r.summary.index, r.start, r.end));
                r.summary
            })
            .collect();
        let mut dropped: Vec<(u64, u64)> = Vec::new();
        if !summaries.is_empty() || force {
            let mut decision = self.pipeline.on_response(&self.call, summaries).await;
            self.decision.policies(std::mem::take(&mut decision.trace));
            if let Some(fault) = decision.fault {
                return Err(fault);
            }
            if !decision.access.is_empty() {
                let Some(journal) = &self.access_log else {
                    return Err(Fault::new(
                        FaultCode::Rtp190,
                        "a policy recorded an access but no access log is configured",
                    ));
                };
                journal
                    .append(decision.access, &self.access_context)
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
        let mut from = *emitted;
        for (start, end) in dropped {
            source.slice(from, start, &mut chunks);
            from = end;
        }
        source.slice(from, upto, &mut chunks);
        source.release(upto);
        *emitted = upto;
        out.confirm();
        for chunk in chunks {
            out.send(chunk).await?;
        }
        Ok(())
    }
}

/// Where the filter's verdict and bytes go.
struct Output {
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
    /// Until the first release: the waiting caller of `start`.
    first: Option<oneshot::Sender<Result<(), Fault>>>,
}

impl Output {
    /// The response is going out: status and headers can be sent.
    fn confirm(&mut self) {
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
    }

    async fn send(&mut self, chunk: Bytes) -> Result<(), Fault> {
        self.tx.send(Ok(chunk)).await.map_err(|_| {
            // The consumer went away; stop reading the upstream.
            Fault::new(FaultCode::Vp009, "the consumer closed the connection")
        })
    }

    /// Answers the fault if nothing went out yet; otherwise breaks the body off.
    async fn fail(&mut self, fault: Fault) {
        match self.first.take() {
            Some(first) => {
                let _ = first.send(Err(fault));
            }
            None => {
                tracing::warn!(code = %fault.code, detail = %fault.detail, "response aborted mid-body");
                let _ = self.tx.send(Err(fault.detail.into())).await;
            }
        }
    }
}

fn unreadable(message: &str) -> Fault {
    Fault::new(
        FaultCode::Vp009,
        format!("the producer's answer could not be read for the response policies: {message}"),
    )
}
