//! The rkyv-archived header of a stored batch and the checks that make a batch trustworthy.

use rkyv::{Archive, Deserialize, Serialize};

use super::kafka::KafkaBatch;
use super::STORED_BATCH_MAGIC;

/// What a shard knows about a stored batch without looking at its records. Archived with rkyv
/// and read in place with `rkyv::access`; never deserialised into a copy on the read path.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Number of records, `1..=BATCH_RECORDS_MAX`.
    pub record_count: i32,
    /// Timestamp of the first record, ms since the Unix epoch.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp in the batch, ms since the Unix epoch.
    pub max_timestamp_ms: i64,
    /// Idempotent producer id, -1 for none.
    pub producer_id: i64,
    /// Idempotent producer epoch, -1 for none.
    pub producer_epoch: i16,
    /// Kafka attributes of the batch (compression codec in the low 3 bits).
    pub attributes: i16,
    /// Sequence of the first record for (producer, partition), -1 for none.
    pub base_sequence: i32,
    /// Length of the Kafka RecordBatch v2 that follows the header.
    pub payload_len: u32,
    /// CRC32C of those `payload_len` bytes.
    pub payload_crc32c: u32,
}

/// Size of the archived header.
pub const HEADER_BYTES: usize = std::mem::size_of::<ArchivedBatchHeader>();
/// Size of magic + header CRC + header: where the Kafka batch starts.
pub const PREFIX_BYTES: usize = 8 + HEADER_BYTES;

const _: () = assert!(std::mem::align_of::<ArchivedBatchHeader>() == 1);
const _: () = assert!(HEADER_BYTES == 56);

/// Why bytes are not a valid stored batch. Recovery truncates at the first one of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoredBatchError {
    #[error("truncated: {available} bytes available, {needed} needed")]
    Truncated { needed: usize, available: usize },
    #[error("bad magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("header does not validate: {0}")]
    HeaderInvalid(String),
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("payload is not a Kafka v2 batch matching the header: {0}")]
    PayloadMismatch(&'static str),
}

/// A stored batch found at the start of a byte slice; its header is borrowed in place.
#[derive(Debug, Clone, Copy)]
pub struct StoredBatch<'a> {
    header: &'a ArchivedBatchHeader,
    payload: &'a [u8],
}

impl BatchHeader {
    /// Writes magic, header CRC and the archived header into `out` (exactly `PREFIX_BYTES`).
    pub fn write_prefix(&self, out: &mut Vec<u8>) {
        let archived = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("a header of plain integers always archives");
        assert_eq!(archived.len(), HEADER_BYTES);
        out.extend_from_slice(&STORED_BATCH_MAGIC.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&archived).to_le_bytes());
        out.extend_from_slice(&archived);
    }
}

impl ArchivedBatchHeader {
    /// A plain copy of the header (tests and tools; the read path uses the archive in place).
    pub fn deserialize_plain(&self) -> BatchHeader {
        BatchHeader {
            base_offset: self.base_offset.to_native(),
            last_offset_delta: self.last_offset_delta.to_native(),
            record_count: self.record_count.to_native(),
            first_timestamp_ms: self.first_timestamp_ms.to_native(),
            max_timestamp_ms: self.max_timestamp_ms.to_native(),
            producer_id: self.producer_id.to_native(),
            producer_epoch: self.producer_epoch.to_native(),
            attributes: self.attributes.to_native(),
            base_sequence: self.base_sequence.to_native(),
            payload_len: self.payload_len.to_native(),
            payload_crc32c: self.payload_crc32c.to_native(),
        }
    }
}

impl<'a> StoredBatch<'a> {
    /// Validates the stored batch at the start of `bytes`: magic, header CRC, header layout,
    /// payload length, payload CRC and that the Kafka batch agrees with the header.
    pub fn parse(bytes: &'a [u8]) -> Result<StoredBatch<'a>, StoredBatchError> {
        let batch = StoredBatch::parse_header(bytes)?;
        let needed = PREFIX_BYTES + batch.payload_len();
        if bytes.len() < needed {
            return Err(StoredBatchError::Truncated {
                needed,
                available: bytes.len(),
            });
        }
        let payload = &bytes[PREFIX_BYTES..needed];
        if crc32c::crc32c(payload) != batch.header.payload_crc32c.to_native() {
            return Err(StoredBatchError::PayloadChecksum);
        }
        let kafka = KafkaBatch::parse(payload).map_err(StoredBatchError::PayloadMismatch)?;
        kafka
            .validate_records()
            .map_err(StoredBatchError::PayloadMismatch)?;
        let header = batch.header;
        if kafka.base_offset() != header.base_offset.to_native()
            || kafka.record_count() != header.record_count.to_native()
            || kafka.last_offset_delta() != header.last_offset_delta.to_native()
        {
            return Err(StoredBatchError::PayloadMismatch("offsets or count differ"));
        }
        Ok(StoredBatch { header, payload })
    }

    /// Validates only magic and header (not the payload): enough to step over batches that
    /// were validated before, e.g. when a shard walks its own committed bytes.
    pub fn parse_header(bytes: &'a [u8]) -> Result<StoredBatch<'a>, StoredBatchError> {
        if bytes.len() < PREFIX_BYTES {
            return Err(StoredBatchError::Truncated {
                needed: PREFIX_BYTES,
                available: bytes.len(),
            });
        }
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != STORED_BATCH_MAGIC {
            return Err(StoredBatchError::BadMagic { found: magic });
        }
        let header_crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let header_bytes = &bytes[8..PREFIX_BYTES];
        if crc32c::crc32c(header_bytes) != header_crc {
            return Err(StoredBatchError::HeaderChecksum);
        }
        let header = rkyv::access::<ArchivedBatchHeader, rkyv::rancor::Error>(header_bytes)
            .map_err(|error| StoredBatchError::HeaderInvalid(error.to_string()))?;
        let count = header.record_count.to_native();
        if count < 1
            || count as usize > crate::config::BATCH_RECORDS_MAX
            || header.last_offset_delta.to_native() != count - 1
            || header.base_offset.to_native() < 0
            || header.base_offset.to_native() > i64::MAX - count as i64
            || header.payload_len.to_native() as usize > crate::config::BATCH_BYTES_MAX
        {
            return Err(StoredBatchError::HeaderInvalid(
                "fields out of range".into(),
            ));
        }
        let payload_len = header.payload_len.to_native() as usize;
        let end = (PREFIX_BYTES + payload_len).min(bytes.len());
        Ok(StoredBatch {
            header,
            payload: &bytes[PREFIX_BYTES..end],
        })
    }

    pub fn header(&self) -> &'a ArchivedBatchHeader {
        self.header
    }

    pub fn base_offset(&self) -> i64 {
        self.header.base_offset.to_native()
    }

    /// One past the last offset in the batch.
    pub fn next_offset(&self) -> i64 {
        self.base_offset() + self.header.record_count.to_native() as i64
    }

    pub fn payload_len(&self) -> usize {
        self.header.payload_len.to_native() as usize
    }

    /// Bytes the whole stored batch occupies.
    pub fn stored_len(&self) -> usize {
        PREFIX_BYTES + self.payload_len()
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.header.max_timestamp_ms.to_native()
    }

    /// The Kafka RecordBatch v2 bytes (complete only after [`StoredBatch::parse`]).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        BatchBuilder::build(
            &mut out,
            42,
            &[
                (1_700_000_000_000, Some(b"k"), b"hello"),
                (1_700_000_000_001, None, b"world"),
            ],
        );
        out
    }

    #[test]
    fn header_field_offsets_match_the_design_document() {
        use std::mem::offset_of;
        let offsets = [
            offset_of!(ArchivedBatchHeader, base_offset),
            offset_of!(ArchivedBatchHeader, last_offset_delta),
            offset_of!(ArchivedBatchHeader, record_count),
            offset_of!(ArchivedBatchHeader, first_timestamp_ms),
            offset_of!(ArchivedBatchHeader, max_timestamp_ms),
            offset_of!(ArchivedBatchHeader, producer_id),
            offset_of!(ArchivedBatchHeader, producer_epoch),
            offset_of!(ArchivedBatchHeader, attributes),
            offset_of!(ArchivedBatchHeader, base_sequence),
            offset_of!(ArchivedBatchHeader, payload_len),
            offset_of!(ArchivedBatchHeader, payload_crc32c),
        ];
        assert_eq!(offsets, [0, 8, 12, 16, 24, 32, 40, 42, 44, 48, 52]);
    }

    #[test]
    fn stored_batch_round_trips_and_reads_the_header_in_place() {
        let bytes = sample();
        let batch = StoredBatch::parse(&bytes).unwrap();
        assert_eq!(batch.base_offset(), 42);
        assert_eq!(batch.next_offset(), 44);
        assert_eq!(batch.stored_len(), bytes.len());
        assert_eq!(batch.max_timestamp_ms(), 1_700_000_000_001);
        let kafka = KafkaBatch::parse(batch.payload()).unwrap();
        let records: Vec<_> = kafka.records().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offset, 42);
        assert_eq!(&batch.payload()[records[0].key.clone().unwrap()], b"k");
        assert_eq!(&batch.payload()[records[1].value.clone()], b"world");
        assert!(records[1].key.is_none());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample();
        for bit in 0..bytes.len() * 8 {
            let mut corrupt = bytes.clone();
            corrupt[bit / 8] ^= 1 << (bit % 8);
            assert!(
                StoredBatch::parse(&corrupt).is_err(),
                "bit {bit} flipped went unnoticed"
            );
        }
    }

    /// Found by the `stored_batch` fuzz target: a base offset near i64::MAX made
    /// `next_offset` overflow (a panic in debug builds, a wrap in release).
    #[test]
    fn a_base_offset_whose_records_would_pass_i64_max_is_refused() {
        let mut bytes = Vec::new();
        BatchBuilder::build(
            &mut bytes,
            i64::MAX - 1,
            &[(0, None, b"a"), (0, None, b"b")],
        );
        assert!(matches!(
            StoredBatch::parse(&bytes),
            Err(StoredBatchError::HeaderInvalid(_))
        ));
        let mut fits = Vec::new();
        BatchBuilder::build(&mut fits, i64::MAX - 2, &[(0, None, b"a"), (0, None, b"b")]);
        assert_eq!(StoredBatch::parse(&fits).unwrap().next_offset(), i64::MAX);
    }

    /// Found by the `segment_open` fuzz target: a batch with valid CRCs but malformed records
    /// passed recovery and made the consumer panic. Records are validated with the batch now.
    #[test]
    fn a_batch_with_valid_checksums_but_malformed_records_is_refused() {
        let mut bytes = Vec::new();
        BatchBuilder::build(&mut bytes, 0, &[(0, Some(b"key"), b"value")]);
        // Make the record's key length run past the record, then fix both CRCs.
        let kafka_start = PREFIX_BYTES;
        let record_start = kafka_start + crate::record::kafka::KAFKA_HEADER_BYTES;
        // length, attributes, timestampDelta, offsetDelta, then keyLength (zigzag 3 = 0x06).
        assert_eq!(bytes[record_start + 4], 0x06);
        bytes[record_start + 4] = 0x40; // key length 32
        let kafka_crc = crc32c::crc32c(&bytes[kafka_start + 21..]);
        bytes[kafka_start + 17..kafka_start + 21].copy_from_slice(&kafka_crc.to_be_bytes());
        let header = BatchHeader {
            payload_crc32c: crc32c::crc32c(&bytes[kafka_start..]),
            ..StoredBatch::parse_header(&bytes)
                .unwrap()
                .header()
                .deserialize_plain()
        };
        let mut prefix = Vec::new();
        header.write_prefix(&mut prefix);
        bytes[..PREFIX_BYTES].copy_from_slice(&prefix);
        assert!(matches!(
            StoredBatch::parse(&bytes),
            Err(StoredBatchError::PayloadMismatch(_))
        ));
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                StoredBatch::parse(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
    }
}
