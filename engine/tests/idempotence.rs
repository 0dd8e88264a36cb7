//! The idempotent producer, as Kafka defines it: retries never duplicate, gaps are refused,
//! stale epochs are fenced, and the state survives a restart.

use std::time::Duration;

use rill::client::Record;
use rill::error::SendError;
use rill::types::{Epoch, ProducerId, Sequence};
use rill::{Engine, EngineConfig, Offset, PartitionId, StartPosition};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.shards = 2;
    config.pin_shards = false;
    config
}

fn count_records(engine: &Engine, topic: &rill::Topic, partition: i32) -> usize {
    let mut consumer = engine.consumer();
    consumer
        .subscribe(topic, PartitionId(partition), StartPosition::Earliest)
        .unwrap();
    let mut count = 0;
    while consumer.poll(Duration::from_millis(300)).is_some() {
        count += 1;
    }
    count
}

#[test]
fn producer_ids_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let engine = Engine::open(config(dir.path())).unwrap();
        let a = engine.idempotent_producer().unwrap().identity().unwrap().0;
        let b = engine.idempotent_producer().unwrap().identity().unwrap().0;
        assert_ne!(a, b);
        b
    };
    let engine = Engine::open(config(dir.path())).unwrap();
    let after = engine.idempotent_producer().unwrap().identity().unwrap().0;
    assert!(after > first, "{after:?} after restart, {first:?} before");
}

#[test]
fn resending_the_last_acknowledged_record_after_a_restart_is_acked_with_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (producer_id, last_offset) = {
        let engine = Engine::open(config(dir.path())).unwrap();
        let topic = engine.create_topic("payments", 2).unwrap();
        let mut producer = engine.idempotent_producer().unwrap();
        let mut last = Offset(-1);
        for i in 0..10 {
            let (_, offset) = producer
                .send(
                    &topic,
                    Record::new(format!("p{i}")).partition(PartitionId(1)),
                )
                .unwrap();
            last = offset;
        }
        engine.shutdown();
        (producer.identity().unwrap().0, last)
    };
    let engine = Engine::open(config(dir.path())).unwrap();
    let topic = engine.topic("payments").unwrap();
    let mut retry = engine.resume_producer(producer_id, Epoch(0));
    retry.set_next_sequence(&topic, PartitionId(1), Sequence(9));
    let (_, offset) = retry
        .send(&topic, Record::new("p9").partition(PartitionId(1)))
        .unwrap();
    assert_eq!(
        offset, last_offset,
        "the duplicate gets the original offset"
    );
    // An older record is a duplicate too: the ten single-record batches continue each
    // other, so they form one cached run however many batches the shard cut them into.
    for sequence in [7, 3, 0] {
        retry.set_next_sequence(&topic, PartitionId(1), Sequence(sequence));
        let (_, offset) = retry
            .send(
                &topic,
                Record::new(format!("p{sequence}")).partition(PartitionId(1)),
            )
            .unwrap();
        assert_eq!(offset, Offset(sequence as i64));
    }
    assert_eq!(
        count_records(&engine, &topic, 1),
        10,
        "nothing was appended twice"
    );
    // The next new sequence is appended after the last one.
    retry.set_next_sequence(&topic, PartitionId(1), Sequence(10));
    let (_, offset) = retry
        .send(&topic, Record::new("p10").partition(PartitionId(1)))
        .unwrap();
    assert_eq!(offset, Offset(10));
}

#[test]
fn a_gap_in_sequences_is_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let topic = engine.create_topic("t", 1).unwrap();
    let mut producer = engine.idempotent_producer().unwrap();
    producer
        .send(&topic, Record::new("0").partition(PartitionId(0)))
        .unwrap();
    producer.set_next_sequence(&topic, PartitionId(0), Sequence(5));
    let error = producer
        .send(&topic, Record::new("5").partition(PartitionId(0)))
        .unwrap_err();
    assert_eq!(
        error,
        SendError::OutOfOrderSequence {
            partition: 0,
            sequence: 5,
            expected: 1
        }
    );
    // The handle goes back to the refused sequence... which is still a gap: the caller must
    // resend from 1.
    producer.set_next_sequence(&topic, PartitionId(0), Sequence(1));
    let (_, offset) = producer
        .send(&topic, Record::new("1").partition(PartitionId(0)))
        .unwrap();
    assert_eq!(offset, Offset(1));
    assert_eq!(count_records(&engine, &topic, 0), 2);
}

#[test]
fn a_newer_epoch_fences_the_older_producer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let topic = engine.create_topic("t", 1).unwrap();
    let mut old = engine.idempotent_producer().unwrap();
    let id = old.identity().unwrap().0;
    old.send(&topic, Record::new("old").partition(PartitionId(0)))
        .unwrap();
    let mut new = engine.resume_producer(id, Epoch(1));
    new.send(&topic, Record::new("new").partition(PartitionId(0)))
        .unwrap();
    let error = old
        .send(&topic, Record::new("stale").partition(PartitionId(0)))
        .unwrap_err();
    assert_eq!(
        error,
        SendError::Fenced {
            producer: id.0,
            current: 1
        }
    );
    // A newer epoch must start at sequence 0.
    let mut newer = engine.resume_producer(id, Epoch(2));
    newer.set_next_sequence(&topic, PartitionId(0), Sequence(4));
    let error = newer
        .send(&topic, Record::new("x").partition(PartitionId(0)))
        .unwrap_err();
    assert!(
        matches!(error, SendError::OutOfOrderSequence { expected: 0, .. }),
        "{error}"
    );
    assert_eq!(count_records(&engine, &topic, 0), 2);
}

#[test]
fn a_producer_the_partition_does_not_know_must_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let topic = engine.create_topic("t", 1).unwrap();
    let mut producer = engine.resume_producer(ProducerId(12345), Epoch(0));
    producer.set_next_sequence(&topic, PartitionId(0), Sequence(7));
    let error = producer
        .send(&topic, Record::new("x").partition(PartitionId(0)))
        .unwrap_err();
    assert_eq!(error, SendError::UnknownProducerId { producer: 12345 });
}

#[test]
fn pipelined_idempotent_records_over_many_partitions_are_stored_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let topic = engine.create_topic("keyed", 8).unwrap();
    let mut producer = engine.idempotent_producer().unwrap();
    let total = 20_000;
    let mut sent = 0;
    let mut acked = 0;
    while acked < total {
        while sent < total {
            match producer.try_send(
                &topic,
                Record::new(format!("{sent}")).key(format!("key-{}", sent % 97)),
            ) {
                Ok(_) => sent += 1,
                Err(rill::error::TrySendError::Full(_)) => break,
                Err(error) => panic!("{error}"),
            }
        }
        if let Some(outcome) = producer.wait_outcome(Duration::from_secs(10)) {
            outcome.result.unwrap();
            acked += 1;
        }
    }
    let mut consumer = engine.consumer();
    consumer
        .subscribe_all(&topic, StartPosition::Earliest)
        .unwrap();
    let mut last_per_key = std::collections::HashMap::new();
    let mut seen = 0;
    while let Some(record) = consumer.poll(Duration::from_millis(500)) {
        let value: usize = std::str::from_utf8(&record.value).unwrap().parse().unwrap();
        let key = value % 97;
        if let Some(previous) = last_per_key.insert(key, value) {
            assert!(value > previous, "key {key}: {value} after {previous}");
        }
        seen += 1;
    }
    assert_eq!(seen, total);
}
