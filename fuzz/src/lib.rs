//! Helpers shared by the fuzz targets: turning mutated bytes back into checksummed batches
//! (so the fuzzer gets past the CRCs and reaches the parsers behind them), checking the
//! records of a Kafka batch, and building the seed corpora.
//!
//! Why fix checksums up: a mutation of a valid batch almost always breaks one of its three
//! CRC32Cs, and then every input stops at the first check. Each target reads a leading flags
//! byte; when a "fix" bit is set the harness recomputes the checksums (and optionally the
//! lengths) of whatever the fuzzer produced, which models an adversary or a buggy writer
//! rather than a torn write. Without it, the input is exactly what the parser sees.
//!
//! Stored batch layout (engine/DESIGN.md §4.1, §4.2): magic @0, header CRC @4 (over 8..64),
//! archived header @8..64 with base_offset @8, last_offset_delta @16, record_count @20,
//! payload_len @56, payload_crc32c @60; the Kafka batch starts @64.

use std::ops::Range;

use rill::record::{BatchBuilder, KafkaBatch, PREFIX_BYTES, STORED_BATCH_MAGIC};

/// Where the Kafka v2 batch's CRC starts (Kafka: attributes..end).
const KAFKA_CRC_START: usize = 21;
/// Bytes before the first record of a Kafka v2 batch.
pub const KAFKA_HEADER_BYTES: usize = 61;

const HEADER_BASE_OFFSET: usize = 8;
const HEADER_LAST_OFFSET_DELTA: usize = 16;
const HEADER_RECORD_COUNT: usize = 20;
const HEADER_PAYLOAD_LEN: usize = 56;
const HEADER_PAYLOAD_CRC: usize = 60;

const _: () = assert!(PREFIX_BYTES == 64);

/// What [`fix_stored_batch`] repairs besides the checksums.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fix {
    /// Set `payload_len` to the bytes available and Kafka's batchLength to match.
    pub lengths: bool,
    /// Copy base offset, last offset delta and record count from the Kafka batch into the
    /// stored header, so the two agree.
    pub agreement: bool,
    /// Overwrite the base offset (header and Kafka batch) with this value.
    pub base_offset: Option<i64>,
}

/// Recomputes magic, Kafka CRC, payload CRC and header CRC of the stored batch at the start
/// of `bytes` (after the repairs asked for in `fix`). Returns the bytes the batch claims to
/// occupy, clamped to `bytes.len()`, or `None` when there is not even a whole prefix.
pub fn fix_stored_batch(bytes: &mut [u8], fix: Fix) -> Option<usize> {
    if bytes.len() < PREFIX_BYTES {
        return None;
    }
    bytes[0..4].copy_from_slice(&STORED_BATCH_MAGIC.to_le_bytes());
    let available = bytes.len() - PREFIX_BYTES;
    if fix.lengths {
        let payload_len = available.min(rill::config::BATCH_BYTES_MAX) as u32;
        bytes[HEADER_PAYLOAD_LEN..HEADER_PAYLOAD_LEN + 4]
            .copy_from_slice(&payload_len.to_le_bytes());
    }
    let payload_len = u32::from_le_bytes(
        bytes[HEADER_PAYLOAD_LEN..HEADER_PAYLOAD_LEN + 4]
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let end = PREFIX_BYTES + payload_len.min(available);
    let (prefix, rest) = bytes.split_at_mut(PREFIX_BYTES);
    let payload = &mut rest[..end - PREFIX_BYTES];
    if let Some(base_offset) = fix.base_offset {
        prefix[HEADER_BASE_OFFSET..HEADER_BASE_OFFSET + 8]
            .copy_from_slice(&base_offset.to_le_bytes());
        if payload.len() >= 8 {
            payload[0..8].copy_from_slice(&base_offset.to_be_bytes());
        }
    }
    fix_kafka_batch(payload, fix.lengths);
    if fix.agreement && payload.len() >= KAFKA_HEADER_BYTES {
        let base_offset = i64::from_be_bytes(payload[0..8].try_into().expect("8 bytes"));
        let last_offset_delta = i32::from_be_bytes(payload[23..27].try_into().expect("4 bytes"));
        let record_count = i32::from_be_bytes(payload[57..61].try_into().expect("4 bytes"));
        prefix[HEADER_BASE_OFFSET..HEADER_BASE_OFFSET + 8]
            .copy_from_slice(&base_offset.to_le_bytes());
        prefix[HEADER_LAST_OFFSET_DELTA..HEADER_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&last_offset_delta.to_le_bytes());
        prefix[HEADER_RECORD_COUNT..HEADER_RECORD_COUNT + 4]
            .copy_from_slice(&record_count.to_le_bytes());
    }
    let payload_crc = crc32c::crc32c(payload);
    prefix[HEADER_PAYLOAD_CRC..HEADER_PAYLOAD_CRC + 4].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&prefix[8..PREFIX_BYTES]);
    prefix[4..8].copy_from_slice(&header_crc.to_le_bytes());
    Some(end)
}

/// Record count the stored header at the start of `bytes` claims (for renumbering a chain).
pub fn header_record_count(bytes: &[u8]) -> Option<i32> {
    let field = bytes.get(HEADER_RECORD_COUNT..HEADER_RECORD_COUNT + 4)?;
    Some(i32::from_le_bytes(field.try_into().expect("4 bytes")))
}

/// Recomputes Kafka's CRC32C (and, with `lengths`, batchLength) of a Kafka v2 batch.
pub fn fix_kafka_batch(bytes: &mut [u8], lengths: bool) {
    if lengths && bytes.len() >= 12 {
        let batch_length = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
    }
    if bytes.len() >= KAFKA_CRC_START {
        let crc = crc32c::crc32c(&bytes[KAFKA_CRC_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Iterates every record of `batch`, asserting that each returned range lies within the
/// batch's bytes (`batch_len`), after the Kafka header, and in order. Returns the number of
/// records that parsed and whether the iterator ended with an error. Never loops more than
/// `record_count + 1` times: a record iterator that does not stop is itself a bug.
pub fn walk_records(batch: &KafkaBatch<'_>, batch_len: usize) -> (usize, bool) {
    let limit = batch.record_count().max(0) as usize + 1;
    let mut parsed = 0usize;
    let mut failed = false;
    let mut previous_end = KAFKA_HEADER_BYTES;
    for (step, record) in batch.records().enumerate() {
        assert!(
            step < limit,
            "record iterator ran past record_count + 1 items"
        );
        match record {
            Ok(record) => {
                assert!(!failed, "a record was yielded after an error");
                if let Some(key) = &record.key {
                    check_range(key, batch_len, previous_end);
                    previous_end = key.end;
                }
                check_range(&record.value, batch_len, previous_end);
                previous_end = record.value.end;
                parsed += 1;
            }
            Err(_) => failed = true,
        }
    }
    assert!(parsed <= batch.record_count().max(0) as usize);
    (parsed, failed)
}

fn check_range(range: &Range<usize>, batch_len: usize, not_before: usize) {
    assert!(
        range.start <= range.end && range.end <= batch_len,
        "record range {range:?} outside a batch of {batch_len} bytes"
    );
    assert!(
        range.start >= not_before,
        "record range {range:?} starts before {not_before} (the Kafka header or the previous field)"
    );
}

/// Valid stored batches for the seed corpora: (name, bytes of one or more batches back to
/// back, offsets contiguous from `first_offset`).
pub fn seed_logs(first_offset: i64) -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut one = Vec::new();
    BatchBuilder::build(
        &mut one,
        first_offset,
        &[(1_700_000_000_000, Some(b"k"), b"v")],
    );
    seeds.push(("one-record", one));

    let mut three = Vec::new();
    BatchBuilder::build(
        &mut three,
        first_offset,
        &[
            (1_700_000_000_000, Some(b"key"), b"hello"),
            (1_699_999_999_990, None, b"world"),
            (1_700_000_000_100, Some(b""), b""),
        ],
    );
    seeds.push(("three-records", three));

    let mut idempotent = Vec::new();
    let mut builder = BatchBuilder::begin(&mut idempotent);
    builder.set_producer(7, 1, 0);
    builder.push(&mut idempotent, 5, Some(b"a"), b"b");
    builder.push(&mut idempotent, 6, None, &[0xff; 40]);
    builder.finish(&mut idempotent, first_offset);
    seeds.push(("idempotent-producer", idempotent));

    let mut chain = Vec::new();
    let mut offset = first_offset;
    for batch in 0..4u8 {
        let records: Vec<(i64, Option<&[u8]>, &[u8])> = (0..=batch)
            .map(|_| (1_700_000_000_000 + batch as i64, None, &b"xyz"[..]))
            .collect();
        BatchBuilder::build(&mut chain, offset, &records);
        offset += records.len() as i64;
    }
    seeds.push(("four-batches", chain));
    seeds
}
