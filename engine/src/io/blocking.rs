//! The blocking backend: `pwrite` and `fdatasync` run at once on the calling shard thread.
//! Used where io_uring cannot be set up (old kernels, seccomp filters); same semantics.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::{Completion, FileKey, FileMap, Storage};

/// Files opened by a backend, by [`FileKey`], and the synchronous operations on them that
/// the real backends share.
#[derive(Debug, Default)]
pub(crate) struct FileTable {
    /// `None` marks a free key.
    files: Vec<Option<File>>,
}

impl FileTable {
    pub fn open(&mut self, path: &Path, create: bool) -> io::Result<FileKey> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        let key = match self.files.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.files.push(None);
                self.files.len() - 1
            }
        };
        self.files[key] = Some(file);
        Ok(FileKey(key as u32))
    }

    pub fn close(&mut self, file: FileKey) {
        self.files[file.0 as usize] = None;
    }

    pub fn get(&self, file: FileKey) -> &File {
        self.files[file.0 as usize]
            .as_ref()
            .expect("operation on a closed file")
    }

    pub fn count(&self) -> usize {
        self.files.iter().flatten().count()
    }

    pub fn len(&self, file: FileKey) -> io::Result<u64> {
        Ok(self.get(file).metadata()?.len())
    }

    pub fn truncate(&self, file: FileKey, len: u64) -> io::Result<()> {
        let file = self.get(file);
        file.set_len(len)?;
        file.sync_data()
    }

    pub fn sync_file(&self, file: FileKey) -> io::Result<()> {
        self.get(file).sync_data()
    }

    pub fn map(&self, file: FileKey, capacity: u64) -> io::Result<FileMap> {
        let raw = memmap2::MmapOptions::new()
            .len(capacity as usize)
            .map_raw_read_only(self.get(file))?;
        Ok(FileMap::from_mmap(raw))
    }
}

/// Blocking [`Storage`].
#[derive(Debug, Default)]
pub struct BlockingStorage {
    files: FileTable,
    finished: Vec<Completion>,
}

impl BlockingStorage {
    pub fn new() -> BlockingStorage {
        BlockingStorage::default()
    }
}

/// Writes `contents` to a temporary file, syncs it, renames it over `path` and syncs the
/// directory: the file is either the old one or the new one after a crash.
pub fn write_file_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Reads a whole file.
pub(crate) fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// Names of a directory's entries.
pub(crate) fn list(directory: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Removes a file.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

/// Creates a directory and its missing parents.
pub(crate) fn create_dir_all(directory: &Path) -> io::Result<()> {
    std::fs::create_dir_all(directory)
}

/// fsync of a directory: makes its entries durable.
pub(crate) fn sync_dir(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

impl Storage for BlockingStorage {
    fn open(&mut self, path: &Path, create: bool) -> io::Result<FileKey> {
        self.files.open(path, create)
    }

    fn close(&mut self, file: FileKey) {
        self.files.close(file);
    }

    fn len(&mut self, file: FileKey) -> io::Result<u64> {
        self.files.len(file)
    }

    fn truncate(&mut self, file: FileKey, len: u64) -> io::Result<()> {
        self.files.truncate(file, len)
    }

    fn sync_file(&mut self, file: FileKey) -> io::Result<()> {
        self.files.sync_file(file)
    }

    fn map(&mut self, file: FileKey, capacity: u64) -> io::Result<FileMap> {
        self.files.map(file, capacity)
    }

    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        write_file_synced(path, contents)
    }

    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        read_file(path)
    }

    fn list(&mut self, directory: &Path) -> io::Result<Vec<String>> {
        list(directory)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        remove(path)
    }

    fn create_dir_all(&mut self, directory: &Path) -> io::Result<()> {
        create_dir_all(directory)
    }

    fn sync_dir(&mut self, directory: &Path) -> io::Result<()> {
        sync_dir(directory)
    }

    fn write(&mut self, file: FileKey, position: u64, buffer: Bytes, token: u64) {
        let result = self.files.get(file).write_all_at(&buffer, position);
        self.finished.push(Completion { token, result });
    }

    fn fdatasync(&mut self, file: FileKey, token: u64) {
        let result = self.files.get(file).sync_data();
        self.finished.push(Completion { token, result });
    }

    fn submit(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.finished);
    }

    fn in_flight(&self) -> usize {
        self.finished.len()
    }

    fn park(&mut self, wake_fd: i32, timeout: Option<Duration>) -> io::Result<()> {
        if !self.finished.is_empty() {
            return Ok(());
        }
        let mut poll = libc::pollfd {
            fd: wake_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = timeout.map_or(-1, |t| t.as_millis().clamp(1, i32::MAX as u128) as i32);
        // SAFETY: `poll` points to one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
        if ready > 0 {
            let mut counter = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live 8-byte buffer; an eventfd read never
            // writes more.
            unsafe { libc::read(wake_fd, counter.as_mut_ptr().cast(), 8) };
        }
        Ok(())
    }
}
