//! Storage faults that outlast one operation, on the simulated disk.

use std::time::Duration;

use rill::client::Record;
use rill::config::StorageChoice;
use rill::error::SendError;
use rill::io::sim::{Fault, SimDisk};
use rill::{Durability, Engine, EngineConfig, Offset, PartitionId, StartPosition};

/// When a write failed and cutting the file back failed too, the shard refused the records at
/// once although their bytes were still in the file: a crash before the cut was retried would
/// have brought refused records back at recovery. Refusals now wait for the cut.
#[test]
fn refusals_wait_until_the_failed_write_is_cut_from_the_file() {
    let disk = SimDisk::new(7);
    // Topic metadata is still written with std::fs, so the data directory is a real one.
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.shards = 1;
    config.pin_shards = false;
    config.durability = Durability::Sync;
    config.storage = StorageChoice::Simulated(disk.clone());
    let engine = Engine::open(config).unwrap();
    let topic = engine.create_topic("t", 1).unwrap();
    let mut producer = engine.producer();
    let (_, offset) = producer
        .send(&topic, Record::new("a").partition(PartitionId(0)))
        .unwrap();
    assert_eq!(offset, Offset(0));

    // The write of "b" lands whole, its fdatasync fails, and so does every cut-back.
    disk.fail_every("fdatasync", Fault::Error(libc_eio()));
    disk.fail_every("truncate", Fault::Error(libc_eio()));
    producer
        .try_send(&topic, Record::new("b").partition(PartitionId(0)))
        .unwrap();
    assert!(
        producer.wait_outcome(Duration::from_millis(300)).is_none(),
        "no refusal while the refused bytes are still in the file"
    );

    disk.stop_failing();
    let outcome = producer
        .wait_outcome(Duration::from_secs(5))
        .expect("refused once cut");
    assert!(
        matches!(outcome.result, Err(SendError::Storage { partition: 0, .. })),
        "{outcome:?}"
    );
    let (_, offset) = producer
        .send(&topic, Record::new("c").partition(PartitionId(0)))
        .unwrap();
    assert_eq!(offset, Offset(1), "the refused record's offset is reused");

    let mut consumer = engine.consumer();
    consumer
        .subscribe(&topic, PartitionId(0), StartPosition::Earliest)
        .unwrap();
    let mut values = Vec::new();
    while let Some(record) = consumer.poll(Duration::from_millis(300)) {
        values.push(String::from_utf8(record.value.to_vec()).unwrap());
    }
    assert_eq!(values, ["a", "c"]);
}

fn libc_eio() -> i32 {
    5 // EIO on Linux
}
