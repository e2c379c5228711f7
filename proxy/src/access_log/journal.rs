//! The journal on disk: `journal-<sequence>.jsonl` files of one JSON object per line
//! (`{"appended_ms":…,"entry":{…}}`), written only at their end, and `cursor.json`, the
//! position of the first entry not yet delivered. A `lock` file keeps a second process
//! out of the directory.
//!
//! Durability: an append is acknowledged after `fdatasync` of its file. A new file and
//! the cursor (written to a temporary file, synced, renamed) are followed by an fsync of
//! the directory. After a crash the last file may end in a torn line: opening the
//! journal cuts the file back to the end of its last readable line. An unreadable line
//! in the middle of a file (which this writer never leaves) is skipped by readers and
//! counted, so one bad line never stops delivery.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{JournalEntry, JournalError, Shared};

const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".jsonl";
const CURSOR_FILE: &str = "cursor.json";
const LOCK_FILE: &str = "lock";
/// Appends queued for the writer at most (then `append` waits: backpressure).
const QUEUE: usize = 4096;
/// Appends committed together at most.
const MAX_GROUP: usize = 1024;

/// A place in the journal: a file's sequence number and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub(crate) enum Message {
    Append(AppendRequest),
    Close(oneshot::Sender<()>),
}

pub(crate) struct AppendRequest {
    /// Encoded lines, each ending in `\n`.
    pub lines: Vec<u8>,
    pub count: u64,
    pub first_ms: u64,
    pub done: oneshot::Sender<Result<(), JournalError>>,
}

#[derive(Serialize)]
struct LineRef<'a> {
    appended_ms: u64,
    entry: &'a JournalEntry,
}

#[derive(Deserialize)]
struct Line {
    appended_ms: u64,
    entry: JournalEntry,
}

/// Appends one line (JSON never contains a raw newline, so `\n` ends it).
pub(crate) fn encode_line(
    out: &mut Vec<u8>,
    appended_ms: u64,
    entry: &JournalEntry,
) -> Result<(), JournalError> {
    serde_json::to_writer(&mut *out, &LineRef { appended_ms, entry })
        .map_err(|e| JournalError::Invalid(format!("cannot encode an entry: {e}")))?;
    out.push(b'\n');
    Ok(())
}

fn decode_line(line: &[u8]) -> Option<(u64, JournalEntry)> {
    let line = line.strip_suffix(b"\n")?;
    serde_json::from_slice::<Line>(line)
        .ok()
        .map(|l| (l.appended_ms, l.entry))
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{segment:020}{SEGMENT_SUFFIX}"))
}

/// Sequence numbers of the journal files, ascending.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let read =
        std::fs::read_dir(dir).map_err(|e| JournalError::io(dir.display().to_string(), &e))?;
    let mut found: Vec<u64> = read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix(SEGMENT_PREFIX)?
                .strip_suffix(SEGMENT_SUFFIX)?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(format!("syncing {}", dir.display()), &e))
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn create_segment(dir: &Path, segment: u64) -> Result<File, JournalError> {
    let path = segment_path(dir, segment);
    let file = private_file()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| JournalError::io(format!("creating {}", path.display()), &e))?;
    sync_dir(dir)?;
    Ok(file)
}

fn load_cursor(dir: &Path) -> Result<Option<Position>, JournalError> {
    let path = dir.join(CURSOR_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| JournalError::Io {
                context: format!("reading {}", path.display()),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JournalError::io(format!("reading {}", path.display()), &e)),
    }
}

/// Persists the delivery cursor: temporary file, fsync, rename, fsync of the directory.
pub(crate) fn store_cursor(dir: &Path, cursor: Position) -> Result<(), JournalError> {
    let path = dir.join(CURSOR_FILE);
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    let bytes = serde_json::to_vec(&cursor).map_err(|e| JournalError::Io {
        context: "encoding the cursor".into(),
        message: e.to_string(),
    })?;
    private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| JournalError::io(format!("writing {}", path.display()), &e))?;
    sync_dir(dir)
}

/// Deletes journal files before `segment` (fully delivered); returns how many.
pub(crate) fn remove_segments_before(dir: &Path, segment: u64) -> Result<usize, JournalError> {
    let mut removed = 0;
    for old in segments(dir)?.into_iter().filter(|s| *s < segment) {
        let path = segment_path(dir, old);
        std::fs::remove_file(&path)
            .map_err(|e| JournalError::io(format!("removing {}", path.display()), &e))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// What reading one line gave.
pub(crate) enum Step {
    Entry(u64, Box<JournalEntry>),
    /// An unreadable line, passed over.
    Skipped,
}

/// Walks the lines between two positions, across files.
pub(crate) struct Walker<'a> {
    dir: &'a Path,
    pub pos: Position,
    to: Position,
    reader: Option<BufReader<std::io::Take<File>>>,
    buf: Vec<u8>,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(dir: &'a Path, from: Position, to: Position) -> Self {
        Walker {
            dir,
            pos: from,
            to,
            reader: None,
            buf: Vec::new(),
        }
    }

    /// The next line, or none at `to`. `pos` is then just past it.
    pub(crate) fn next_step(&mut self) -> Result<Option<Step>, JournalError> {
        loop {
            if self.pos >= self.to {
                return Ok(None);
            }
            if self.reader.is_none() {
                let path = segment_path(self.dir, self.pos.segment);
                match File::open(&path) {
                    Ok(mut file) => {
                        file.seek(SeekFrom::Start(self.pos.offset)).map_err(|e| {
                            JournalError::io(format!("reading {}", path.display()), &e)
                        })?;
                        let limit = if self.pos.segment == self.to.segment {
                            self.to.offset.saturating_sub(self.pos.offset)
                        } else {
                            u64::MAX
                        };
                        self.reader = Some(BufReader::with_capacity(64 * 1024, file.take(limit)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if !self.next_segment()? {
                            return Ok(None);
                        }
                        continue;
                    }
                    Err(e) => {
                        return Err(JournalError::io(format!("reading {}", path.display()), &e))
                    }
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            self.buf.clear();
            let read = reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| JournalError::io("reading the journal", &e))?;
            if read == 0 {
                // End of this file (or of the range in it).
                self.reader = None;
                if self.pos.segment >= self.to.segment {
                    self.pos = self.to;
                    return Ok(None);
                }
                if !self.next_segment()? {
                    return Ok(None);
                }
                continue;
            }
            self.pos.offset += read as u64;
            return Ok(Some(match decode_line(&self.buf) {
                Some((ms, entry)) => Step::Entry(ms, Box::new(entry)),
                None => Step::Skipped,
            }));
        }
    }

    /// Moves to the start of the next file up to `to`; false if there is none.
    fn next_segment(&mut self) -> Result<bool, JournalError> {
        let next = segments(self.dir)?
            .into_iter()
            .find(|s| *s > self.pos.segment && *s <= self.to.segment);
        match next {
            Some(segment) => {
                self.pos = Position { segment, offset: 0 };
                Ok(true)
            }
            None => {
                self.pos = self.to;
                Ok(false)
            }
        }
    }
}

/// Entries read for delivery.
pub(crate) struct Batch {
    /// (appended_ms, entry), in journal order.
    pub entries: Vec<(u64, JournalEntry)>,
    /// Just past the last line read.
    pub end: Position,
    pub skipped: u64,
}

/// Reads up to `max` entries from `from`, not past `to`.
pub(crate) fn read_batch(
    dir: &Path,
    from: Position,
    to: Position,
    max: usize,
) -> Result<Batch, JournalError> {
    let mut walker = Walker::new(dir, from, to);
    let mut entries = Vec::new();
    let mut skipped = 0;
    while entries.len() < max {
        match walker.next_step()? {
            Some(Step::Entry(ms, entry)) => entries.push((ms, *entry)),
            Some(Step::Skipped) => skipped += 1,
            None => break,
        }
    }
    Ok(Batch {
        entries,
        end: walker.pos,
        skipped,
    })
}

/// A journal directory after recovery, ready for its writer.
pub(crate) struct Opened {
    pub lock: Arc<File>,
    pub cursor: Position,
    /// End of the durable journal.
    pub end: Position,
    /// Undelivered entries and the append time of the first.
    pub backlog: u64,
    pub oldest_ms: Option<u64>,
    pub skipped_lines: u64,
    dir: PathBuf,
    file: File,
    segment_bytes: u64,
}

/// Opens `dir` (creating it, mode 0700): lock, cut a torn tail, count the backlog.
pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<Opened, JournalError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| JournalError::io(format!("creating {}", dir.display()), &e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| JournalError::io(format!("opening {}", lock_path.display()), &e))?;
    match fs4::FileExt::try_lock(&lock) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => return Err(JournalError::Locked(dir.to_owned())),
        Err(fs4::TryLockError::Error(e)) => {
            return Err(JournalError::io(
                format!("locking {}", lock_path.display()),
                &e,
            ))
        }
    }

    let mut found = segments(dir)?;
    if found.is_empty() {
        create_segment(dir, 1)?;
        found.push(1);
    }
    let (first, last) = (found[0], found[found.len() - 1]);
    let end_offset = cut_torn_tail(dir, last)?;
    let end = Position {
        segment: last,
        offset: end_offset,
    };
    let start = Position {
        segment: first,
        offset: 0,
    };
    let cursor = match load_cursor(dir)? {
        None => start,
        Some(c) if c.segment < first => start,
        Some(c) if c > end => {
            tracing::warn!(
                dir = %dir.display(),
                "access-log cursor points past the journal's end; delivery resumes at the end"
            );
            end
        }
        Some(c) => c,
    };

    let mut walker = Walker::new(dir, cursor, end);
    let (mut backlog, mut oldest_ms, mut skipped_lines) = (0u64, None, 0u64);
    while let Some(step) = walker.next_step()? {
        match step {
            Step::Entry(ms, _) => {
                backlog += 1;
                oldest_ms.get_or_insert(ms);
            }
            Step::Skipped => skipped_lines += 1,
        }
    }
    if skipped_lines > 0 {
        tracing::error!(
            dir = %dir.display(),
            lines = skipped_lines,
            "access-log journal has unreadable lines; they are skipped"
        );
    }
    let path = segment_path(dir, last);
    let file = private_file()
        .append(true)
        .open(&path)
        .map_err(|e| JournalError::io(format!("opening {}", path.display()), &e))?;
    Ok(Opened {
        lock: Arc::new(lock),
        cursor,
        end,
        backlog,
        oldest_ms,
        skipped_lines,
        dir: dir.to_owned(),
        file,
        segment_bytes,
    })
}

/// Cuts the last file back to the end of its last readable, complete line; returns the
/// length it keeps.
fn cut_torn_tail(dir: &Path, segment: u64) -> Result<u64, JournalError> {
    let path = segment_path(dir, segment);
    let context = || format!("recovering {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| JournalError::io(context(), &e))?;
    let len = file
        .metadata()
        .map_err(|e| JournalError::io(context(), &e))?
        .len();
    let mut reader = BufReader::with_capacity(64 * 1024, &file);
    let (mut offset, mut valid_end) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| JournalError::io(context(), &e))?;
        if read == 0 {
            break;
        }
        offset += read as u64;
        if decode_line(&line).is_some() {
            valid_end = offset;
        }
    }
    if valid_end < len {
        file.set_len(valid_end)
            .and_then(|()| file.sync_all())
            .map_err(|e| JournalError::io(context(), &e))?;
        tracing::warn!(
            file = %path.display(),
            bytes = len - valid_end,
            "access-log journal ended in a torn write (a crash while appending); the torn tail is cut"
        );
    }
    Ok(valid_end)
}

/// Starts the writer thread: it owns the open file and commits appends in groups.
pub(crate) fn spawn_writer(
    opened: Opened,
    shared: Arc<Shared>,
) -> Result<mpsc::Sender<Message>, JournalError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = Writer {
        dir: opened.dir,
        file: opened.file,
        segment: opened.end.segment,
        len: opened.end.offset,
        segment_bytes: opened.segment_bytes,
        failed: None,
        shared,
        _lock: opened.lock,
    };
    std::thread::Builder::new()
        .name("access-log-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| JournalError::io("starting the writer thread", &e))?;
    Ok(tx)
}

struct Writer {
    dir: PathBuf,
    file: File,
    segment: u64,
    len: u64,
    segment_bytes: u64,
    /// Set when a failed write could not be undone: the file's end is unknown.
    failed: Option<String>,
    shared: Arc<Shared>,
    _lock: Arc<File>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut group: Vec<AppendRequest> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut close = None;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Append(request) => group.push(request),
                    Message::Close(done) => {
                        close = Some(done);
                        break;
                    }
                }
                if group.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                let result = self.commit(&group);
                for request in group.drain(..) {
                    let _ = request.done.send(result.clone());
                }
            }
            if let Some(done) = close {
                rx.close();
                let mut closers = vec![done];
                while let Ok(message) = rx.try_recv() {
                    match message {
                        Message::Append(request) => {
                            let _ = request.done.send(Err(JournalError::Closed));
                        }
                        Message::Close(done) => closers.push(done),
                    }
                }
                // The file and this writer's hold on the directory lock go before
                // anyone hears that the journal is closed.
                drop(self);
                for done in closers {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    fn commit(&mut self, group: &[AppendRequest]) -> Result<(), JournalError> {
        if let Some(reason) = &self.failed {
            return Err(JournalError::Failed(reason.clone()));
        }
        let size: usize = group.iter().map(|r| r.lines.len()).sum();
        let mut bytes = Vec::with_capacity(size);
        let mut count = 0;
        for request in group {
            bytes.extend_from_slice(&request.lines);
            count += request.count;
        }
        let first_ms = group.iter().map(|r| r.first_ms).min().unwrap_or(0);
        if let Err(e) = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
        {
            let error = JournalError::io(
                format!(
                    "writing {}",
                    segment_path(&self.dir, self.segment).display()
                ),
                &e,
            );
            // Undo a partial write so that the file keeps ending in a whole line.
            if let Err(undo) = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
            {
                let reason = format!("{error}; cutting the partial write failed: {undo}");
                tracing::error!(error = %reason, "access-log journal failed");
                self.failed = Some(reason);
            } else {
                tracing::error!(%error, "access-log append failed");
            }
            return Err(error);
        }
        self.len += size as u64;
        self.shared.committed(
            count,
            first_ms,
            Position {
                segment: self.segment,
                offset: self.len,
            },
        );
        if self.len >= self.segment_bytes {
            self.rotate();
        }
        Ok(())
    }

    fn rotate(&mut self) {
        let next = self.segment + 1;
        match create_segment(&self.dir, next) {
            Ok(file) => {
                self.file = file;
                self.segment = next;
                self.len = 0;
                self.shared.rotated(Position {
                    segment: next,
                    offset: 0,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start a new access-log file; the current one grows on");
            }
        }
    }
}
