//! The simulated backend: an in-memory disk ([`SimDisk`]) shared through an `Arc`, and one
//! [`SimStorage`] per shard over it, so that a test can "crash" an engine and reopen the very
//! same disk.
//!
//! What the disk models, per file (an inode) and per directory:
//!
//! * **Volatile and durable bytes.** Completed writes change the volatile bytes (what readers
//!   see, the page cache); an `fdatasync` copies the volatile bytes *as they were when the sync
//!   was queued* to the durable bytes when it completes. `truncate` and `write_file` are
//!   synchronous and synced, as in the real backends.
//! * **Volatile names.** A file created by `open(create)` or removed by `remove`, and a
//!   directory created by `create_dir_all`, survive a power cut only once its directory was
//!   synced (`sync_dir`). Directories above the first one the log creates (the data directory
//!   and the topic directory, made by `client::engine` on the real file system) count as
//!   durable from the start.
//! * **Asynchrony.** Writes and syncs complete on `reap`, a random subset per call (at least
//!   one), so completions arrive out of order. Nothing happens to the disk before completion.
//! * **Faults.** [`SimDisk::arm_fault`]: the Nth operation from now fails with an errno
//!   ([`Fault::Error`]) or, for a write, lands only a prefix and then fails
//!   ([`Fault::TornWrite`]). [`SimDisk::power_cut`]: every open storage dies, and each file
//!   keeps only its durable bytes ([`PowerCut::DropUnsynced`]) or its durable bytes plus a
//!   random prefix of what was written since ([`PowerCut::TearUnsynced`], writeback that
//!   stopped halfway, tearing a write at any byte). [`SimDisk::flip_bit`]: bit rot.
//! * **Crashes.** [`SimDisk::crash`] (and `power_cut`) end a *generation*: storages made
//!   before it become inert. Their writes, syncs, index writes and closes succeed without
//!   touching the disk (the process is dead; its last gasps must not count), while calls that
//!   must produce something (open, len, map, read, list) fail. Dropping the old engine after a
//!   crash therefore changes nothing on the disk.
//!
//! Maps are [`SharedPages`]: the disk copies every change of the volatile bytes into each live
//! map of the file, like the page cache behind a shared mapping, so readers of the active
//! segment see appends without remapping (re-snapshotting on each `map` call would not help:
//! the log maps the active segment once). A crash detaches all maps.
//!
//! Simplifications: writeback is modelled as a prefix of the unsynced bytes (a real disk may
//! persist any subset of pages); a failed `fdatasync` leaves the volatile bytes as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::map::SharedPages;
use super::{Completion, FileKey, FileMap, Storage};

/// Longest a simulated park sleeps: the eventfd is polled, but never for longer than this.
const PARK_SLEEP_MAX: Duration = Duration::from_millis(5);

/// How an armed fault fails its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this errno (e.g. `libc::EIO`, `libc::ENOSPC`) and changes
    /// nothing.
    Error(i32),
    /// A write lands only its first `prefix_bytes` bytes (cut to less than the whole write),
    /// then fails with `errno`. Any other operation just fails with `errno`.
    TornWrite { prefix_bytes: usize, errno: i32 },
}

/// What a power cut keeps of bytes written since the last completed `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerCut {
    /// Nothing.
    DropUnsynced,
    /// A random prefix per file (possibly none, possibly all).
    TearUnsynced,
}

/// A fault that fired: the operation it hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredFault {
    pub fault: Fault,
    /// `write`, `fdatasync`, `open`, `truncate`, ...
    pub operation: &'static str,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Inode {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    /// Live maps of this file, written as the volatile bytes change.
    maps: Vec<Weak<SharedPages>>,
}

impl Inode {
    fn write(&mut self, position: usize, bytes: &[u8]) {
        let end = position + bytes.len();
        if self.volatile.len() < end {
            self.volatile.resize(end, 0);
        }
        self.volatile[position..end].copy_from_slice(bytes);
        self.maps.retain(|map| match map.upgrade() {
            Some(pages) => {
                pages.write(position, bytes);
                true
            }
            None => false,
        });
    }
}

#[derive(Debug)]
struct DiskState {
    /// splitmix64 state: power-cut tears and the completion order of new storages.
    random: u64,
    /// Storages of older generations are inert (their process crashed).
    generation: u64,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    directories: BTreeSet<PathBuf>,
    durable_directories: BTreeSet<PathBuf>,
    /// Operations counted so far (all generations).
    operations: u64,
    /// The fault and the operation count at which it fires.
    armed: Option<(u64, Fault)>,
    /// Operations (by name) that fail every time until [`SimDisk::stop_failing`].
    failing: Vec<(&'static str, Fault)>,
    fired: Vec<FiredFault>,
}

fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory (simulated)", path.display()),
    )
}

fn dead() -> io::Error {
    io::Error::other("simulated process has crashed")
}

impl DiskState {
    /// Counts an operation and returns the fault it must suffer, if the armed one is due.
    fn count(&mut self, operation: &'static str, path: Option<&Path>) -> Option<Fault> {
        self.operations += 1;
        if let Some(&(_, fault)) = self.failing.iter().find(|(name, _)| *name == operation) {
            self.fired.push(FiredFault {
                fault,
                operation,
                path: path.map(Path::to_path_buf),
            });
            return Some(fault);
        }
        match self.armed {
            Some((at, fault)) if at == self.operations => {
                self.armed = None;
                self.fired.push(FiredFault {
                    fault,
                    operation,
                    path: path.map(Path::to_path_buf),
                });
                Some(fault)
            }
            _ => None,
        }
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent()
            .is_some_and(|parent| self.directories.contains(parent))
    }

    fn new_inode(&mut self, inode: Inode) -> u64 {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, inode);
        id
    }
}

fn fault_error(fault: Fault) -> io::Error {
    match fault {
        Fault::Error(errno) | Fault::TornWrite { errno, .. } => io::Error::from_raw_os_error(errno),
    }
}

/// The simulated disk, shared by every [`SimStorage`] made from it and by the test.
#[derive(Debug)]
pub struct SimDisk {
    state: Mutex<DiskState>,
}

impl SimDisk {
    /// An empty disk; `seed` drives power-cut tears and completion orders.
    pub fn new(seed: u64) -> Arc<SimDisk> {
        Arc::new(SimDisk {
            state: Mutex::new(DiskState {
                random: seed,
                generation: 0,
                inodes: HashMap::new(),
                next_inode: 0,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                directories: BTreeSet::new(),
                durable_directories: BTreeSet::new(),
                operations: 0,
                armed: None,
                failing: Vec::new(),
                fired: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panicking shard thread must not hide the disk from the test that inspects it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process using the disk dies: storages made so far become inert. Nothing written is
    /// lost (the kernel still holds it).
    pub fn crash(&self) {
        let mut state = self.lock();
        state.generation += 1;
        for inode in state.inodes.values_mut() {
            inode.maps.clear();
        }
    }

    /// The machine loses power: a crash, then every file falls back to its durable bytes (plus
    /// a random prefix of the unsynced ones with [`PowerCut::TearUnsynced`]), and names created
    /// or removed since their directory was last synced are undone.
    pub fn power_cut(&self, cut: PowerCut) {
        self.crash();
        let mut state = self.lock();
        let state = &mut *state;
        state.directories = state.durable_directories.clone();
        let directories = &state.directories;
        state.names = state
            .durable_names
            .iter()
            .filter(|(path, _)| path.parent().is_some_and(|p| directories.contains(p)))
            .map(|(path, inode)| (path.clone(), *inode))
            .collect();
        state.durable_names = state.names.clone();
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        let mut ids: Vec<u64> = state.inodes.keys().copied().collect();
        ids.sort_unstable(); // HashMap order must not change what a seed does
        for id in ids {
            let inode = state.inodes.get_mut(&id).expect("listed");
            let kept = match cut {
                PowerCut::DropUnsynced => inode.durable.clone(),
                PowerCut::TearUnsynced => {
                    // Writeback got through a prefix of the file's current bytes, past the
                    // part that already matched the durable bytes.
                    let matching = inode
                        .durable
                        .iter()
                        .zip(&inode.volatile)
                        .take_while(|(a, b)| a == b)
                        .count();
                    let span = inode.volatile.len() - matching;
                    let cut_at =
                        matching + (next_random(&mut state.random) % (span as u64 + 1)) as usize;
                    let mut kept = inode.volatile[..cut_at].to_vec();
                    if inode.durable.len() > cut_at {
                        kept.extend_from_slice(&inode.durable[cut_at..]);
                    }
                    kept
                }
            };
            inode.volatile = kept.clone();
            inode.durable = kept;
        }
    }

    /// Arms a fault for the `operation`th operation from now (1 = the next one) on any live
    /// storage of this disk. Replaces a fault armed before.
    pub fn arm_fault(&self, operation: u64, fault: Fault) {
        assert!(operation >= 1, "operations count from 1");
        let mut state = self.lock();
        state.armed = Some((state.operations + operation, fault));
    }

    /// Makes every operation named `operation` ("write", "truncate", "fdatasync", ...) fail
    /// with `fault` until [`SimDisk::stop_failing`] (a disk that stays broken for a while).
    pub fn fail_every(&self, operation: &'static str, fault: Fault) {
        self.lock().failing.push((operation, fault));
    }

    /// Ends every [`SimDisk::fail_every`].
    pub fn stop_failing(&self) {
        self.lock().failing.clear();
    }

    /// Disarms the armed fault (if it did not fire) and returns the faults that fired since
    /// the last call.
    pub fn disarm(&self) -> Vec<FiredFault> {
        let mut state = self.lock();
        state.armed = None;
        std::mem::take(&mut state.fired)
    }

    /// Operations counted so far.
    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// Flips bit `bit` (0..8) of byte `position` of a file, in its durable and volatile bytes.
    /// Call it while no engine uses the disk (after [`SimDisk::crash`] or
    /// [`SimDisk::power_cut`], which detach every map), so that no reader sees the byte change.
    pub fn flip_bit(&self, path: &Path, position: usize, bit: u8) -> io::Result<()> {
        assert!(bit < 8, "a byte has 8 bits");
        let mut state = self.lock();
        let id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inodes.get_mut(&id).expect("named inodes exist");
        if position >= inode.volatile.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: byte {position} is past the end", path.display()),
            ));
        }
        inode.volatile[position] ^= 1 << bit;
        if position < inode.durable.len() {
            inode.durable[position] ^= 1 << bit;
        }
        Ok(())
    }

    /// The current (volatile) bytes of a file.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.names.get(path)?;
        Some(state.inodes[id].volatile.clone())
    }

    /// Every file, sorted by path.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// A storage over this disk for one shard (of the current generation).
    pub fn storage(self: &Arc<SimDisk>) -> SimStorage {
        SimStorage::new(Arc::clone(self))
    }
}

#[derive(Debug)]
enum Kind {
    Write {
        position: u64,
        buffer: Bytes,
    },
    /// The file's volatile length when the sync was queued: it covers bytes below it.
    Fdatasync {
        covers_bytes: usize,
    },
}

#[derive(Debug)]
struct Operation {
    token: u64,
    inode: u64,
    kind: Kind,
    fault: Option<Fault>,
}

/// One shard's [`Storage`] over a [`SimDisk`].
#[derive(Debug)]
pub struct SimStorage {
    disk: Arc<SimDisk>,
    generation: u64,
    /// Inodes of open files by `FileKey`; `None` marks a free key.
    files: Vec<Option<u64>>,
    queued: Vec<Operation>,
    submitted: Vec<Operation>,
    finished: Vec<Completion>,
    /// splitmix64 state for the completion order.
    random: u64,
}

impl SimStorage {
    pub fn new(disk: Arc<SimDisk>) -> SimStorage {
        let (generation, random) = {
            let mut state = disk.lock();
            let random = next_random(&mut state.random);
            (state.generation, random)
        };
        SimStorage {
            disk,
            generation,
            files: Vec::new(),
            queued: Vec::new(),
            submitted: Vec::new(),
            finished: Vec::new(),
            random,
        }
    }

    /// The disk state if this storage's process is still alive.
    fn live(&self) -> Option<MutexGuard<'_, DiskState>> {
        let state = self.disk.lock();
        (state.generation == self.generation).then_some(state)
    }

    fn inode(&self, file: FileKey) -> u64 {
        self.files[file.0 as usize].expect("operation on a closed file")
    }

    fn complete(&mut self, operation: Operation) {
        let result = match self.live() {
            None => Ok(()),
            Some(mut state) => {
                let inode = state
                    .inodes
                    .get_mut(&operation.inode)
                    .expect("open files keep their inode");
                match (operation.kind, operation.fault) {
                    (Kind::Write { position, buffer }, None) => {
                        inode.write(position as usize, &buffer);
                        Ok(())
                    }
                    (
                        Kind::Write { position, buffer },
                        Some(Fault::TornWrite {
                            prefix_bytes,
                            errno,
                        }),
                    ) => {
                        let prefix = prefix_bytes.min(buffer.len().saturating_sub(1));
                        inode.write(position as usize, &buffer[..prefix]);
                        Err(io::Error::from_raw_os_error(errno))
                    }
                    (Kind::Fdatasync { covers_bytes }, None) => {
                        let covered = covers_bytes.min(inode.volatile.len());
                        if covered >= inode.durable.len() {
                            inode.durable.clear();
                            inode.durable.extend_from_slice(&inode.volatile[..covered]);
                        }
                        Ok(())
                    }
                    (_, Some(fault)) => Err(fault_error(fault)),
                }
            }
        };
        self.finished.push(Completion {
            token: operation.token,
            result,
        });
    }
}

impl Storage for SimStorage {
    fn open(&mut self, path: &Path, create: bool) -> io::Result<FileKey> {
        let inode = {
            let mut state = self.live().ok_or_else(dead)?;
            if let Some(fault) = state.count("open", Some(path)) {
                return Err(fault_error(fault));
            }
            match state.names.get(path) {
                Some(&inode) => inode,
                None if create => {
                    if !state.parent_exists(path) {
                        return Err(not_found(path));
                    }
                    let inode = state.new_inode(Inode::default());
                    state.names.insert(path.to_path_buf(), inode);
                    inode
                }
                None => return Err(not_found(path)),
            }
        };
        let key = match self.files.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.files.push(None);
                self.files.len() - 1
            }
        };
        self.files[key] = Some(inode);
        Ok(FileKey(key as u32))
    }

    fn close(&mut self, file: FileKey) {
        let inode = self.inode(file);
        debug_assert!(
            self.queued
                .iter()
                .chain(&self.submitted)
                .all(|operation| operation.inode != inode),
            "closing a file with operations in flight"
        );
        self.files[file.0 as usize] = None;
    }

    fn len(&mut self, file: FileKey) -> io::Result<u64> {
        let inode = self.inode(file);
        let mut state = self.live().ok_or_else(dead)?;
        if let Some(fault) = state.count("len", None) {
            return Err(fault_error(fault));
        }
        Ok(state.inodes[&inode].volatile.len() as u64)
    }

    fn truncate(&mut self, file: FileKey, len: u64) -> io::Result<()> {
        let id = self.inode(file);
        let Some(mut state) = self.live() else {
            return Ok(());
        };
        if let Some(fault) = state.count("truncate", None) {
            return Err(fault_error(fault));
        }
        let inode = state
            .inodes
            .get_mut(&id)
            .expect("open files keep their inode");
        let len = len as usize;
        if len > inode.volatile.len() {
            let from = inode.volatile.len();
            inode.write(from, &vec![0; len - from]);
        }
        inode.volatile.truncate(len);
        inode.durable = inode.volatile.clone();
        Ok(())
    }

    fn sync_file(&mut self, file: FileKey) -> io::Result<()> {
        let id = self.inode(file);
        let Some(mut state) = self.live() else {
            return Ok(());
        };
        if let Some(fault) = state.count("sync_file", None) {
            return Err(fault_error(fault));
        }
        let inode = state
            .inodes
            .get_mut(&id)
            .expect("open files keep their inode");
        inode.durable = inode.volatile.clone();
        Ok(())
    }

    fn map(&mut self, file: FileKey, capacity: u64) -> io::Result<FileMap> {
        let id = self.inode(file);
        let mut state = self.live().ok_or_else(dead)?;
        if let Some(fault) = state.count("map", None) {
            return Err(fault_error(fault));
        }
        let inode = state
            .inodes
            .get_mut(&id)
            .expect("open files keep their inode");
        let pages = Arc::new(SharedPages::new(capacity as usize));
        pages.write(0, &inode.volatile);
        inode.maps.push(Arc::downgrade(&pages));
        Ok(FileMap::from_shared(pages))
    }

    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let Some(mut state) = self.live() else {
            return Ok(());
        };
        if let Some(fault) = state.count("write_file", Some(path)) {
            return Err(fault_error(fault));
        }
        if !state.parent_exists(path) {
            return Err(not_found(path));
        }
        // Temporary file, sync, rename, sync of the directory: old or new, durably.
        let inode = state.new_inode(Inode {
            volatile: contents.to_vec(),
            durable: contents.to_vec(),
            maps: Vec::new(),
        });
        state.names.insert(path.to_path_buf(), inode);
        state.durable_names.insert(path.to_path_buf(), inode);
        Ok(())
    }

    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.live().ok_or_else(dead)?;
        if let Some(fault) = state.count("read_file", Some(path)) {
            return Err(fault_error(fault));
        }
        let id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(state.inodes[&id].volatile.clone())
    }

    fn list(&mut self, directory: &Path) -> io::Result<Vec<String>> {
        let mut state = self.live().ok_or_else(dead)?;
        if let Some(fault) = state.count("list", Some(directory)) {
            return Err(fault_error(fault));
        }
        if !state.directories.contains(directory) {
            return Err(not_found(directory));
        }
        let children = |path: &&PathBuf| path.parent() == Some(directory);
        let name = |path: &PathBuf| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        };
        let mut names: Vec<String> = state
            .names
            .keys()
            .filter(children)
            .filter_map(name)
            .collect();
        names.extend(state.directories.iter().filter(children).filter_map(name));
        Ok(names)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        let mut state = self.live().ok_or_else(dead)?;
        if let Some(fault) = state.count("remove", Some(path)) {
            return Err(fault_error(fault));
        }
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn create_dir_all(&mut self, directory: &Path) -> io::Result<()> {
        let mut state = self.live().ok_or_else(dead)?;
        if let Some(fault) = state.count("create_dir_all", Some(directory)) {
            return Err(fault_error(fault));
        }
        if state.directories.contains(directory) {
            return Ok(());
        }
        // Parents the log did not create itself (data and topic directories) are durable.
        for ancestor in directory.ancestors().skip(1) {
            if state.directories.insert(ancestor.to_path_buf()) {
                state.durable_directories.insert(ancestor.to_path_buf());
            }
        }
        state.directories.insert(directory.to_path_buf());
        Ok(())
    }

    fn sync_dir(&mut self, directory: &Path) -> io::Result<()> {
        let Some(mut state) = self.live() else {
            return Ok(());
        };
        if let Some(fault) = state.count("sync_dir", Some(directory)) {
            return Err(fault_error(fault));
        }
        if !state.directories.contains(directory) {
            return Err(not_found(directory));
        }
        let state = &mut *state;
        let inside = |path: &PathBuf| path.parent() == Some(directory);
        state.durable_names.retain(|path, _| !inside(path));
        for (path, inode) in &state.names {
            if inside(path) {
                state.durable_names.insert(path.clone(), *inode);
            }
        }
        state.durable_directories.retain(|path| !inside(path));
        for path in &state.directories {
            if inside(path) {
                state.durable_directories.insert(path.clone());
            }
        }
        Ok(())
    }

    fn write(&mut self, file: FileKey, position: u64, buffer: Bytes, token: u64) {
        assert!(!buffer.is_empty(), "empty write");
        let inode = self.inode(file);
        let fault = self.live().and_then(|mut state| state.count("write", None));
        self.queued.push(Operation {
            token,
            inode,
            kind: Kind::Write { position, buffer },
            fault,
        });
    }

    fn fdatasync(&mut self, file: FileKey, token: u64) {
        let inode = self.inode(file);
        let (fault, covers_bytes) = match self.live() {
            Some(mut state) => {
                let fault = state.count("fdatasync", None);
                (fault, state.inodes[&inode].volatile.len())
            }
            None => (None, 0),
        };
        self.queued.push(Operation {
            token,
            inode,
            kind: Kind::Fdatasync { covers_bytes },
            fault,
        });
    }

    fn submit(&mut self) -> io::Result<()> {
        self.submitted.append(&mut self.queued);
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        if !self.submitted.is_empty() {
            // A random subset completes, at least one: completions arrive out of order.
            let mut index = 0;
            let mut completed = 0;
            while index < self.submitted.len() {
                if next_random(&mut self.random).is_multiple_of(2) {
                    let operation = self.submitted.remove(index);
                    self.complete(operation);
                    completed += 1;
                } else {
                    index += 1;
                }
            }
            if completed == 0 {
                let index = (next_random(&mut self.random) % self.submitted.len() as u64) as usize;
                let operation = self.submitted.remove(index);
                self.complete(operation);
            }
        }
        out.append(&mut self.finished);
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.submitted.len() + self.finished.len()
    }

    fn park(&mut self, wake_fd: i32, timeout: Option<Duration>) -> io::Result<()> {
        self.submit()?;
        if !self.submitted.is_empty() || !self.finished.is_empty() {
            return Ok(());
        }
        let timeout = timeout.map_or(PARK_SLEEP_MAX, |t| t.min(PARK_SLEEP_MAX));
        let mut poll = libc::pollfd {
            fd: wake_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
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
