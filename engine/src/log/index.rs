//! The sparse offset index of a segment, kept in memory and written as a file when the
//! segment is sealed or the engine stops.
//!
//! ```text
//! index file {base_offset:020}.index, little endian
//! +0   u32 magic "RLI1"
//! +4   u32 CRC32C of bytes [8, end)
//! +8   u64 segment_bytes     length of the .log file this index describes
//! +16  i64 next_offset       offset after the segment's last record
//! +24  i64 max_timestamp_ms  largest record timestamp in the segment
//! +32  entries, 16 bytes each:
//!      u32 relative_offset (first offset of the batch at position, minus base_offset)
//!      u32 position        (byte position of a batch boundary in the .log file)
//!      i64 max_timestamp_ms (largest timestamp up to and including that batch)
//! ```
//! An index whose CRC, `segment_bytes` or entries disagree with the log is rebuilt by scanning.

use std::io;
use std::path::Path;

use super::{segment_path, Segment};
use crate::io::Storage;

const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"RLI1");
const INDEX_HEADER_BYTES: usize = 32;
const INDEX_ENTRY_BYTES: usize = 16;

/// One index entry: a batch boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
    pub max_timestamp_ms: i64,
}

/// An index file's contents.
#[derive(Debug)]
pub(super) struct IndexFile {
    pub next_offset: i64,
    pub max_timestamp_ms: i64,
    pub entries: Vec<IndexEntry>,
}

pub(super) fn write(
    storage: &mut dyn Storage,
    directory: &Path,
    segment: &Segment,
) -> io::Result<()> {
    let mut bytes =
        Vec::with_capacity(INDEX_HEADER_BYTES + segment.index.len() * INDEX_ENTRY_BYTES);
    bytes.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&segment.committed_bytes.to_le_bytes());
    bytes.extend_from_slice(&segment.committed_next_offset.to_le_bytes());
    bytes.extend_from_slice(&segment.max_timestamp_ms.to_le_bytes());
    for entry in &segment.index {
        bytes.extend_from_slice(&entry.relative_offset.to_le_bytes());
        bytes.extend_from_slice(&entry.position.to_le_bytes());
        bytes.extend_from_slice(&entry.max_timestamp_ms.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes[8..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    storage.write_file(
        &segment_path(directory, segment.base_offset, "index"),
        &bytes,
    )
}

/// Reads an index file; `None` when it is missing, unreadable or does not describe a log of
/// `segment_bytes` bytes starting at `base_offset` (the segment is then scanned instead).
pub(super) fn read(
    storage: &mut dyn Storage,
    directory: &Path,
    base_offset: i64,
    segment_bytes: u64,
) -> Option<IndexFile> {
    let bytes = storage
        .read_file(&segment_path(directory, base_offset, "index"))
        .ok()?;
    if bytes.len() < INDEX_HEADER_BYTES
        || !(bytes.len() - INDEX_HEADER_BYTES).is_multiple_of(INDEX_ENTRY_BYTES)
    {
        return None;
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32_at(0) != INDEX_MAGIC
        || u32_at(4) != crc32c::crc32c(&bytes[8..])
        || u64_at(8) != segment_bytes
    {
        return None;
    }
    let next_offset = u64_at(16) as i64;
    let max_timestamp_ms = u64_at(24) as i64;
    let mut entries = Vec::new();
    for chunk in bytes[INDEX_HEADER_BYTES..].chunks_exact(INDEX_ENTRY_BYTES) {
        let entry = IndexEntry {
            relative_offset: u32::from_le_bytes(chunk[0..4].try_into().expect("4 bytes")),
            position: u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes")),
            max_timestamp_ms: i64::from_le_bytes(chunk[8..16].try_into().expect("8 bytes")),
        };
        let ordered = entries.last().is_none_or(|last: &IndexEntry| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        if !ordered
            || entry.position as u64 >= segment_bytes
            || base_offset + entry.relative_offset as i64 >= next_offset
        {
            return None;
        }
        entries.push(entry);
    }
    if next_offset < base_offset {
        return None;
    }
    Some(IndexFile {
        next_offset,
        max_timestamp_ms,
        entries,
    })
}
