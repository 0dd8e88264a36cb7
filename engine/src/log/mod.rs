//! One partition's log: segments on disk, their sparse indexes, recovery, and lookups.
//!
//! Files of a partition directory: `{base_offset:020}.log` (stored batches back to back) and
//! `{base_offset:020}.index` (written when a segment is sealed or the engine stops; rebuilt
//! by scanning when missing or damaged). Byte layouts are in `engine/DESIGN.md`.
//!
//! Invariants: offsets are contiguous across batches and segments; `next_offset` only grows
//! except when a failed write is rolled back; nothing past `committed` is ever handed to a
//! reader. Owned by exactly one shard thread.

mod index;
mod recovery;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::io::{FileKey, FileMap, Storage};
use crate::record::StoredBatch;

pub use index::IndexEntry;
pub use recovery::RecoveryReport;

/// Settings of a partition log (from [`crate::EngineConfig`]).
#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    pub segment_bytes_max: u64,
    pub index_interval_bytes: u32,
    /// Largest single write; the active segment is mapped to `segment_bytes_max + this`.
    pub write_bytes_max: u64,
}

/// One segment file.
#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    pub file: FileKey,
    pub map: FileMap,
    /// Bytes assigned to writes (completed or in flight).
    pub assigned_bytes: u64,
    /// Bytes whose writes completed and whose records may be read.
    pub committed_bytes: u64,
    /// Offset after the last committed record.
    pub committed_next_offset: i64,
    /// Largest committed record timestamp, i64::MIN when empty.
    pub max_timestamp_ms: i64,
    pub index: Vec<IndexEntry>,
    /// Sealed by a roll and its index file not yet written.
    index_pending: bool,
}

impl Segment {
    /// The header of the committed batch at `position` (a batch boundary below
    /// `committed_bytes`); verified when it was written or recovered.
    fn committed_batch_at(&self, position: u64) -> StoredBatch<'_> {
        let bytes = self
            .map
            .bytes(position as usize, self.committed_bytes as usize);
        StoredBatch::parse_header(bytes).expect("committed bytes hold valid batches")
    }
}

/// Where a write goes, returned by [`PartitionLog::assign`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub file: FileKey,
    pub segment_base_offset: i64,
    pub position: u64,
}

/// A partition's segments.
#[derive(Debug)]
pub struct PartitionLog {
    directory: PathBuf,
    config: LogConfig,
    /// Sorted by base offset; the last one is active. Never empty.
    segments: Vec<Segment>,
    /// Offset the next assigned record gets.
    next_offset: i64,
    /// The file work of a rollback that has not succeeded yet; done before the next write.
    pending_cut: Option<PendingCut>,
}

/// What a rollback must still do on disk: remove the segments past the failed write, sync the
/// directory, and cut the file back to where the failed write began. Until it is done nothing
/// new is written, so a failed write's bytes can never be followed by (and mistaken for part
/// of) later good ones.
#[derive(Debug)]
struct PendingCut {
    /// Segment files still to remove (last first).
    remove: Vec<PathBuf>,
    /// A removal happened and the directory was not synced since.
    sync_directory: bool,
    file: FileKey,
    len: u64,
}

/// Why a partition log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenLogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: segment starts at offset {found}, expected {expected}: offsets would have a gap"
    )]
    Gap {
        path: PathBuf,
        expected: i64,
        found: i64,
    },
}

/// A position in the log a reader can resume from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub segment_base_offset: i64,
    pub position: u64,
    /// Offset of the first record at `position` (a batch boundary).
    pub offset: i64,
}

pub(crate) fn segment_path(directory: &Path, base_offset: i64, extension: &str) -> PathBuf {
    directory.join(format!("{base_offset:020}.{extension}"))
}

impl PartitionLog {
    /// Opens (creating when empty) the log in `directory`, recovering the active segment.
    pub fn open(
        storage: &mut dyn Storage,
        directory: &Path,
        config: LogConfig,
    ) -> Result<(PartitionLog, RecoveryReport), OpenLogError> {
        recovery::open(storage, directory, config)
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// First offset still stored.
    pub fn start_offset(&self) -> i64 {
        self.segments[0].base_offset
    }

    /// Offset the next appended record gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Offset after the last record readers may see (the high watermark).
    pub fn committed_next_offset(&self) -> i64 {
        self.active().committed_next_offset
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log has at least one segment")
    }

    fn segment_index(&self, base_offset: i64) -> usize {
        // Almost always the active segment or the one before it.
        let found = self
            .segments
            .iter()
            .rposition(|segment| segment.base_offset == base_offset);
        found.expect("placement refers to a segment of this log")
    }

    /// Reserves `bytes` for a write of `records` records and returns where it goes; rolls to
    /// a new segment first when the active one would grow past `segment_bytes_max`.
    pub fn assign(
        &mut self,
        storage: &mut dyn Storage,
        bytes: u64,
        records: i64,
    ) -> Result<(Placement, i64), io::Error> {
        assert!(bytes > 0 && bytes <= self.config.write_bytes_max && records > 0);
        self.finish_cut(storage)?;
        let active = self.active();
        if active.assigned_bytes > 0
            && active.assigned_bytes + bytes > self.config.segment_bytes_max
        {
            self.roll(storage)?;
        }
        let base_offset = self.next_offset;
        let active = self.segments.last_mut().expect("never empty");
        let placement = Placement {
            file: active.file,
            segment_base_offset: active.base_offset,
            position: active.assigned_bytes,
        };
        active.assigned_bytes += bytes;
        self.next_offset += records;
        Ok((placement, base_offset))
    }

    fn roll(&mut self, storage: &mut dyn Storage) -> Result<(), io::Error> {
        let base_offset = self.next_offset;
        let path = segment_path(&self.directory, base_offset, "log");
        let file = storage.open(&path, true)?;
        let capacity = self.config.segment_bytes_max + self.config.write_bytes_max;
        // The new file's name must be durable before any record in it is acknowledged.
        let prepared = storage
            .map(file, capacity)
            .and_then(|map| storage.sync_dir(&self.directory).map(|()| map));
        let map = match prepared {
            Ok(map) => map,
            Err(error) => {
                // The next assignment tries the roll again, or, if its write fits the active
                // segment, never does: remove the empty file (recovery removes it otherwise).
                storage.close(file);
                let _ = storage.remove(&path);
                return Err(error);
            }
        };
        self.segments.last_mut().expect("never empty").index_pending = true;
        self.segments.push(Segment {
            base_offset,
            file,
            map,
            assigned_bytes: 0,
            committed_bytes: 0,
            committed_next_offset: base_offset,
            max_timestamp_ms: i64::MIN,
            index: Vec::new(),
            index_pending: false,
        });
        Ok(())
    }

    /// Records that the write at `placement` (`bytes` long, records up to `next_offset`)
    /// completed and may now be read. Writes of one partition commit in assignment order.
    pub fn commit(
        &mut self,
        placement: Placement,
        bytes: u64,
        first_offset: i64,
        next_offset: i64,
        max_timestamp_ms: i64,
    ) {
        let index_interval = self.config.index_interval_bytes as u64;
        let which = self.segment_index(placement.segment_base_offset);
        let segment = &mut self.segments[which];
        assert_eq!(
            placement.position, segment.committed_bytes,
            "writes commit in order"
        );
        assert_eq!(
            first_offset, segment.committed_next_offset,
            "offsets are contiguous"
        );
        assert!(
            next_offset > first_offset,
            "a write holds at least one record"
        );
        let due = segment
            .index
            .last()
            .is_none_or(|last| placement.position - last.position as u64 >= index_interval);
        segment.max_timestamp_ms = segment.max_timestamp_ms.max(max_timestamp_ms);
        if due {
            segment.index.push(IndexEntry {
                relative_offset: (first_offset - segment.base_offset) as u32,
                position: placement.position as u32,
                max_timestamp_ms: segment.max_timestamp_ms,
            });
        }
        segment.committed_bytes = placement.position + bytes;
        segment.committed_next_offset = next_offset;
    }

    /// Undoes every assignment from `placement` on (a write failed): later offsets are
    /// reassigned, later segments removed and the file is cut back so no partial batch stays
    /// on disk. When that file work fails it is retried before the next write (which fails
    /// until it succeeds), so the log never grows past a failed write's bytes.
    pub fn roll_back(
        &mut self,
        storage: &mut dyn Storage,
        placement: Placement,
        first_offset: i64,
    ) -> io::Result<()> {
        let which = self.segment_index(placement.segment_base_offset);
        let mut remove = match self.pending_cut.take() {
            Some(earlier) => earlier.remove,
            None => Vec::new(),
        };
        for later in self.segments.drain(which + 1..) {
            storage.close(later.file);
            remove.push(segment_path(&self.directory, later.base_offset, "log"));
        }
        remove.reverse();
        let segment = self.segments.last_mut().expect("never empty");
        assert!(
            placement.position >= segment.committed_bytes,
            "a rollback never cuts committed bytes"
        );
        segment.index_pending = false;
        segment.assigned_bytes = placement.position;
        self.next_offset = first_offset;
        self.pending_cut = Some(PendingCut {
            remove,
            sync_directory: false,
            file: segment.file,
            len: placement.position,
        });
        self.finish_cut(storage)
    }

    /// Whether a rollback's file work is still to be done (its first attempt failed).
    pub fn has_pending_cut(&self) -> bool {
        self.pending_cut.is_some()
    }

    /// Retries the file work a failed rollback left pending.
    pub fn finish_pending_cut(&mut self, storage: &mut dyn Storage) -> io::Result<()> {
        self.finish_cut(storage)
    }

    /// Does the file work a rollback left pending (see [`PendingCut`]).
    fn finish_cut(&mut self, storage: &mut dyn Storage) -> io::Result<()> {
        let Some(cut) = &mut self.pending_cut else {
            return Ok(());
        };
        // Later segments go first: a cut file followed by a stale later segment would leave
        // a gap in the offsets, which recovery refuses.
        while let Some(path) = cut.remove.last() {
            match storage.remove(path) {
                Ok(()) => cut.sync_directory = true,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            cut.remove.pop();
        }
        if cut.sync_directory {
            storage.sync_dir(&self.directory)?;
            cut.sync_directory = false;
        }
        storage.truncate(cut.file, cut.len)?;
        self.pending_cut = None;
        Ok(())
    }

    /// The committed cursor for `offset`, clamped to `[start_offset, committed_next_offset]`.
    pub fn cursor_at(&self, offset: i64) -> Cursor {
        let offset = offset.clamp(self.start_offset(), self.committed_next_offset());
        let which = self
            .segments
            .partition_point(|segment| segment.base_offset <= offset)
            - 1;
        let mut which = which;
        // An empty trailing segment and a previous one ending at `offset`: start in the later.
        loop {
            let segment = &self.segments[which];
            let entry = segment.index.partition_point(|entry| {
                segment.base_offset + entry.relative_offset as i64 <= offset
            });
            let (mut position, mut at_offset) = match entry {
                0 => (0u64, segment.base_offset),
                n => {
                    let entry = segment.index[n - 1];
                    (
                        entry.position as u64,
                        segment.base_offset + entry.relative_offset as i64,
                    )
                }
            };
            while position < segment.committed_bytes {
                let batch = segment.committed_batch_at(position);
                if batch.next_offset() > offset {
                    return Cursor {
                        segment_base_offset: segment.base_offset,
                        position,
                        offset: batch.base_offset(),
                    };
                }
                position += batch.stored_len() as u64;
                at_offset = batch.next_offset();
            }
            if which + 1 < self.segments.len() {
                which += 1;
                continue;
            }
            return Cursor {
                segment_base_offset: segment.base_offset,
                position,
                offset: at_offset,
            };
        }
    }

    /// The cursor of the first batch holding a record with timestamp `>= timestamp_ms`, or the
    /// committed end.
    pub fn cursor_at_timestamp(&self, timestamp_ms: i64) -> Cursor {
        for segment in &self.segments {
            if segment.max_timestamp_ms < timestamp_ms {
                continue;
            }
            let mut position = 0u64;
            while position < segment.committed_bytes {
                let batch = segment.committed_batch_at(position);
                if batch.max_timestamp_ms() >= timestamp_ms {
                    return Cursor {
                        segment_base_offset: segment.base_offset,
                        position,
                        offset: batch.base_offset(),
                    };
                }
                position += batch.stored_len() as u64;
            }
        }
        self.cursor_at(self.committed_next_offset())
    }

    /// Committed whole batches from `cursor`, at most about `bytes_max` (at least one batch),
    /// as one zero-copy view, and the cursor after them. `None` at the committed end.
    pub fn read(&self, cursor: Cursor, bytes_max: usize) -> Option<(Bytes, Cursor)> {
        let which = self.segment_index(cursor.segment_base_offset);
        let segment = &self.segments[which];
        if cursor.position >= segment.committed_bytes {
            // End of this segment: continue in the next one, if any.
            let next = self.segments.get(which + 1)?;
            if next.committed_bytes == 0 {
                return None;
            }
            let start = Cursor {
                segment_base_offset: next.base_offset,
                position: 0,
                offset: next.base_offset,
            };
            return self.read(start, bytes_max);
        }
        let mut end = cursor.position;
        let mut offset = cursor.offset;
        while end < segment.committed_bytes
            && (end == cursor.position || end - cursor.position < bytes_max as u64)
        {
            let batch = segment.committed_batch_at(end);
            let stored_len = batch.stored_len() as u64;
            if end > cursor.position && end + stored_len - cursor.position > bytes_max as u64 {
                break;
            }
            assert_eq!(batch.base_offset(), offset, "offsets are contiguous");
            end += stored_len;
            offset = batch.next_offset();
        }
        let view = segment.map.slice(cursor.position as usize, end as usize);
        Some((
            view,
            Cursor {
                segment_base_offset: segment.base_offset,
                position: end,
                offset,
            },
        ))
    }

    /// Calls `visit` with the header of every committed batch, oldest first (recovery of the
    /// producer table). Headers were verified when the log was opened or written.
    pub fn for_each_batch(&self, mut visit: impl FnMut(StoredBatch<'_>)) {
        for segment in &self.segments {
            let mut position = 0u64;
            while position < segment.committed_bytes {
                let batch = segment.committed_batch_at(position);
                position += batch.stored_len() as u64;
                visit(batch);
            }
        }
    }

    /// Writes the index of every segment (at shutdown), so the next open need not rebuild
    /// the sealed ones.
    pub fn write_indexes(&self, storage: &mut dyn Storage) -> io::Result<()> {
        for segment in &self.segments {
            index::write(storage, &self.directory, segment)?;
        }
        Ok(())
    }

    /// Writes the index files of segments sealed by a roll whose writes have all committed.
    pub fn write_sealed_indexes(&mut self, storage: &mut dyn Storage) -> io::Result<()> {
        for segment in &mut self.segments {
            if segment.index_pending && segment.committed_bytes == segment.assigned_bytes {
                index::write(storage, &self.directory, segment)?;
                segment.index_pending = false;
            }
        }
        Ok(())
    }

    /// Closes every file (the caller has no operations in flight).
    pub fn close(self, storage: &mut dyn Storage) {
        for segment in self.segments {
            storage.close(segment.file);
        }
    }
}
