//! The only code that touches files. One seam, [`Storage`], with owned buffers (the io_uring
//! ownership model: a buffer handed to a write stays alive until its completion is reaped).
//!
//! Backends: [`uring::UringStorage`] (one io_uring per shard; the default),
//! [`blocking::BlockingStorage`] (plain `pwrite`/`fdatasync`, used when io_uring is not
//! available) and [`sim::SimStorage`] (an in-memory disk that completes operations out of
//! order, tears writes, loses what was never synced on a power cut and fails on demand).
//! A storage value belongs to one shard thread; only the simulated disk behind
//! [`sim::SimStorage`] is shared, so that a test can crash an engine and reopen the same disk.
//!
//! Every file operation of the log goes through [`Storage`], including directory listing,
//! removal and directory syncs, so the simulated backend sees (and can fail) all of them.
//! Topic metadata (`topic.meta`, `producer-ids`) and the data directory lock are still
//! written by `client::engine` with `std::fs`.

pub mod blocking;
pub mod map;
pub mod sim;
pub mod uring;

use std::io;
use std::path::Path;
use std::sync::Arc;
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
    /// `fdatasync` of the file, synchronously (recovery; the data path uses
    /// [`Storage::fdatasync`]).
    fn sync_file(&mut self, file: FileKey) -> io::Result<()>;
    /// A read-only view of the file's first `capacity` bytes, valid for as long as any
    /// `Bytes` sliced from it lives. Only bytes below the file's length may be sliced.
    fn map(&mut self, file: FileKey, capacity: u64) -> io::Result<FileMap>;
    /// Writes a whole small file in one go and syncs it (index files, metadata): after a
    /// crash the file is either the old one or the new one, never a mix.
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()>;
    /// Reads a whole small file (index files).
    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    /// Names (not paths) of the entries of `directory`, in no particular order.
    fn list(&mut self, directory: &Path) -> io::Result<Vec<String>>;
    /// Removes a file. The removal survives a power cut only once the directory is synced.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Creates `directory` and any missing parents. A new directory survives a power cut only
    /// once its parent is synced.
    fn create_dir_all(&mut self, directory: &Path) -> io::Result<()>;
    /// Makes the creations and removals of entries of `directory` durable (fsync of the
    /// directory).
    fn sync_dir(&mut self, directory: &Path) -> io::Result<()>;

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

/// Which [`Storage`] backend the shards use (`EngineConfig::storage`).
#[derive(Clone, Debug, Default)]
pub enum StorageChoice {
    /// io_uring, or blocking file I/O when io_uring cannot be set up here.
    #[default]
    Auto,
    /// Blocking file I/O (`pwrite`, `fdatasync`) even where io_uring works.
    Blocking,
    /// The in-memory simulated disk: every shard gets a [`sim::SimStorage`] over it. Topic
    /// metadata and the lock still live in the real `data_dir`.
    Simulated(Arc<sim::SimDisk>),
}

/// Opens the backend `choice` names for one shard.
pub fn open_storage(choice: &StorageChoice, entries: u32) -> Box<dyn Storage> {
    match choice {
        StorageChoice::Auto => match uring::UringStorage::new(entries) {
            Ok(storage) => Box::new(storage),
            Err(error) => {
                eprintln!("rill: io_uring unavailable ({error}); using blocking file I/O");
                Box::new(blocking::BlockingStorage::new())
            }
        },
        StorageChoice::Blocking => Box::new(blocking::BlockingStorage::new()),
        StorageChoice::Simulated(disk) => Box::new(sim::SimStorage::new(Arc::clone(disk))),
    }
}
