//! Read-only memory maps of segment files, sliced into `Bytes` without copying.
//!
//! A map may be larger than its file (the active segment is mapped to its largest size once,
//! so it need not be remapped as it grows). Touching a page past the end of the file raises
//! SIGBUS, so slices are only ever made below a length the caller knows to be written, and
//! no `&[u8]` of the whole mapping is ever formed. Segment files are only truncated during
//! recovery, before any map of them exists; a deleted file's pages stay valid while mapped.

use std::sync::Arc;

use bytes::Bytes;

/// A shared read-only mapping of a file.
#[derive(Clone, Debug)]
pub struct FileMap {
    inner: Arc<MapInner>,
}

#[derive(Debug)]
enum MapInner {
    Mmap(memmap2::MmapRaw),
    Memory(Bytes),
}

/// Owner of a slice of a mapping; keeps the mapping alive while `Bytes` views exist.
struct MapSlice {
    map: Arc<MapInner>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        match &*self.map {
            MapInner::Mmap(raw) => {
                // SAFETY: `FileMap::slice` checked `start <= end <= capacity`, and its caller
                // promises those bytes lie below the file's length, so the pages are backed
                // by the file and readable. The mapping lives as long as this owner (Arc), and
                // the bytes are only written by appends past them (never rewritten in place).
                unsafe {
                    std::slice::from_raw_parts(raw.as_ptr().add(self.start), self.end - self.start)
                }
            }
            MapInner::Memory(bytes) => &bytes[self.start..self.end],
        }
    }
}

impl FileMap {
    pub(crate) fn from_mmap(raw: memmap2::MmapRaw) -> FileMap {
        FileMap {
            inner: Arc::new(MapInner::Mmap(raw)),
        }
    }

    /// A map over bytes held in memory (simulated storage, tests).
    pub fn from_bytes(bytes: Bytes) -> FileMap {
        FileMap {
            inner: Arc::new(MapInner::Memory(bytes)),
        }
    }

    /// Bytes the map can address.
    pub fn capacity(&self) -> usize {
        match &*self.inner {
            MapInner::Mmap(raw) => raw.len(),
            MapInner::Memory(bytes) => bytes.len(),
        }
    }

    /// Borrows `[start, end)`. Same promise as [`FileMap::slice`].
    pub fn bytes(&self, start: usize, end: usize) -> &[u8] {
        assert!(
            start <= end && end <= self.capacity(),
            "range {start}..{end} outside map"
        );
        match &*self.inner {
            MapInner::Mmap(raw) => {
                // SAFETY: as in `MapSlice::as_ref`: the range is inside the mapping and below
                // the file's length; the borrow cannot outlive `self`, which keeps it mapped.
                unsafe { std::slice::from_raw_parts(raw.as_ptr().add(start), end - start) }
            }
            MapInner::Memory(bytes) => &bytes[start..end],
        }
    }

    /// A zero-copy view of `[start, end)`. The caller promises the range lies below the file's
    /// current length (it was written and its write completed).
    pub fn slice(&self, start: usize, end: usize) -> Bytes {
        assert!(
            start <= end && end <= self.capacity(),
            "slice {start}..{end} outside map"
        );
        Bytes::from_owner(MapSlice {
            map: Arc::clone(&self.inner),
            start,
            end,
        })
    }
}
