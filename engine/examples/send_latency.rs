//! Round-trip latency of blocking `send` calls, one at a time (no queueing): the engine's
//! floor. `cargo run --release -p rill --example send_latency -- [buffer|sync] [count]`

use std::time::{Duration, Instant};

use rill::client::Record;
use rill::{Durability, Engine, EngineConfig, StartPosition};

fn main() {
    let mut arguments = std::env::args().skip(1);
    let durability =
        Durability::parse(&arguments.next().unwrap_or_else(|| "buffer".into())).unwrap();
    let count: usize = arguments.next().map_or(20_000, |c| c.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.durability = durability;
    if let Ok(spin) = std::env::var("SPIN_US") {
        config.idle_spin = Duration::from_micros(spin.parse().unwrap());
    }
    if let Ok(shards) = std::env::var("SHARDS") {
        config.shards = shards.parse().unwrap();
    }
    let engine = Engine::open(config).unwrap();
    let topic = engine.create_topic("latency", 16).unwrap();
    let consumer_topic = topic.clone();
    let engine_ref = &engine;
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut consumer = engine_ref.consumer();
            consumer
                .subscribe_all(&consumer_topic, StartPosition::Latest)
                .unwrap();
            let mut received = 0;
            while received < count {
                if consumer.poll(Duration::from_secs(5)).is_none() {
                    break;
                }
                received += 1;
            }
            received
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut producer = engine.producer();
        let value = bytes::Bytes::from(vec![b'x'; 1024]);
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            producer.send(&topic, Record::new(value.clone())).unwrap();
            latencies.push(start.elapsed().as_nanos() as u64);
        }
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] / 1000
        };
        println!(
            "{durability}: {count} sends, µs p50 {} p90 {} p99 {} p99.9 {} max {}; consumer got {}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            latencies.last().unwrap() / 1000,
            reader.join().unwrap()
        );
    });
}
