//! An idle engine sleeps: its own test binary, so no other test's threads add CPU time.

use std::time::Duration;

use rill::client::Record;
use rill::{Engine, EngineConfig};

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.shards = 2;
    config.pin_shards = false;
    config
}

#[test]
fn an_idle_engine_does_not_spin_its_shards() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let topic = engine.create_topic("idle", 2).unwrap();
    engine
        .producer()
        .send(&topic, Record::new("wake up"))
        .unwrap();
    let cpu_before = process_cpu_time();
    let wall = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_used = process_cpu_time() - cpu_before;
    let wall_used = wall.elapsed();
    // Two shards spinning would burn ~1 s of CPU in 0.5 s; sleeping ones almost none.
    assert!(
        cpu_used < wall_used / 10,
        "idle engine used {cpu_used:?} CPU in {wall_used:?}"
    );
}

/// CPU time of this process (user + system), from /proc/self/stat.
fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks (100 per s).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}
