//! The only code that touches files. One seam, [`Storage`], with owned buffers (the io_uring
//! ownership model: a buffer handed to a write stays alive until its completion is reaped).
//!
//! Backends: [`uring::UringStorage`] (one io_uring per shard; the default) and
//! [`blocking::BlockingStorage`] (plain `pwrite`/`fdatasync`, used when io_uring is not
//! available). A storage value belongs to one shard thread; nothing here is shared.

pub mod blocking;
pub mod map;
pub mod uring;

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

pub use map::FileMap;

/// A file opened through a [`Storage`]; valid until closed on that storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey(pub u32);

/// A finished asynchronous operation: the caller's token and the outcome.
#[derive(Debug)]
pub struct Completion {
    pub token: u64,
    /// `Ok(())` when the whole write (or the sync) is done; the OS error otherwise.
    pub result: io::Result<()>,
}

/// Positional file I/O for one shard. Writes and syncs are asynchronous: they are queued,
/// submitted by [`Storage::submit`], and reported by [`Storage::reap`]. Everything else
/// (open, truncate, map) is synchronous and rare: at startup, recovery and segment roll.
pub trait Storage: Send {
    /// Opens (and with `create`, creates) a file for reading and writing.
    fn open(&mut self, path: &Path, create: bool) -> io::Result<FileKey>;
    /// Closes a file; operations on it must have completed.
    fn close(&mut self, file: FileKey);
    /// Current length of the file.
    fn len(&mut self, file: FileKey) -> io::Result<u64>;
    /// Cuts the file to `len` bytes and syncs the new length.
    fn truncate(&mut self, file: FileKey, len: u64) -> io::Result<()>;
    /// A read-only view of the file's first `capacity` bytes, valid for as long as any
    /// `Bytes` sliced from it lives. Only bytes below the file's length may be sliced.
    fn map(&mut self, file: FileKey, capacity: u64) -> io::Result<FileMap>;
    /// Writes a whole small file in one go and syncs it (index files, metadata).
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()>;

    /// Queues a write of all of `buffer` at `position`. Completes once every byte is written
    /// (short writes are continued by the backend) or with the first error.
    fn write(&mut self, file: FileKey, position: u64, buffer: Bytes, token: u64);
    /// Queues an `fdatasync` of the file. Queued only after the writes it must cover have
    /// completed: a sync is never linked to writes still in flight.
    fn fdatasync(&mut self, file: FileKey, token: u64);
    /// Hands queued operations to the kernel.
    fn submit(&mut self) -> io::Result<()>;
    /// Moves finished operations into `out`.
    fn reap(&mut self, out: &mut Vec<Completion>);
    /// Operations queued or in flight.
    fn in_flight(&self) -> usize;
    /// Blocks until an operation finishes, the shard's eventfd is signalled, or `timeout`.
    fn park(&mut self, wake_fd: i32, timeout: Option<Duration>) -> io::Result<()>;
}

/// Opens the io_uring backend, or the blocking one when io_uring cannot be set up here.
pub fn open_storage(entries: u32) -> Box<dyn Storage> {
    match uring::UringStorage::new(entries) {
        Ok(storage) => Box::new(storage),
        Err(error) => {
            eprintln!("rill: io_uring unavailable ({error}); using blocking file I/O");
            Box::new(blocking::BlockingStorage::new())
        }
    }
}
