//! The shard's side of the idempotent producer: per partition, the committed producer table
//! (`producer::PartitionProducers`) plus what is staged or in flight, so that records of one
//! producer arriving in later turns are checked against everything accepted before them.
//!
//! Records are checked one by one as they are drained from the rings. A record's sequence is
//! a duplicate when it falls inside a committed batch of the same producer and epoch (the
//! embedded handle retries single records; a Kafka client retries whole batches, which is the
//! case of a range equal to a cached batch). A duplicate is acknowledged at once with its
//! original offset: the batch it belongs to was committed, so the ack keeps its promise.

use std::collections::HashMap;

use crate::log::PartitionLog;
use crate::producer::{last_sequence, next_sequence, BatchMetadata, PartitionProducers};
use crate::record::BatchBuilder;
use crate::types::{Epoch, ProducerId};

use super::messages::ProducerStamp;

/// Verdict on one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordDecision {
    Append,
    Duplicate { offset: i64 },
    Fenced { current: Epoch },
    OutOfOrder { expected: i32 },
    UnknownProducerId,
    TableFull,
}

/// A producer's batch inside a write, recorded in the table when the write commits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProducerBatch {
    pub producer: ProducerId,
    pub epoch: Epoch,
    pub metadata: BatchMetadata,
}

/// Idempotence state of one partition.
#[derive(Debug, Default)]
pub(crate) struct PartitionIdempotence {
    /// What committed writes established.
    pub committed: PartitionProducers,
    /// Per producer with records staged or in flight: (epoch, next expected sequence).
    pending: HashMap<ProducerId, (Epoch, i32)>,
}

impl PartitionIdempotence {
    /// Checks a record and, when it is to be appended, counts it as pending.
    pub fn admit(&mut self, stamp: ProducerStamp, producers_max: usize) -> RecordDecision {
        let sequence = stamp.sequence.0;
        if let Some(&(epoch, expected)) = self.pending.get(&stamp.producer) {
            if stamp.epoch < epoch {
                return RecordDecision::Fenced { current: epoch };
            }
            let accepted = if stamp.epoch > epoch {
                sequence == 0
            } else {
                sequence == expected
            };
            if accepted {
                self.pending
                    .insert(stamp.producer, (stamp.epoch, next_sequence(sequence)));
                return RecordDecision::Append;
            }
            if stamp.epoch == epoch {
                if let Some(offset) = self.committed_offset_of(stamp) {
                    return RecordDecision::Duplicate { offset };
                }
            }
            return RecordDecision::OutOfOrder {
                expected: if stamp.epoch > epoch { 0 } else { expected },
            };
        }
        match self.committed.get(stamp.producer) {
            None => {
                if sequence != 0 {
                    return RecordDecision::UnknownProducerId;
                }
                if self.committed.len() + self.pending.len() >= producers_max {
                    return RecordDecision::TableFull;
                }
            }
            Some(entry) => {
                if stamp.epoch < entry.epoch {
                    return RecordDecision::Fenced {
                        current: entry.epoch,
                    };
                }
                if stamp.epoch == entry.epoch {
                    if let Some(offset) = self.committed_offset_of(stamp) {
                        return RecordDecision::Duplicate { offset };
                    }
                    let expected = entry
                        .batches
                        .back()
                        .map_or(0, |b| next_sequence(b.last_sequence));
                    if sequence != expected {
                        return RecordDecision::OutOfOrder { expected };
                    }
                } else if sequence != 0 {
                    return RecordDecision::OutOfOrder { expected: 0 };
                }
            }
        }
        self.pending
            .insert(stamp.producer, (stamp.epoch, next_sequence(sequence)));
        RecordDecision::Append
    }

    /// The committed offset of a record with this stamp, if it is one of the cached batches.
    fn committed_offset_of(&self, stamp: ProducerStamp) -> Option<i64> {
        let entry = self.committed.get(stamp.producer)?;
        if entry.epoch != stamp.epoch {
            return None;
        }
        let sequence = stamp.sequence.0 as i64;
        entry.batches.iter().find_map(|batch| {
            let first = batch.first_sequence as i64;
            let mut last = batch.last_sequence as i64;
            if last < first {
                last += i32::MAX as i64 + 1; // the batch wrapped
            }
            let position = if sequence >= first {
                sequence
            } else {
                sequence + i32::MAX as i64 + 1
            };
            (position >= first && position <= last).then(|| batch.first_offset + (position - first))
        })
    }

    /// A write committed: its producer batches become part of the table.
    pub fn commit(&mut self, batches: &[ProducerBatch]) {
        for batch in batches {
            self.committed
                .record(batch.producer, batch.epoch, batch.metadata);
            if let Some(&(epoch, expected)) = self.pending.get(&batch.producer) {
                if epoch == batch.epoch && expected == next_sequence(batch.metadata.last_sequence) {
                    self.pending.remove(&batch.producer); // nothing of it is pending any more
                }
            }
        }
    }

    /// Writes were rolled back (and staged records refused): pending state is rebuilt from
    /// the writes still queued.
    pub fn reset_pending<'a>(&mut self, remaining: impl Iterator<Item = &'a ProducerBatch>) {
        self.pending.clear();
        for batch in remaining {
            self.pending.insert(
                batch.producer,
                (batch.epoch, next_sequence(batch.metadata.last_sequence)),
            );
        }
    }
}

/// The idempotent producers' batches among `batches` (built back to back from `first_offset`).
pub(crate) fn producer_batches(batches: &[BatchBuilder], first_offset: i64) -> Vec<ProducerBatch> {
    let mut found = Vec::new();
    let mut offset = first_offset;
    for builder in batches {
        let (id, epoch, base_sequence) = builder.producer();
        let count = builder.record_count();
        if id >= 0 {
            found.push(ProducerBatch {
                producer: ProducerId(id),
                epoch: Epoch(epoch),
                metadata: BatchMetadata {
                    first_sequence: base_sequence,
                    last_sequence: last_sequence(base_sequence, count),
                    first_offset: offset,
                    last_offset: offset + count as i64 - 1,
                    max_timestamp_ms: builder.max_timestamp_ms(),
                },
            });
        }
        offset += count as i64;
    }
    found
}

/// Rebuilds a partition's producer table from the headers of its committed batches (at open).
pub(crate) fn rebuild(log: &PartitionLog) -> PartitionIdempotence {
    let mut state = PartitionIdempotence::default();
    log.for_each_batch(|batch| {
        let header = batch.header();
        let producer = header.producer_id.to_native();
        if producer < 0 {
            return;
        }
        let first_sequence = header.base_sequence.to_native();
        let count = header.record_count.to_native();
        state.committed.record(
            ProducerId(producer),
            Epoch(header.producer_epoch.to_native()),
            BatchMetadata {
                first_sequence,
                last_sequence: last_sequence(first_sequence, count),
                first_offset: batch.base_offset(),
                last_offset: batch.next_offset() - 1,
                max_timestamp_ms: batch.max_timestamp_ms(),
            },
        );
    });
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Sequence;

    fn stamp(sequence: i32) -> ProducerStamp {
        ProducerStamp {
            producer: ProducerId(1),
            epoch: Epoch(0),
            sequence: Sequence(sequence),
        }
    }

    fn batch(first: i32, last: i32, first_offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer: ProducerId(1),
            epoch: Epoch(0),
            metadata: BatchMetadata {
                first_sequence: first,
                last_sequence: last,
                first_offset,
                last_offset: first_offset + (last - first) as i64,
                max_timestamp_ms: 0,
            },
        }
    }

    #[test]
    fn records_of_later_turns_are_checked_against_pending_ones() {
        let mut state = PartitionIdempotence::default();
        assert_eq!(state.admit(stamp(0), 10), RecordDecision::Append);
        assert_eq!(state.admit(stamp(1), 10), RecordDecision::Append);
        assert_eq!(
            state.admit(stamp(3), 10),
            RecordDecision::OutOfOrder { expected: 2 }
        );
        state.commit(&[batch(0, 1, 100)]);
        assert_eq!(
            state.admit(stamp(1), 10),
            RecordDecision::Duplicate { offset: 101 }
        );
        assert_eq!(state.admit(stamp(2), 10), RecordDecision::Append);
    }

    #[test]
    fn a_rollback_makes_the_failed_sequences_expected_again() {
        let mut state = PartitionIdempotence::default();
        state.commit(&[batch(0, 4, 0)]);
        assert_eq!(state.admit(stamp(5), 10), RecordDecision::Append);
        assert_eq!(state.admit(stamp(6), 10), RecordDecision::Append);
        state.reset_pending(std::iter::empty());
        assert_eq!(
            state.admit(stamp(7), 10),
            RecordDecision::OutOfOrder { expected: 5 }
        );
        assert_eq!(state.admit(stamp(5), 10), RecordDecision::Append);
    }

    #[test]
    fn a_full_table_refuses_new_producers() {
        let mut state = PartitionIdempotence::default();
        assert_eq!(state.admit(stamp(0), 1), RecordDecision::Append);
        let other = ProducerStamp {
            producer: ProducerId(2),
            epoch: Epoch(0),
            sequence: Sequence(0),
        };
        assert_eq!(state.admit(other, 1), RecordDecision::TableFull);
    }
}
