//! The upstream body, received chunk by chunk, keeping every chunk until the filter
//! has emitted (or dropped) its bytes. Emitted bytes are slices of the chunks as
//! received: nothing is copied or re-serialised.

use std::collections::VecDeque;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use crate::upstream::BoxError;

pub struct BodySource<B> {
    body: B,
    /// Chunks not yet released, oldest first; `retained_from` is the body offset of
    /// the first byte of the first chunk.
    retained: VecDeque<Bytes>,
    retained_from: u64,
    /// Body offset of the end of everything received so far.
    received: u64,
    done: bool,
}

impl<B> BodySource<B> {
    pub fn new(body: B) -> Self {
        BodySource {
            body,
            retained: VecDeque::new(),
            retained_from: 0,
            received: 0,
            done: false,
        }
    }

    /// Body offset of the end of everything received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes retained and not yet released (the filter counts what it has not emitted
    /// instead; this checks that release forgets whole chunks).
    #[cfg(test)]
    fn retained_bytes(&self) -> u64 {
        self.received - self.retained_from
    }

    /// The body bytes `from..to` (both within what is retained), as slices of the
    /// received chunks.
    pub fn slice(&self, from: u64, to: u64, out: &mut Vec<Bytes>) {
        let mut offset = self.retained_from;
        for chunk in &self.retained {
            let chunk_end = offset + chunk.len() as u64;
            if chunk_end > from && offset < to {
                let a = from.saturating_sub(offset) as usize;
                let b = (to.min(chunk_end) - offset) as usize;
                out.push(chunk.slice(a..b));
            }
            if chunk_end >= to {
                break;
            }
            offset = chunk_end;
        }
    }

    /// Forgets everything before body offset `upto`: it was emitted or dropped.
    pub fn release(&mut self, upto: u64) {
        while let Some(first) = self.retained.front() {
            let first_end = self.retained_from + first.len() as u64;
            if first_end > upto {
                break;
            }
            self.retained_from = first_end;
            self.retained.pop_front();
        }
    }
}

impl<B> BodySource<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    /// The next chunk of the body, also retained for [`BodySource::slice`]; none at the
    /// end. Trailers carry nothing a SOAP answer needs and are skipped.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, BoxError> {
        while !self.done {
            match self.body.frame().await {
                None => self.done = true,
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        if !data.is_empty() {
                            self.received += data.len() as u64;
                            self.retained.push_back(data.clone());
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn body_of(chunks: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn slices_span_chunks_and_release_forgets_whole_chunks() {
        let mut source = BodySource::new(body_of(&["abc", "defg", "hi"]));
        let mut all = Vec::new();
        while let Some(chunk) = source.next_chunk().await.unwrap() {
            all.extend_from_slice(&chunk);
        }
        assert_eq!(all, b"abcdefghi");
        let mut out = Vec::new();
        source.slice(2, 8, &mut out);
        let joined: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(joined, b"cdefgh");
        source.release(5);
        assert_eq!(
            source.retained_bytes(),
            6,
            "only the first chunk is wholly released"
        );
        out.clear();
        source.slice(5, 9, &mut out);
        let joined: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(joined, b"fghi");
    }
}
