//! The embedded engine end to end: real io_uring, real files, real threads.

use std::time::Duration;

use rill::client::Record;
use rill::{Durability, Engine, EngineConfig, Offset, PartitionId, StartPosition};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.shards = 2;
    config.pin_shards = false;
    config
}

fn consume_all(
    engine: &Engine,
    topic: &rill::Topic,
    partition: i32,
    from: StartPosition,
    expected: usize,
) -> Vec<(i64, Vec<u8>)> {
    let mut consumer = engine.consumer();
    consumer
        .subscribe(topic, PartitionId(partition), from)
        .unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let record = consumer
            .poll(Duration::from_secs(10))
            .expect("record within 10 s");
        out.push((record.offset.0, record.value.to_vec()));
    }
    assert!(
        consumer.poll(Duration::from_millis(50)).is_none(),
        "no more records than sent"
    );
    out
}

#[test]
fn records_round_trip_across_segment_rolls_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes_max = 4096;
    config.index_interval_bytes = 256;
    let values: Vec<Vec<u8>> = (0..500)
        .map(|i| format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes())
        .collect();
    {
        let engine = Engine::open(config.clone()).unwrap();
        let topic = engine.create_topic("orders", 3).unwrap();
        let mut producer = engine.producer();
        for (i, value) in values.iter().enumerate() {
            let (partition, offset) = producer
                .send(&topic, Record::new(value.clone()).partition(PartitionId(1)))
                .unwrap();
            assert_eq!(partition, PartitionId(1));
            assert_eq!(offset, Offset(i as i64));
        }
        let got = consume_all(&engine, &topic, 1, StartPosition::Earliest, values.len());
        for (i, (offset, value)) in got.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            assert_eq!(value, &values[i]);
        }
        engine.shutdown();
    }
    let segments = std::fs::read_dir(dir.path().join("orders/1"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "log")
        .count();
    assert!(segments > 3, "expected several segments, got {segments}");
    let engine = Engine::open(config).unwrap();
    let topic = engine.topic("orders").unwrap();
    let got = consume_all(&engine, &topic, 1, StartPosition::Offset(Offset(250)), 250);
    assert_eq!(got[0].0, 250);
    assert_eq!(got[0].1, values[250]);
    let mut producer = engine.producer();
    let (_, offset) = producer
        .send(
            &topic,
            Record::new("after restart").partition(PartitionId(1)),
        )
        .unwrap();
    assert_eq!(offset, Offset(500));
}

#[test]
fn each_durability_mode_acks_and_reads_back() {
    for durability in [
        Durability::Buffer,
        Durability::Interval(Duration::from_millis(5)),
        Durability::Sync,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.durability = durability;
        let engine = Engine::open(config).unwrap();
        let topic = engine.create_topic("t", 4).unwrap();
        let mut producer = engine.producer();
        for i in 0..200 {
            producer
                .try_send(&topic, Record::new(format!("{i}")).key(format!("k{i}")))
                .unwrap();
        }
        producer.flush();
        let mut acked = 0;
        while let Some(outcome) = producer.poll_outcome() {
            outcome.result.unwrap();
            acked += 1;
        }
        assert_eq!(acked, 200, "{durability}");
        let mut consumer = engine.consumer();
        consumer
            .subscribe_all(&topic, StartPosition::Earliest)
            .unwrap();
        let mut seen = 0;
        while consumer.poll(Duration::from_millis(500)).is_some() {
            seen += 1;
        }
        assert_eq!(seen, 200, "{durability}");
    }
}
