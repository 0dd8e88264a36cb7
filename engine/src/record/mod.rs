//! The stored batch: an rkyv-archived header read in place, followed by a Kafka RecordBatch v2.
//!
//! ```text
//! stored batch (all of it in one segment, batches back to back, no padding)
//! +0        u32 LE  magic            STORED_BATCH_MAGIC ("RLB1")
//! +4        u32 LE  header_crc32c    CRC32C of bytes [8, 8 + HEADER_BYTES)
//! +8        [u8; HEADER_BYTES]       rkyv archive of BatchHeader (little endian, unaligned)
//! +8+H      [u8; payload_len]        Kafka RecordBatch v2 (big endian), CRC32C in the header
//! ```
//!
//! The exact byte offsets of the header fields are drawn in `engine/DESIGN.md` and pinned by
//! the test `header_field_offsets_match_the_design_document`.
//!
//! Pure code: no I/O, callable from any thread.

mod header;
pub mod kafka;

pub use header::{BatchHeader, StoredBatch, StoredBatchError, HEADER_BYTES, PREFIX_BYTES};
pub use kafka::{finish_batches, BatchBuilder, KafkaBatch, KafkaRecord, RecordIter};

/// First four bytes of every stored batch: "RLB1" read as a little-endian u32.
pub const STORED_BATCH_MAGIC: u32 = u32::from_le_bytes(*b"RLB1");
