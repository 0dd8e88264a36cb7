//! Idempotence decisions: pure logic, no I/O, owned by the shard that owns the partition.
//!
//! Kafka's rules, per (producer id, partition): the epoch only grows; a batch from an older
//! epoch is fenced; a newer epoch must start at sequence 0; within an epoch, a batch's first
//! sequence must follow the last appended one (sequences wrap from `i32::MAX` to 0); a batch
//! whose sequence range equals one of the last [`CACHED_BATCHES`] appended batches is a
//! duplicate and is acknowledged with its original offsets instead of being appended again.
//! A producer the table does not know (new, or evicted) must start at sequence 0; otherwise
//! the batch is refused with `UnknownProducerId`, as Kafka does after retention removed its
//! state.

use std::collections::{HashMap, VecDeque};

use crate::types::{Epoch, ProducerId, Sequence};

/// How many appended batches per (producer, partition) are remembered for duplicate checks:
/// Kafka's `max.in.flight.requests.per.connection` limit for idempotence.
pub const CACHED_BATCHES: usize = 5;

/// Longest run of contiguous batches merged into one cached entry: well inside half the
/// sequence space, so a sequence's place in a wrapped run stays unambiguous.
pub const MERGED_RUN_RECORDS_MAX: i64 = 1 << 30;

/// What an appended batch looked like, kept to recognise its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
}

/// The state of one producer on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: Epoch,
    /// Newest last. At most [`CACHED_BATCHES`].
    pub batches: VecDeque<BatchMetadata>,
    /// Timestamp of the producer's last append (ms), for eviction.
    pub last_timestamp_ms: i64,
}

impl ProducerEntry {
    fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|batch| batch.last_sequence)
    }
}

/// The verdict on an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Append it.
    Append,
    /// Already appended: acknowledge with these offsets, append nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// The epoch is older than the producer's current one.
    Fenced { current: Epoch },
    /// The first sequence does not follow the last appended one.
    OutOfOrder { expected: i32 },
    /// The producer is unknown here and the batch does not start at sequence 0.
    UnknownProducerId,
}

/// Where `sequence` falls in a cached batch (0 for its first record), if it does.
pub fn position_in(batch: &BatchMetadata, sequence: i32) -> Option<i64> {
    let space = i32::MAX as i64 + 1;
    let length = (batch.last_sequence as i64 - batch.first_sequence as i64).rem_euclid(space);
    let position = (sequence as i64 - batch.first_sequence as i64).rem_euclid(space);
    (position <= length).then_some(position)
}

/// The next sequence after `sequence`, wrapping from `i32::MAX` to 0.
pub fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The last sequence of a batch of `records` records starting at `first`, wrapping.
pub fn last_sequence(first: i32, records: i32) -> i32 {
    debug_assert!(first >= 0 && records > 0);
    ((first as i64 + records as i64 - 1) % (i32::MAX as i64 + 1)) as i32
}

/// Producer states of one partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionProducers {
    entries: HashMap<ProducerId, ProducerEntry>,
}

impl PartitionProducers {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, producer: ProducerId) -> Option<&ProducerEntry> {
        self.entries.get(&producer)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProducerId, &ProducerEntry)> {
        self.entries.iter()
    }

    /// Decides what to do with a batch of `records` records from `producer` at `epoch`
    /// starting at sequence `first`. Changes nothing.
    pub fn check(
        &self,
        producer: ProducerId,
        epoch: Epoch,
        first: Sequence,
        records: i32,
    ) -> Decision {
        let last = last_sequence(first.0, records);
        let Some(entry) = self.entries.get(&producer) else {
            return if first.0 == 0 {
                Decision::Append
            } else {
                Decision::UnknownProducerId
            };
        };
        if epoch < entry.epoch {
            return Decision::Fenced {
                current: entry.epoch,
            };
        }
        if epoch > entry.epoch {
            return if first.0 == 0 {
                Decision::Append
            } else {
                Decision::OutOfOrder { expected: 0 }
            };
        }
        if let Some((first_offset, last_offset)) = entry.batches.iter().find_map(|batch| {
            let start = position_in(batch, first.0)?;
            let end = position_in(batch, last)?;
            (start <= end).then(|| (batch.first_offset + start, batch.first_offset + end))
        }) {
            return Decision::Duplicate {
                first_offset,
                last_offset,
            };
        }
        let expected = entry.last_sequence().map_or(0, next_sequence);
        if first.0 == expected {
            Decision::Append
        } else {
            Decision::OutOfOrder { expected }
        }
    }

    /// Records an appended batch (after [`PartitionProducers::check`] said `Append`, or when
    /// replaying batch headers during recovery).
    pub fn record(&mut self, producer: ProducerId, epoch: Epoch, batch: BatchMetadata) {
        let entry = self
            .entries
            .entry(producer)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(CACHED_BATCHES),
                last_timestamp_ms: batch.max_timestamp_ms,
            });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        // A batch that continues the previous one (next sequence, next offset) extends it: a
        // producer streaming into a partition keeps its whole recent run recognisable, however
        // many batches the shard cut it into, so a resend after a crash is still found.
        if let Some(last) = entry.batches.back_mut() {
            let run = last.last_offset - last.first_offset + 1;
            if next_sequence(last.last_sequence) == batch.first_sequence
                && last.last_offset + 1 == batch.first_offset
                && run + (batch.last_offset - batch.first_offset + 1) <= MERGED_RUN_RECORDS_MAX
            {
                last.last_sequence = batch.last_sequence;
                last.last_offset = batch.last_offset;
                last.max_timestamp_ms = last.max_timestamp_ms.max(batch.max_timestamp_ms);
                entry.last_timestamp_ms = entry.last_timestamp_ms.max(batch.max_timestamp_ms);
                return;
            }
        }
        if entry.batches.len() == CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(batch.max_timestamp_ms);
    }

    /// Bumps a producer's epoch (re-initialisation): older epochs are fenced from now on.
    pub fn fence(&mut self, producer: ProducerId, epoch: Epoch) {
        if let Some(entry) = self.entries.get_mut(&producer) {
            if epoch > entry.epoch {
                entry.epoch = epoch;
                entry.batches.clear();
            }
        }
    }

    /// Removes the producer that appended least recently; returns it.
    pub fn evict_oldest(&mut self) -> Option<ProducerId> {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_timestamp_ms)
            .map(|(id, _)| *id)?;
        self.entries.remove(&oldest);
        Some(oldest)
    }

    pub fn insert(&mut self, producer: ProducerId, entry: ProducerEntry) {
        self.entries.insert(producer, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId(7);

    fn batch(first: i32, records: i32, first_offset: i64) -> BatchMetadata {
        BatchMetadata {
            first_sequence: first,
            last_sequence: last_sequence(first, records),
            first_offset,
            last_offset: first_offset + records as i64 - 1,
            max_timestamp_ms: first_offset,
        }
    }

    #[test]
    fn a_new_producer_starts_at_sequence_zero_or_is_unknown() {
        let table = PartitionProducers::default();
        assert_eq!(table.check(P, Epoch(0), Sequence(0), 3), Decision::Append);
        assert_eq!(
            table.check(P, Epoch(0), Sequence(5), 3),
            Decision::UnknownProducerId
        );
    }

    #[test]
    fn duplicate_batch_is_acked_with_its_original_offset() {
        let mut table = PartitionProducers::default();
        table.record(P, Epoch(0), batch(0, 3, 100));
        table.record(P, Epoch(0), batch(3, 2, 103));
        assert_eq!(
            table.check(P, Epoch(0), Sequence(0), 3),
            Decision::Duplicate {
                first_offset: 100,
                last_offset: 102
            }
        );
        assert_eq!(
            table.check(P, Epoch(0), Sequence(3), 2),
            Decision::Duplicate {
                first_offset: 103,
                last_offset: 104
            }
        );
        assert_eq!(table.check(P, Epoch(0), Sequence(5), 1), Decision::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = PartitionProducers::default();
        // Offsets two apart: another producer's records sit between these batches.
        for i in 0..6 {
            table.record(P, Epoch(0), batch(i, 1, 2 * i as i64));
        }
        assert_eq!(
            table.check(P, Epoch(0), Sequence(0), 1),
            Decision::OutOfOrder { expected: 6 }
        );
        assert_eq!(
            table.check(P, Epoch(0), Sequence(1), 1),
            Decision::Duplicate {
                first_offset: 2,
                last_offset: 2
            }
        );
    }

    /// The crash test resent acknowledged records after a kill and a third of them were
    /// refused as out of order: the shard cuts a stream into many small batches and only the
    /// last five were remembered. Contiguous batches now extend one cached run.
    #[test]
    fn contiguous_batches_extend_one_run_so_old_resends_are_still_duplicates() {
        let mut table = PartitionProducers::default();
        for i in 0..100 {
            table.record(P, Epoch(0), batch(i, 1, 1000 + i as i64));
        }
        assert_eq!(table.get(P).unwrap().batches.len(), 1);
        assert_eq!(
            table.check(P, Epoch(0), Sequence(3), 1),
            Decision::Duplicate {
                first_offset: 1003,
                last_offset: 1003
            }
        );
        assert_eq!(
            table.check(P, Epoch(0), Sequence(10), 5),
            Decision::Duplicate {
                first_offset: 1010,
                last_offset: 1014
            }
        );
        assert_eq!(table.check(P, Epoch(0), Sequence(100), 1), Decision::Append);
    }

    #[test]
    fn a_gap_in_sequences_is_refused_as_out_of_order() {
        let mut table = PartitionProducers::default();
        table.record(P, Epoch(0), batch(0, 3, 0));
        assert_eq!(
            table.check(P, Epoch(0), Sequence(4), 1),
            Decision::OutOfOrder { expected: 3 }
        );
        // Overlapping the appended batch without lying inside it is no duplicate either.
        assert_eq!(
            table.check(P, Epoch(0), Sequence(1), 3),
            Decision::OutOfOrder { expected: 3 }
        );
    }

    #[test]
    fn an_older_epoch_is_fenced_and_a_newer_one_must_start_at_zero() {
        let mut table = PartitionProducers::default();
        table.record(P, Epoch(3), batch(0, 3, 0));
        assert_eq!(
            table.check(P, Epoch(2), Sequence(3), 1),
            Decision::Fenced { current: Epoch(3) }
        );
        assert_eq!(
            table.check(P, Epoch(4), Sequence(3), 1),
            Decision::OutOfOrder { expected: 0 }
        );
        assert_eq!(table.check(P, Epoch(4), Sequence(0), 1), Decision::Append);
        table.fence(P, Epoch(5));
        assert_eq!(
            table.check(P, Epoch(4), Sequence(0), 1),
            Decision::Fenced { current: Epoch(5) }
        );
    }

    #[test]
    fn sequences_wrap_from_i32_max_to_zero() {
        let mut table = PartitionProducers::default();
        table.record(
            P,
            Epoch(0),
            BatchMetadata {
                first_sequence: i32::MAX - 1,
                last_sequence: i32::MAX,
                first_offset: 0,
                last_offset: 1,
                max_timestamp_ms: 0,
            },
        );
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        assert_eq!(table.check(P, Epoch(0), Sequence(0), 2), Decision::Append);
        assert_eq!(
            table.check(P, Epoch(0), Sequence(1), 1),
            Decision::OutOfOrder { expected: 0 }
        );
    }

    #[test]
    fn eviction_removes_the_least_recently_appending_producer() {
        let mut table = PartitionProducers::default();
        table.record(ProducerId(1), Epoch(0), batch(0, 1, 50));
        table.record(ProducerId(2), Epoch(0), batch(0, 1, 10));
        assert_eq!(table.evict_oldest(), Some(ProducerId(2)));
        assert_eq!(table.len(), 1);
    }
}
