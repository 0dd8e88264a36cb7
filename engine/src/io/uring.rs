//! The io_uring backend: one ring per shard, owned by the shard thread.
//!
//! Every queued operation sits in a slot of `operations` until its completion is reaped; the
//! slot owns the buffer the kernel reads from, so the buffer outlives the operation. The
//! shard's eventfd is read through the same ring, so one `io_uring_enter` waits for both
//! "an I/O finished" and "a producer woke me".

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

use super::blocking::FileTable;
use super::{Completion, FileKey, FileMap, Storage};

/// `user_data` of the eventfd read; operation slots use their index.
const WAKER_TOKEN: u64 = u64::MAX;
const CANCEL_TOKEN: u64 = u64::MAX - 1;

#[derive(Debug)]
enum Kind {
    Write { position: u64, buffer: Bytes },
    Fdatasync,
}

#[derive(Debug)]
struct Operation {
    token: u64,
    file: FileKey,
    kind: Kind,
}

/// io_uring-backed [`Storage`].
pub struct UringStorage {
    ring: IoUring,
    /// Open files by `FileKey`.
    files: FileTable,
    /// Operations in the kernel, by slot (= `user_data`). At most `entries` are occupied.
    operations: Vec<Option<Operation>>,
    free_slots: Vec<usize>,
    /// Operations queued but not yet in the submission queue (ring full).
    pending: VecDeque<Operation>,
    finished: Vec<Completion>,
    /// Target of the eventfd read; boxed so its address is stable while the kernel holds it.
    waker_buffer: Box<[u8; 8]>,
    waker_armed: bool,
}

impl std::fmt::Debug for UringStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringStorage")
            .field("files", &self.files.count())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl UringStorage {
    pub fn new(entries: u32) -> io::Result<UringStorage> {
        let ring = IoUring::builder().build(entries)?;
        let slots = entries as usize - 2; // room for the eventfd read and a cancel
        Ok(UringStorage {
            ring,
            files: FileTable::default(),
            operations: (0..slots).map(|_| None).collect(),
            free_slots: (0..slots).rev().collect(),
            pending: VecDeque::new(),
            finished: Vec::new(),
            waker_buffer: Box::new([0; 8]),
            waker_armed: false,
        })
    }

    /// Moves pending operations into the submission queue while slots are free.
    fn fill_submission_queue(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let Some(slot) = self.free_slots.pop() else {
                break;
            };
            let operation = self.pending.pop_front().expect("checked non-empty");
            let fd = types::Fd(self.files.get(operation.file).as_raw_fd());
            let entry = match &operation.kind {
                Kind::Write { position, buffer } => {
                    opcode::Write::new(fd, buffer.as_ptr(), buffer.len() as u32)
                        .offset(*position)
                        .build()
                }
                Kind::Fdatasync => opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build(),
            };
            self.operations[slot] = Some(operation);
            self.push(entry.user_data(slot as u64))?;
        }
        Ok(())
    }

    fn push(&mut self, entry: io_uring::squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points to is owned by its operation slot (or by
            // `self.waker_buffer`) and is neither moved nor dropped until the completion with
            // that `user_data` has been reaped (or, on drop, until the ring is drained).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn collect(&mut self) {
        let mut retry = Vec::new();
        for entry in self.ring.completion() {
            let user_data = entry.user_data();
            if user_data == WAKER_TOKEN {
                self.waker_armed = false;
                continue;
            }
            if user_data == CANCEL_TOKEN {
                continue;
            }
            let slot = user_data as usize;
            let operation = self.operations[slot]
                .take()
                .expect("completion of an empty slot");
            self.free_slots.push(slot);
            let result = entry.result();
            if result < 0 {
                let error = io::Error::from_raw_os_error(-result);
                self.finished.push(Completion {
                    token: operation.token,
                    result: Err(error),
                });
                continue;
            }
            match operation.kind {
                Kind::Write { position, buffer } if (result as usize) < buffer.len() => {
                    if result == 0 {
                        let error =
                            io::Error::new(io::ErrorKind::WriteZero, "write made no progress");
                        self.finished.push(Completion {
                            token: operation.token,
                            result: Err(error),
                        });
                        continue;
                    }
                    let written = result as usize;
                    retry.push(Operation {
                        token: operation.token,
                        file: operation.file,
                        kind: Kind::Write {
                            position: position + written as u64,
                            buffer: buffer.slice(written..),
                        },
                    });
                }
                _ => self.finished.push(Completion {
                    token: operation.token,
                    result: Ok(()),
                }),
            }
        }
        for operation in retry.into_iter().rev() {
            self.pending.push_front(operation);
        }
    }
}

impl Storage for UringStorage {
    fn open(&mut self, path: &Path, create: bool) -> io::Result<FileKey> {
        self.files.open(path, create)
    }

    fn close(&mut self, file: FileKey) {
        debug_assert!(
            self.operations
                .iter()
                .flatten()
                .all(|operation| operation.file != file)
                && self.pending.iter().all(|operation| operation.file != file),
            "closing a file with operations in flight"
        );
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
        super::blocking::write_file_synced(path, contents)
    }

    // Directory operations and small whole-file reads are rare (open, roll, recovery): they
    // run synchronously, as in the blocking backend.
    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        super::blocking::read_file(path)
    }

    fn list(&mut self, directory: &Path) -> io::Result<Vec<String>> {
        super::blocking::list(directory)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        super::blocking::remove(path)
    }

    fn create_dir_all(&mut self, directory: &Path) -> io::Result<()> {
        super::blocking::create_dir_all(directory)
    }

    fn sync_dir(&mut self, directory: &Path) -> io::Result<()> {
        super::blocking::sync_dir(directory)
    }

    fn write(&mut self, file: FileKey, position: u64, buffer: Bytes, token: u64) {
        assert!(!buffer.is_empty(), "empty write");
        self.pending.push_back(Operation {
            token,
            file,
            kind: Kind::Write { position, buffer },
        });
    }

    fn fdatasync(&mut self, file: FileKey, token: u64) {
        self.pending.push_back(Operation {
            token,
            file,
            kind: Kind::Fdatasync,
        });
    }

    fn submit(&mut self) -> io::Result<()> {
        self.fill_submission_queue()?;
        self.ring.submit()?;
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        self.collect();
        out.append(&mut self.finished);
    }

    fn in_flight(&self) -> usize {
        self.pending.len() + self.operations.len() - self.free_slots.len()
    }

    fn park(&mut self, wake_fd: i32, timeout: Option<Duration>) -> io::Result<()> {
        if !self.waker_armed {
            let entry = opcode::Read::new(types::Fd(wake_fd), self.waker_buffer.as_mut_ptr(), 8)
                .build()
                .user_data(WAKER_TOKEN);
            self.push(entry)?;
            self.waker_armed = true;
        }
        self.fill_submission_queue()?;
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let timespec = types::Timespec::from(timeout);
                let arguments = types::SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(1, &arguments)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

impl Drop for UringStorage {
    fn drop(&mut self) {
        // The kernel may still read from operation buffers or write into the waker buffer:
        // cancel the eventfd read and wait for every completion before they are freed.
        if self.waker_armed {
            let cancel = opcode::AsyncCancel::new(WAKER_TOKEN)
                .build()
                .user_data(CANCEL_TOKEN);
            let _ = self.push(cancel);
        }
        self.pending.clear();
        while self.waker_armed || self.free_slots.len() < self.operations.len() {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.collect();
        }
    }
}
