//! Disk full, for real: a size-limited tmpfs. Where the test cannot mount one (not root, no
//! tmpfs), it says so and checks nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rill::client::Record;
use rill::error::SendError;
use rill::{Durability, Engine, EngineConfig, Offset, PartitionId, StartPosition};

struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_records_with_the_partition_and_cause_and_recovers_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir.path())
        .output();
    match mounted {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            eprintln!(
                "SKIPPED: cannot mount a size-limited tmpfs here: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return;
        }
        Err(error) => {
            eprintln!("SKIPPED: cannot run mount: {error}");
            return;
        }
    }
    let _mount = Mount(dir.path());
    // Ballast that will be deleted to free space.
    let ballast = dir.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 512 << 10]).unwrap();

    let mut config = EngineConfig::new(dir.path().join("data"));
    config.shards = 1;
    config.pin_shards = false;
    config.durability = Durability::Buffer;
    let engine = Engine::open(config).unwrap();
    let topic = engine.create_topic("full", 1).unwrap();
    let mut producer = engine.producer();
    let value = vec![b'v'; 1024];
    let mut acked = 0i64;
    let error = loop {
        match producer.send(&topic, Record::new(value.clone()).partition(PartitionId(0))) {
            Ok((_, offset)) => {
                assert_eq!(offset, Offset(acked));
                acked += 1;
                assert!(acked < 10_000, "a 2 MiB filesystem never filled up");
            }
            Err(error) => break error,
        }
    };
    match &error {
        SendError::Storage { partition, cause } => {
            assert_eq!(*partition, 0);
            assert!(cause.contains("No space left"), "cause: {cause}");
        }
        other => panic!("expected a storage error, got {other}"),
    }
    assert!(acked > 100, "some records fit before the disk filled up");

    // The engine is up and every acknowledged record reads back; nothing partial shows.
    let read_all = || {
        let mut consumer = engine.consumer();
        consumer
            .subscribe(&topic, PartitionId(0), StartPosition::Earliest)
            .unwrap();
        let mut count = 0i64;
        while let Some(record) = consumer.poll(Duration::from_millis(300)) {
            assert_eq!(record.offset, Offset(count));
            assert_eq!(record.value.len(), 1024);
            count += 1;
        }
        count
    };
    assert_eq!(read_all(), acked);

    // Free space: writes succeed again without a restart, right after the last ack.
    std::fs::remove_file(&ballast).unwrap();
    let (_, offset) = producer
        .send(&topic, Record::new(value.clone()).partition(PartitionId(0)))
        .unwrap();
    assert_eq!(offset, Offset(acked));
    assert_eq!(read_all(), acked + 1);
    drop(producer);
    engine.shutdown();
    eprintln!(
        "disk full: ran on a 2 MiB tmpfs; {acked} records acknowledged before ENOSPC, then resumed"
    );
}
