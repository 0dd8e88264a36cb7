//! Arbitrary bytes as segment files of one partition, opened by `PartitionLog::open` (the
//! recovery path of DESIGN.md §5) over `BlockingStorage`, then read from the start to the
//! committed end with `cursor_at` / `read`, as a lagging consumer is fed.
//!
//! Input (missing bytes read as zero):
//!   u8      flags
//!           bit 0: recompute the CRCs of every batch in each log (walking payload_len)
//!           bit 1: with bit 0, renumber the batches so offsets are contiguous
//!           bit 2: write a second segment (the first one is then sealed)
//!           bit 3: write a `.index` for the first segment
//!           bit 4: with bit 3 and a first log that is entirely valid, forge the index's
//!                  CRC and segment_bytes so recovery trusts it (models an index that does not
//!                  describe its log: entries and next_offset are the fuzzer's)
//!           bit 5: name the second segment after the first one's last valid offset + 1
//!                  (otherwise that plus the signed delta byte below)
//!   u16 LE  length of the first log
//!   u16 LE  length of the index (with bit 3)
//!   i8      delta for the second segment's name
//!   u16 LE  bytes_max of each read
//!   u64 LE  an offset to look up with cursor_at
//!   rest    first log, index, second log
//! Properties: open either succeeds or refuses with a gap; nothing panics; every batch served
//! is a whole valid stored batch (CRCs, header/payload agreement) whose Kafka records parse
//! (the consumer `expect`s that); offsets are contiguous from the start offset to the
//! committed end. Without a trusted index the served bytes are exactly the longest valid
//! prefix an independent scan finds, and the file was cut to it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rill::io::blocking::BlockingStorage;
use rill::log::{LogConfig, OpenLogError, PartitionLog};
use rill::record::{KafkaBatch, StoredBatch, PREFIX_BYTES};
use rill_fuzz::{fix_stored_batch, header_record_count, walk_records, Fix};

struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn take(&mut self, count: usize) -> &'a [u8] {
        let count = count.min(self.bytes.len());
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        head
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }
}

/// The longest prefix of `log` that recovery must keep: whole valid batches with offsets
/// contiguous from `base_offset`. Returns (valid bytes, next offset).
fn valid_prefix(log: &[u8], base_offset: i64) -> (usize, i64) {
    let mut position = 0;
    let mut next_offset = base_offset;
    while position < log.len() {
        let Ok(batch) = StoredBatch::parse(&log[position..]) else {
            break;
        };
        if batch.base_offset() != next_offset {
            break;
        }
        position += batch.stored_len();
        next_offset = batch.next_offset();
    }
    (position, next_offset)
}

/// Recomputes checksums along the chain of batches in `log` (and renumbers them).
fn fix_chain(log: &mut [u8], base_offset: i64, renumber: bool) {
    let mut position = 0;
    let mut next_offset = base_offset;
    while position < log.len() {
        let rest = &mut log[position..];
        let count = header_record_count(rest).unwrap_or(0);
        let fix = Fix {
            lengths: false,
            agreement: false,
            base_offset: renumber.then_some(next_offset),
        };
        match fix_stored_batch(rest, fix) {
            Some(end) if end > 0 => position += end,
            _ => break,
        }
        next_offset = next_offset.saturating_add(count.max(1) as i64);
    }
}

fn forge_index(index: &mut Vec<u8>, segment_bytes: u64) {
    if index.len() < 32 {
        index.resize(32, 0);
    }
    let entries = (index.len() - 32) / 16;
    index.truncate(32 + entries * 16);
    index[0..4].copy_from_slice(b"RLI1");
    index[8..16].copy_from_slice(&segment_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&index[8..]);
    index[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn segment_path(directory: &Path, base_offset: i64, extension: &str) -> std::path::PathBuf {
    directory.join(format!("{base_offset:020}.{extension}"))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { bytes: data };
    let [flags] = input.array::<1>();
    let log_len = u16::from_le_bytes(input.array::<2>()) as usize;
    let index_len = u16::from_le_bytes(input.array::<2>()) as usize;
    let [delta] = input.array::<1>();
    let read_bytes_max = u16::from_le_bytes(input.array::<2>()) as usize;
    let probe_offset = i64::from_le_bytes(input.array::<8>());
    let mut first = input.take(log_len).to_vec();
    let mut index = if flags & 8 != 0 {
        Some(input.take(index_len).to_vec())
    } else {
        None
    };
    let mut second = (flags & 4 != 0).then(|| input.bytes.to_vec());

    if flags & 1 != 0 {
        fix_chain(&mut first, 0, flags & 2 != 0);
    }
    let (first_valid, first_next) = valid_prefix(&first, 0);
    let second_base = if flags & 32 != 0 {
        first_next
    } else {
        first_next.saturating_add(delta as i8 as i64)
    };
    if second_base <= 0 {
        second = None; // would collide with (or sort before) the first segment's name
    }
    if let Some(second) = second.as_mut() {
        if flags & 1 != 0 {
            fix_chain(second, second_base, flags & 2 != 0);
        }
    }
    let mut index_trusted = false;
    if let (Some(index), true) = (index.as_mut(), flags & 16 != 0) {
        if second.is_some() && first_valid == first.len() && !first.is_empty() {
            forge_index(index, first.len() as u64);
            index_trusted = true;
        }
    }

    let directory = tempfile::Builder::new()
        .prefix("rill-fuzz-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .expect("a temporary directory");
    let partition = directory.path().join("t").join("0");
    std::fs::create_dir_all(&partition).expect("partition directory");
    std::fs::write(segment_path(&partition, 0, "log"), &first).expect("write log");
    if let Some(index) = &index {
        std::fs::write(segment_path(&partition, 0, "index"), index).expect("write index");
    }
    if let Some(second) = &second {
        std::fs::write(segment_path(&partition, second_base, "log"), second).expect("write log");
    }

    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        index_interval_bytes: 256,
        write_bytes_max: 1 << 20,
    };
    let mut storage = BlockingStorage::new();
    let log = match PartitionLog::open(&mut storage, &partition, config) {
        Ok((log, _report)) => log,
        Err(OpenLogError::Gap {
            expected, found, ..
        }) => {
            assert!(second.is_some(), "a gap needs two segments");
            assert_ne!(expected, found);
            if !index_trusted {
                assert!(!first.is_empty() && first_valid == first.len());
                assert_eq!((expected, found), (first_next, second_base));
            }
            return;
        }
        Err(error) => panic!("open failed: {error}"),
    };

    // Walk from the start to the committed end, as catch-up reads do.
    let start_offset = log.start_offset();
    let mut cursor = log.cursor_at(start_offset);
    assert_eq!(cursor.offset, start_offset);
    let mut expected_offset = start_offset;
    let mut served = Vec::new();
    let bytes_max = read_bytes_max.max(1);
    let mut reads = 0usize;
    while let Some((view, next)) = log.read(cursor, bytes_max) {
        reads += 1;
        assert!(reads <= 1 << 20, "read never reaches the end");
        assert!(!view.is_empty(), "a read returns at least one batch");
        let mut position = 0;
        while position < view.len() {
            let batch = StoredBatch::parse(&view[position..]).unwrap_or_else(|error| {
                panic!("served an invalid batch at offset {expected_offset}: {error}")
            });
            assert_eq!(
                batch.base_offset(),
                expected_offset,
                "served offsets are contiguous"
            );
            let kafka =
                KafkaBatch::parse_verified(batch.payload()).expect("a consumer can read it");
            let (_, failed) = walk_records(&kafka, batch.payload().len());
            assert!(
                !failed,
                "served a batch whose records the consumer cannot parse"
            );
            position += batch.stored_len();
            expected_offset = batch.next_offset();
        }
        assert_eq!(next.offset, expected_offset);
        served.extend_from_slice(&view);
        cursor = next;
    }
    assert_eq!(
        expected_offset,
        log.committed_next_offset(),
        "reads end at the committed end"
    );
    assert_eq!(log.next_offset(), log.committed_next_offset());

    // Every committed batch is visited once, in order.
    let mut visited = start_offset;
    log.for_each_batch(|batch| {
        assert_eq!(batch.base_offset(), visited);
        visited = batch.next_offset();
    });
    assert_eq!(visited, log.committed_next_offset());

    // A lookup lands on the batch holding the offset, or on the end.
    let probe = log.cursor_at(probe_offset);
    let clamped = probe_offset.clamp(start_offset, log.committed_next_offset());
    assert!(probe.offset <= clamped);
    if let Some((view, _)) = log.read(probe, 1) {
        let batch = StoredBatch::parse(&view).expect("a cursor points at a valid batch");
        assert_eq!(batch.base_offset(), probe.offset);
        assert!(
            batch.next_offset() > clamped,
            "cursor_at lands on the batch holding the offset"
        );
    } else {
        assert_eq!(probe.offset, log.committed_next_offset());
    }
    let _ = log.cursor_at_timestamp(probe_offset);

    if !index_trusted {
        // The oracle: exactly the longest valid prefix is kept and served.
        let mut expected = first[..first_valid].to_vec();
        if let Some(second) = &second {
            let first_dropped = first.is_empty();
            if first_dropped || first_valid == first.len() {
                let (second_valid, _) = valid_prefix(second, second_base);
                expected.extend_from_slice(&second[..second_valid]);
            }
        }
        assert_eq!(
            served.len(),
            expected.len(),
            "served bytes are the valid prefix"
        );
        assert!(served == expected, "served bytes are the valid prefix");
        let first_on_disk = std::fs::metadata(segment_path(&partition, 0, "log")).map(|m| m.len());
        if !first.is_empty() || second.is_none() {
            assert_eq!(
                first_on_disk.expect("first log kept") as usize,
                first_valid,
                "cut at the valid prefix"
            );
        }
        if second.is_some() && !first.is_empty() && first_valid < first.len() {
            assert!(
                !segment_path(&partition, second_base, "log").exists(),
                "later segments removed"
            );
        }
    }
    let _ = PREFIX_BYTES;
    log.close(&mut storage);
});
