//! Opening a partition log: find the segments, trust sealed segments whose index agrees with
//! them, verify every batch of the active segment, and cut the log at the first torn or
//! corrupt batch so that nothing corrupt is ever served and offsets continue without a gap.

use std::io;
use std::path::Path;

use super::{index, segment_path, IndexEntry, LogConfig, OpenLogError, PartitionLog, Segment};
use crate::io::{FileKey, FileMap, Storage};
use crate::record::StoredBatch;

/// What recovery found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Batches whose CRCs were verified.
    pub batches_verified: u64,
    /// Bytes cut from the end of the log (torn or corrupt batches and what followed them).
    pub bytes_truncated: u64,
    /// Segment files removed because an earlier segment was cut.
    pub segments_removed: usize,
    pub indexes_rebuilt: usize,
    /// Why the log was cut, if it was.
    pub cut_reason: Option<String>,
}

struct Scan {
    valid_bytes: u64,
    next_offset: i64,
    max_timestamp_ms: i64,
    entries: Vec<IndexEntry>,
    batches: u64,
    error: Option<String>,
}

/// Verifies batches from the start of a segment; stops at the first invalid one.
fn scan(map: &FileMap, len: u64, base_offset: i64, index_interval: u64) -> Scan {
    let mut scan = Scan {
        valid_bytes: 0,
        next_offset: base_offset,
        max_timestamp_ms: i64::MIN,
        entries: Vec::new(),
        batches: 0,
        error: None,
    };
    while scan.valid_bytes < len {
        let bytes = map.bytes(scan.valid_bytes as usize, len as usize);
        let batch = match StoredBatch::parse(bytes) {
            Ok(batch) => batch,
            Err(error) => {
                scan.error = Some(format!("at byte {}: {error}", scan.valid_bytes));
                break;
            }
        };
        if batch.base_offset() != scan.next_offset {
            scan.error = Some(format!(
                "at byte {}: batch starts at offset {}, expected {}",
                scan.valid_bytes,
                batch.base_offset(),
                scan.next_offset
            ));
            break;
        }
        scan.max_timestamp_ms = scan.max_timestamp_ms.max(batch.max_timestamp_ms());
        let due = scan
            .entries
            .last()
            .is_none_or(|last| scan.valid_bytes - last.position as u64 >= index_interval);
        if due {
            scan.entries.push(IndexEntry {
                relative_offset: (batch.base_offset() - base_offset) as u32,
                position: scan.valid_bytes as u32,
                max_timestamp_ms: scan.max_timestamp_ms,
            });
        }
        scan.valid_bytes += batch.stored_len() as u64;
        scan.next_offset = batch.next_offset();
        scan.batches += 1;
    }
    scan
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OpenLogError + '_ {
    move |source| OpenLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn open(
    storage: &mut dyn Storage,
    directory: &Path,
    config: LogConfig,
) -> Result<(PartitionLog, super::RecoveryReport), OpenLogError> {
    storage
        .create_dir_all(directory)
        .map_err(io_error(directory))?;
    // The partition directory's own name must be durable too, or a power cut could take the
    // directory (and every synced segment in it) away.
    if let Some(parent) = directory.parent() {
        storage.sync_dir(parent).map_err(io_error(parent))?;
    }
    let mut base_offsets = Vec::new();
    let mut removed = false;
    for name in storage.list(directory).map_err(io_error(directory))? {
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base_offset) = stem.parse::<i64>() {
                if stem.len() == 20 && base_offset >= 0 {
                    base_offsets.push(base_offset);
                }
            }
        } else if name.ends_with(".tmp") {
            removed |= storage.remove(&directory.join(&name)).is_ok();
        }
    }
    base_offsets.sort_unstable();
    let mut report = RecoveryReport::default();
    let mut segments: Vec<Segment> = Vec::new();
    let active_capacity = config.segment_bytes_max + config.write_bytes_max;
    // The segment to cut and where: done only after every later segment is removed (and the
    // removals synced), so a crash in between never leaves a cut segment followed by a later
    // one, an offset gap that the next open would refuse.
    let mut cut: Option<(FileKey, u64, std::path::PathBuf)> = None;
    for (position, &base_offset) in base_offsets.iter().enumerate() {
        let path = segment_path(directory, base_offset, "log");
        if cut.is_some() {
            // An earlier segment was cut: everything after it is unreachable.
            storage.remove(&path).map_err(io_error(&path))?;
            let _ = storage.remove(&segment_path(directory, base_offset, "index"));
            removed = true;
            report.segments_removed += 1;
            continue;
        }
        let is_last = position + 1 == base_offsets.len();
        let file = storage.open(&path, false).map_err(io_error(&path))?;
        let len = storage.len(file).map_err(io_error(&path))?;
        if let Some(previous) = segments.last() {
            if previous.committed_next_offset != base_offset {
                if len == 0 {
                    // A stray empty file: a roll that failed after creating it, after which
                    // the records went to the previous segment. It holds nothing: remove it.
                    storage.close(file);
                    storage.remove(&path).map_err(io_error(&path))?;
                    removed = true;
                    report.segments_removed += 1;
                    continue;
                }
                storage.close(file);
                return Err(OpenLogError::Gap {
                    path,
                    expected: previous.committed_next_offset,
                    found: base_offset,
                });
            }
        }
        // An empty sealed segment (its bytes were lost, or its writes rolled back) becomes
        // the active one below: map it as such.
        let capacity = if is_last || len == 0 {
            active_capacity.max(len)
        } else {
            len
        };
        let map = storage.map(file, capacity).map_err(io_error(&path))?;
        let trusted_index = if is_last {
            None
        } else {
            index::read(storage, directory, base_offset, len)
        };
        let segment = match trusted_index {
            Some(index) => Segment {
                base_offset,
                file,
                map,
                assigned_bytes: len,
                committed_bytes: len,
                committed_next_offset: index.next_offset,
                max_timestamp_ms: index.max_timestamp_ms,
                index: index.entries,
                index_pending: false,
            },
            None => {
                let scan = scan(&map, len, base_offset, config.index_interval_bytes as u64);
                report.batches_verified += scan.batches;
                let next_base_offset = base_offsets.get(position + 1).copied();
                if let Some(error) = scan.error {
                    report.bytes_truncated += len - scan.valid_bytes;
                    report.cut_reason = Some(format!("{}: {error}", path.display()));
                    cut = Some((file, scan.valid_bytes, path.clone()));
                } else if next_base_offset.is_some_and(|next| scan.next_offset < next) {
                    // A sealed segment whose verified batches end before the next segment
                    // begins lost its tail (a power cut took bytes that were never synced,
                    // while the next file's name was): the later segments follow a hole and
                    // are unreachable. Its index, if any, did not match (or it was empty).
                    report.cut_reason = Some(format!(
                        "{}: ends at offset {} but the next segment starts at {}: its tail was lost",
                        path.display(),
                        scan.next_offset,
                        next_base_offset.unwrap_or_default(),
                    ));
                    cut = Some((file, scan.valid_bytes, path.clone()));
                }
                if !is_last {
                    report.indexes_rebuilt += 1;
                }
                Segment {
                    base_offset,
                    file,
                    map,
                    assigned_bytes: scan.valid_bytes,
                    committed_bytes: scan.valid_bytes,
                    committed_next_offset: scan.next_offset,
                    max_timestamp_ms: scan.max_timestamp_ms,
                    index: scan.entries,
                    index_pending: !is_last,
                }
            }
        };
        segments.push(segment);
    }
    // What recovery keeps is what later records are appended after, so it must be durable
    // before any of them is acknowledged: a previous process may have crashed (or run in
    // `Buffer` mode) without syncing it, and losing it to a power cut later would cut the log
    // before records acknowledged in `Sync` mode. A clean file syncs at little cost. The cut
    // segment is synced by its truncation below.
    for segment in &segments {
        let is_cut = cut
            .as_ref()
            .is_some_and(|(file, _, _)| *file == segment.file);
        if !is_cut {
            let path = segment_path(directory, segment.base_offset, "log");
            storage.sync_file(segment.file).map_err(io_error(&path))?;
        }
    }
    if removed {
        storage.sync_dir(directory).map_err(io_error(directory))?;
    }
    if let Some((file, len, path)) = cut {
        storage.truncate(file, len).map_err(io_error(&path))?;
    }
    // A cut sealed segment becomes the active one: remap it to the active capacity.
    if let Some(last) = segments.last_mut() {
        if last.map.capacity() < active_capacity as usize {
            let path = segment_path(directory, last.base_offset, "log");
            last.map = storage
                .map(last.file, active_capacity)
                .map_err(io_error(&path))?;
            last.index_pending = false;
        }
    }
    if segments.is_empty() {
        let path = segment_path(directory, 0, "log");
        let file: FileKey = storage.open(&path, true).map_err(io_error(&path))?;
        let map = storage
            .map(file, active_capacity)
            .map_err(io_error(&path))?;
        storage.sync_dir(directory).map_err(io_error(directory))?;
        segments.push(Segment {
            base_offset: 0,
            file,
            map,
            assigned_bytes: 0,
            committed_bytes: 0,
            committed_next_offset: 0,
            max_timestamp_ms: i64::MIN,
            index: Vec::new(),
            index_pending: false,
        });
    }
    report.segments = segments.len();
    let next_offset = segments
        .last()
        .expect("at least one segment")
        .committed_next_offset;
    let log = PartitionLog {
        directory: directory.to_path_buf(),
        config,
        segments,
        next_offset,
        pending_cut: None,
    };
    let mut log = log;
    log.write_sealed_indexes(storage)
        .map_err(io_error(directory))?;
    Ok((log, report))
}

#[cfg(test)]
mod tests {
    //! Regression tests for recovery bugs found by `engine/tests/simulation.rs`, each on the
    //! simulated disk so that the crash lands exactly where the bug needs it.

    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::{LogConfig, PartitionLog};
    use crate::io::sim::{Fault, PowerCut, SimDisk};
    use crate::io::Storage;
    use crate::record::{finish_batches, BatchBuilder};

    const CONFIG: LogConfig = LogConfig {
        segment_bytes_max: 4096,
        index_interval_bytes: 256,
        write_bytes_max: 1 << 16,
    };

    fn directory() -> PathBuf {
        Path::new("/sim/topic/0").to_path_buf()
    }

    fn open(disk: &Arc<SimDisk>) -> (Box<dyn Storage>, PartitionLog) {
        let mut storage: Box<dyn Storage> = Box::new(disk.storage());
        let (log, _) = PartitionLog::open(&mut *storage, &directory(), CONFIG).unwrap();
        (storage, log)
    }

    fn wait(storage: &mut dyn Storage) {
        storage.submit().unwrap();
        let mut completions = Vec::new();
        while completions.is_empty() {
            storage.reap(&mut completions);
        }
        for completion in completions {
            completion.result.unwrap();
        }
    }

    /// Appends one record of `value_bytes` bytes as one batch, waits for its write (and its
    /// fdatasync with `sync`) and commits it.
    fn append(
        storage: &mut dyn Storage,
        log: &mut PartitionLog,
        value_bytes: usize,
        sync: bool,
    ) -> std::io::Result<()> {
        let mut buffer = Vec::new();
        let mut builder = BatchBuilder::begin(&mut buffer);
        builder.push(&mut buffer, 0, None, &vec![b'v'; value_bytes]);
        let (placement, first_offset) = log.assign(storage, buffer.len() as u64, 1)?;
        let next_offset = finish_batches(&mut buffer, vec![builder], first_offset);
        let bytes = buffer.len() as u64;
        storage.write(placement.file, placement.position, Bytes::from(buffer), 1);
        wait(storage);
        if sync {
            storage.fdatasync(placement.file, 2);
            wait(storage);
        }
        log.commit(placement, bytes, first_offset, next_offset, 0);
        Ok(())
    }

    /// The bug: in `Buffer` mode a roll syncs the new segment's *name* while the previous
    /// segment's last batches are still only in the page cache. A power cut then left a
    /// segment ending before the next one begins, and every later open refused the partition
    /// with "offsets would have a gap". Recovery now cuts at the lost tail instead.
    #[test]
    fn a_segment_that_lost_its_unsynced_tail_before_a_roll_is_cut_not_refused() {
        let disk = SimDisk::new(1);
        let (mut storage, mut log) = open(&disk);
        for _ in 0..3 {
            append(&mut *storage, &mut log, 100, true).unwrap();
        }
        while log.segments().len() < 2 {
            append(&mut *storage, &mut log, 100, false).unwrap();
        }
        append(&mut *storage, &mut log, 100, false).unwrap();
        disk.power_cut(PowerCut::DropUnsynced);
        drop(storage);
        let (_storage, log) = open(&disk);
        assert_eq!(
            log.next_offset(),
            3,
            "the synced records stay, the rest is cut"
        );
        assert_eq!(log.segments().len(), 1);
    }

    /// The bug: records recovered after a process crash were never synced by the new process;
    /// records appended on top of them in `Sync` mode were acknowledged, and a later power cut
    /// took the old unsynced bytes and, with the cut, the acknowledged records after them.
    #[test]
    fn records_kept_by_recovery_survive_a_later_power_cut() {
        let disk = SimDisk::new(2);
        let (mut storage, mut log) = open(&disk);
        for _ in 0..5 {
            append(&mut *storage, &mut log, 50, false).unwrap();
        }
        disk.crash();
        drop(storage);
        let (_storage, log) = open(&disk);
        assert_eq!(log.next_offset(), 5);
        disk.power_cut(PowerCut::DropUnsynced);
        let (_storage, log) = open(&disk);
        assert_eq!(log.next_offset(), 5, "what recovery kept was made durable");
    }

    /// The bug: a roll that failed after creating its file (here its map) left the empty file
    /// behind; the next, smaller write fit the old segment and took the offsets the empty
    /// file was named after, and every later open refused the overlap.
    #[test]
    fn a_roll_that_failed_after_creating_its_file_leaves_no_segment_behind() {
        let disk = SimDisk::new(3);
        let (mut storage, mut log) = open(&disk);
        append(&mut *storage, &mut log, 3000, true).unwrap();
        disk.arm_fault(2, Fault::Error(libc::EIO)); // open succeeds, map fails
        assert!(append(&mut *storage, &mut log, 2000, true).is_err());
        assert_eq!(disk.disarm().len(), 1);
        append(&mut *storage, &mut log, 100, true).unwrap();
        disk.power_cut(PowerCut::DropUnsynced);
        drop(storage);
        let (_storage, log) = open(&disk);
        assert_eq!(log.next_offset(), 2);
    }

    /// The bug: the partition directory was created but its parent never synced, so a power
    /// cut could take the directory, with every synced segment in it.
    #[test]
    fn a_new_partition_directory_survives_a_power_cut() {
        let disk = SimDisk::new(4);
        let (mut storage, mut log) = open(&disk);
        append(&mut *storage, &mut log, 10, true).unwrap();
        disk.power_cut(PowerCut::DropUnsynced);
        drop(storage);
        let (_storage, log) = open(&disk);
        assert_eq!(log.next_offset(), 1);
    }
}
