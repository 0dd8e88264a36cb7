//! Arbitrary bytes into `StoredBatch::parse` (and `parse_header`); when a batch parses, its
//! payload into `KafkaBatch::parse` and every record out of it.
//!
//! Input: one flags byte, then the candidate stored batch.
//!   bit 0: recompute magic and the three CRC32Cs (reach the checks behind them)
//!   bit 1: also set payload_len / batchLength to the bytes available
//!   bit 2: also copy offsets and count from the Kafka batch into the header
//! Properties: no panic; `parse` succeeds only on a batch that lies within the input and
//! whose header and payload agree; `parse_header` accepts whatever `parse` accepts, with
//! the same header; record ranges lie within the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::record::{KafkaBatch, StoredBatch, PREFIX_BYTES};
use rill_fuzz::{fix_stored_batch, walk_records, Fix};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if flags & 1 != 0 {
        let fix = Fix {
            lengths: flags & 2 != 0,
            agreement: flags & 4 != 0,
            base_offset: None,
        };
        fix_stored_batch(&mut bytes, fix);
    }
    check(&bytes);
});

fn check(bytes: &[u8]) {
    let header_only = StoredBatch::parse_header(bytes);
    if let Ok(batch) = &header_only {
        // Stepping over a batch must never read past what parse_header promised.
        assert!(batch.payload().len() <= batch.payload_len());
        assert!(batch.payload().len() <= bytes.len() - PREFIX_BYTES);
        assert!(batch.base_offset() >= 0);
        let _ = batch.stored_len();
        let _ = batch.max_timestamp_ms();
    }
    let Ok(batch) = StoredBatch::parse(bytes) else {
        return;
    };
    let header = header_only.expect("parse_header accepts what parse accepts");
    assert_eq!(header.base_offset(), batch.base_offset());
    assert_eq!(header.payload_len(), batch.payload_len());
    assert!(
        batch.stored_len() <= bytes.len(),
        "a parsed batch lies within its input"
    );
    assert_eq!(batch.payload().len(), batch.payload_len());
    assert_eq!(batch.payload(), &bytes[PREFIX_BYTES..batch.stored_len()]);
    // Readers compute the offset after the batch (recovery, cursors, consumers).
    let next_offset = batch.next_offset();
    assert!(next_offset > batch.base_offset());

    let kafka = KafkaBatch::parse(batch.payload()).expect("parse checked the Kafka batch");
    assert_eq!(kafka.base_offset(), batch.base_offset());
    assert_eq!(
        kafka.record_count() as i64,
        next_offset - batch.base_offset(),
        "header and payload agree on the count"
    );
    let _ = (
        kafka.max_timestamp_ms(),
        kafka.producer_id(),
        kafka.producer_epoch(),
    );
    let _ = (
        kafka.base_sequence(),
        kafka.attributes(),
        kafka.last_offset_delta(),
    );
    walk_records(&kafka, batch.payload().len());
}
