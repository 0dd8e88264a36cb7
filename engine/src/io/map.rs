//! Read-only memory maps of segment files, sliced into `Bytes` without copying.
//!
//! A map may be larger than its file (the active segment is mapped to its largest size once,
//! so it need not be remapped as it grows). Touching a page past the end of the file raises
//! SIGBUS, so slices are only ever made below a length the caller knows to be written, and
//! no `&[u8]` of the whole mapping is ever formed. Segment files are only truncated during
//! recovery, before any map of them exists; a deleted file's pages stay valid while mapped.
//!
//! The simulated backend maps files as [`SharedPages`]: a fixed-capacity buffer that the
//! simulated disk writes into as writes complete, like the page cache behind a real shared
//! mapping, so readers of the active segment see later appends without a remap. The same
//! promise holds: only bytes below a length known to be written are read, and those bytes are
//! never rewritten while mapped (appends and rollbacks only touch bytes past them).

use std::ptr::NonNull;
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
    Shared(Arc<SharedPages>),
}

/// A fixed-capacity, zero-filled buffer written in place through raw pointers by one writer
/// (the simulated disk) while readers slice bytes the writer no longer touches: the in-memory
/// stand-in for a shared file mapping. No `&[u8]` or `&mut [u8]` of the whole buffer is ever
/// formed, so a write to `[a, b)` and a read of a disjoint `[c, d)` never alias.
pub struct SharedPages {
    /// Start of `capacity` bytes allocated by `Box<[u8]>` in `new`, freed in `drop`.
    pointer: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the buffer is plain bytes owned by this value; concurrent access is limited to
// writes and reads of disjoint ranges (the promise of `FileMap::slice` and `SharedPages::write`),
// which is data-race free.
unsafe impl Send for SharedPages {}
// SAFETY: as for `Send`: shared references only read ranges nobody writes concurrently.
unsafe impl Sync for SharedPages {}

impl std::fmt::Debug for SharedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPages")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl SharedPages {
    /// A zero-filled buffer of `capacity` bytes (the allocator hands out lazily zeroed pages,
    /// so untouched capacity costs no memory).
    pub fn new(capacity: usize) -> SharedPages {
        let boxed: Box<[u8]> = vec![0u8; capacity].into_boxed_slice();
        let pointer =
            NonNull::new(Box::into_raw(boxed).cast::<u8>()).unwrap_or(NonNull::dangling());
        SharedPages { pointer, capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Copies `bytes` to `position`, cutting what would fall past the capacity. The caller
    /// promises no reader holds a view of the bytes it overwrites (they lie past every length
    /// handed to readers).
    pub fn write(&self, position: usize, bytes: &[u8]) {
        if position >= self.capacity {
            return;
        }
        let count = bytes.len().min(self.capacity - position);
        // SAFETY: `position + count <= capacity`, so the destination lies inside the
        // allocation; the source is a separate live slice; by the caller's promise no reader
        // reads those bytes concurrently.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.pointer.as_ptr().add(position),
                count,
            )
        };
    }

    fn read(&self, start: usize, end: usize) -> &[u8] {
        assert!(
            start <= end && end <= self.capacity,
            "range {start}..{end} outside pages"
        );
        // SAFETY: the range lies inside the allocation, which lives as long as `self`; by the
        // promise of `FileMap::slice` the writer no longer touches these bytes.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr().add(start), end - start) }
    }
}

impl Drop for SharedPages {
    fn drop(&mut self) {
        if self.capacity == 0 {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(self.pointer.as_ptr(), self.capacity);
        // SAFETY: `pointer` and `capacity` come from `Box::into_raw` of a `Box<[u8]>` of that
        // length in `new`, and this is the only place that frees it.
        drop(unsafe { Box::from_raw(slice) });
    }
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
            MapInner::Shared(pages) => pages.read(self.start, self.end),
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

    /// A map over pages the simulated disk keeps writing into as writes complete.
    pub fn from_shared(pages: Arc<SharedPages>) -> FileMap {
        FileMap {
            inner: Arc::new(MapInner::Shared(pages)),
        }
    }

    /// Bytes the map can address.
    pub fn capacity(&self) -> usize {
        match &*self.inner {
            MapInner::Mmap(raw) => raw.len(),
            MapInner::Memory(bytes) => bytes.len(),
            MapInner::Shared(pages) => pages.capacity(),
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
            MapInner::Shared(pages) => pages.read(start, end),
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
