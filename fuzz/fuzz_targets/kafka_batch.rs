//! Arbitrary bytes into `KafkaBatch::parse` and `KafkaBatch::parse_verified`, then every
//! record out of `records()`.
//!
//! Input: one flags byte, then the candidate Kafka v2 batch.
//!   bit 0: set batchLength to the bytes available
//!   bit 1: recompute Kafka's CRC32C
//! Properties: no panic; every key and value range lies within the input, after the Kafka
//! header; `parse_verified` accepts whatever `parse` accepts; the iterator stops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::record::KafkaBatch;
use rill_fuzz::{fix_kafka_batch, walk_records};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if flags & 1 != 0 {
        fix_kafka_batch(&mut bytes, true);
    }
    if flags & 2 != 0 {
        fix_kafka_batch(&mut bytes, false);
    }
    let checked = KafkaBatch::parse(&bytes);
    let verified = KafkaBatch::parse_verified(&bytes);
    if let Ok(batch) = &checked {
        assert!(
            verified.is_ok(),
            "parse_verified accepts what parse accepts"
        );
        assert!(batch.record_count() >= 0);
        walk_records(batch, bytes.len());
    }
    if let Ok(batch) = &verified {
        let _ = (
            batch.base_offset(),
            batch.max_timestamp_ms(),
            batch.producer_id(),
        );
        let _ = (
            batch.producer_epoch(),
            batch.base_sequence(),
            batch.attributes(),
        );
        let _ = (batch.last_offset_delta(), batch.base_timestamp_ms());
        walk_records(batch, bytes.len());
    }
});
