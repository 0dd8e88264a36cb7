//! Seeded simulation of the engine over the simulated disk (`rill::io::sim`), checked against
//! a plain model: per partition, the `Vec` of acknowledged values (offset = index) and how many
//! of them must survive a power cut.
//!
//! Operations, chosen at random: append records to random partitions; read a partition back
//! through a consumer from a random offset; restart cleanly; crash the process; cut the power
//! (dropping or tearing what was not synced), optionally flipping a bit in the active segment
//! or an index file; inject EIO/ENOSPC/torn writes on the Nth storage operation, during appends
//! or during a reopen, and retry. Durability (`Sync` or `Buffer`) and the shard count are
//! drawn at every open.
//!
//! Checked:
//! * every acknowledged offset is the next one of its partition (contiguous, in order);
//! * reads return exactly the model's records, and the high watermark is the model's length;
//! * after a clean restart or a process crash nothing acknowledged is lost;
//! * after a power cut the log is a prefix of what was acknowledged, at least as long as what
//!   `Sync` acknowledged (or a clean shutdown made durable), cut exactly at a flipped bit;
//! * a failed storage operation refuses records only with `SendError::Storage` naming their
//!   partition, only when a fault fired, nothing refused becomes visible, and the partition
//!   accepts writes again at once.
//!
//! `SEED=n` replays a run (thread timing still varies: which records share a write, which
//! operation the Nth is); without it the seed is drawn from the clock. `SIM_OPERATIONS=n` sets
//! the run's length (default 1000, about 10 s in a debug build; the long mode is
//! `SIM_OPERATIONS=1000000`, best with `--release`). The seed is printed first and in every
//! assertion, so a failing run's output names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill::client::Record;
use rill::config::StorageChoice;
use rill::error::SendError;
use rill::io::sim::{Fault, PowerCut, SimDisk};
use rill::{Durability, Engine, EngineConfig, Offset, PartitionId, Producer, StartPosition, Topic};

const PARTITIONS: u32 = 3;
const TOPIC: &str = "sim";
/// How long a record may take to arrive before the run is declared stuck.
const WAIT: Duration = Duration::from_secs(20);
/// Most records one read checks; after a reopen, the tail this long is checked (and, one time
/// in ten, the whole log), so a long run's cost does not grow with the log.
const READ_RECORDS_MAX: usize = 200;

#[derive(Debug, Default)]
struct PartitionModel {
    /// Acknowledged values; the index is the offset.
    acked: Vec<Vec<u8>>,
    /// How many of `acked` must survive a power cut.
    durable: usize,
}

#[derive(Debug, Default)]
struct Counters {
    operations: u64,
    records_acked: u64,
    records_refused: u64,
    reads: u64,
    clean_restarts: u64,
    process_crashes: u64,
    power_cuts: u64,
    bits_flipped: u64,
    faults_fired: u64,
    failed_opens: u64,
    records_lost_to_power_cuts: u64,
}

struct Simulation {
    seed: u64,
    random: StdRng,
    disk: Arc<SimDisk>,
    directory: tempfile::TempDir,
    engine: Option<(Engine, Topic, Producer)>,
    durability: Durability,
    model: Vec<PartitionModel>,
    next_value: u64,
    counters: Counters,
}

impl Simulation {
    fn new(seed: u64) -> Simulation {
        let mut simulation = Simulation {
            seed,
            random: StdRng::seed_from_u64(seed),
            disk: SimDisk::new(seed ^ 0x5eed),
            directory: tempfile::tempdir().unwrap(),
            engine: None,
            durability: Durability::Sync,
            model: (0..PARTITIONS).map(|_| PartitionModel::default()).collect(),
            next_value: 0,
            counters: Counters::default(),
        };
        simulation.open();
        simulation
    }

    fn config(&mut self) -> EngineConfig {
        let mut config = EngineConfig::new(self.directory.path());
        config.shards = self.random.gen_range(1..=3);
        config.pin_shards = false;
        config.durability = if self.random.gen_bool(0.5) {
            Durability::Sync
        } else {
            Durability::Buffer
        };
        config.segment_bytes_max = [4096, 8192, 32768][self.random.gen_range(0..3)];
        config.index_interval_bytes = self.random.gen_range(64..2048);
        config.producer_ring_records_max = 64;
        config.consumer_ring_deliveries_max = self.random.gen_range(2..16);
        config.catch_up_delivery_bytes_max = self.random.gen_range(1..8192);
        config.storage = StorageChoice::Simulated(Arc::clone(&self.disk));
        config
    }

    fn context(&self) -> String {
        format!(
            "seed {} (replay with SEED={}), operation {}",
            self.seed, self.seed, self.counters.operations
        )
    }

    /// Opens the engine; with `fault`, a storage fault is armed during the open, and a failed
    /// open is retried once the fault is gone.
    fn open_with(&mut self, fault: Option<(u64, Fault)>) {
        assert!(self.engine.is_none());
        if let Some((operation, fault)) = fault {
            self.disk.arm_fault(operation, fault);
        }
        let config = self.config();
        self.durability = config.durability;
        let engine = match Engine::open(config.clone()) {
            Ok(engine) => engine,
            Err(error) => {
                let fired = self.disk.disarm();
                assert!(
                    !fired.is_empty(),
                    "{}: open failed without a fault: {error}",
                    self.context()
                );
                self.counters.faults_fired += fired.len() as u64;
                self.counters.failed_opens += 1;
                Engine::open(config).unwrap_or_else(|error| {
                    panic!(
                        "{}: open failed again after the fault: {error}",
                        self.context()
                    )
                })
            }
        };
        self.counters.faults_fired += self.disk.disarm().len() as u64;
        let topic = match engine.topic(TOPIC) {
            Ok(topic) => topic,
            Err(_) => engine.create_topic(TOPIC, PARTITIONS).unwrap(),
        };
        let producer = engine.producer();
        self.engine = Some((engine, topic, producer));
    }

    fn open(&mut self) {
        self.open_with(None);
    }

    fn value(&mut self, partition: u32) -> Vec<u8> {
        let number = self.next_value;
        self.next_value += 1;
        let mut value = format!("p{partition}-v{number}-").into_bytes();
        let filler = self.random.gen_range(0..400);
        value.extend((0..filler).map(|i| b'a' + ((number as usize + i) % 26) as u8));
        value
    }

    /// Sends `count` records to random partitions without waiting between them, then checks
    /// every outcome against the model. Refusals are allowed only when `fault_armed`.
    fn append(&mut self, count: usize, fault_armed: bool) -> Vec<u32> {
        let mut sent: Vec<(u64, u32, Vec<u8>)> = Vec::new();
        for _ in 0..count {
            let partition = self.random.gen_range(0..PARTITIONS);
            let value = self.value(partition);
            let (_, topic, producer) = self.engine.as_mut().unwrap();
            let record = Record::new(value.clone()).partition(PartitionId(partition as i32));
            let ticket = producer
                .try_send(topic, record)
                .unwrap_or_else(|error| panic!("try_send: {error}"));
            sent.push((ticket.0, partition, value));
        }
        let mut outcomes = BTreeMap::new();
        let deadline = Instant::now() + WAIT;
        while outcomes.len() < sent.len() {
            let (_, _, producer) = self.engine.as_mut().unwrap();
            match producer.wait_outcome(Duration::from_millis(100)) {
                Some(outcome) => {
                    outcomes.insert(outcome.ticket.0, outcome);
                }
                None => assert!(
                    Instant::now() < deadline,
                    "{}: {} of {} outcomes after {WAIT:?}",
                    self.context(),
                    outcomes.len(),
                    sent.len()
                ),
            }
        }
        let mut failed_partitions = Vec::new();
        for (ticket, partition, value) in sent {
            let outcome = outcomes
                .remove(&ticket)
                .expect("every ticket has an outcome");
            assert_eq!(outcome.partition.0 as u32, partition);
            let model = &mut self.model[partition as usize];
            match outcome.result {
                Ok(Offset(offset)) => {
                    assert_eq!(
                        offset,
                        model.acked.len() as i64,
                        "{}: partition {partition} acknowledged a record at the wrong offset",
                        self.context()
                    );
                    model.acked.push(value);
                    if self.durability == Durability::Sync {
                        model.durable = model.acked.len();
                    }
                    self.counters.records_acked += 1;
                }
                Err(SendError::Storage {
                    partition: named, ..
                }) if fault_armed => {
                    assert_eq!(
                        named as u32,
                        partition,
                        "{}: the error names the wrong partition",
                        self.context()
                    );
                    self.counters.records_refused += 1;
                    failed_partitions.push(partition);
                }
                Err(error) => panic!(
                    "{}: partition {partition}: unexpected refusal: {error}",
                    self.context()
                ),
            }
        }
        failed_partitions.sort_unstable();
        failed_partitions.dedup();
        failed_partitions
    }

    /// Appends with a fault armed on the Nth storage operation, then checks that every
    /// partition that refused records accepts them again at once.
    fn append_with_fault(&mut self) {
        let errno = if self.random.gen_bool(0.5) {
            libc::EIO
        } else {
            libc::ENOSPC
        };
        let fault = if self.random.gen_bool(0.3) {
            Fault::TornWrite {
                prefix_bytes: self.random.gen_range(0..600),
                errno,
            }
        } else {
            Fault::Error(errno)
        };
        self.disk.arm_fault(self.random.gen_range(1..=12), fault);
        let count = self.random.gen_range(1..=16);
        let failed = self.append(count, true);
        let fired = self.disk.disarm();
        self.counters.faults_fired += fired.len() as u64;
        assert!(
            failed.is_empty() || !fired.is_empty(),
            "{}: records refused but no fault fired",
            self.context()
        );
        for partition in failed {
            let value = self.value(partition);
            let (_, topic, producer) = self.engine.as_mut().unwrap();
            let record = Record::new(value.clone()).partition(PartitionId(partition as i32));
            match producer.send(topic, record) {
                Ok((_, Offset(offset))) => {
                    let model = &mut self.model[partition as usize];
                    assert_eq!(offset, model.acked.len() as i64, "{}", self.context());
                    model.acked.push(value);
                    if self.durability == Durability::Sync {
                        model.durable = model.acked.len();
                    }
                    self.counters.records_acked += 1;
                }
                Err(error) => panic!(
                    "{}: partition {partition} still refuses writes after a fault: {error}",
                    self.context()
                ),
            }
        }
    }

    /// Reads partition `partition` from `start` to the model's end through a consumer.
    fn read(&mut self, partition: u32, start: usize) {
        let (engine, topic, _) = self.engine.as_ref().unwrap();
        let model = &self.model[partition as usize];
        let mut consumer = engine.consumer();
        let (_, end) = consumer
            .subscribe(topic, PartitionId(partition as i32), StartPosition::Latest)
            .unwrap();
        assert_eq!(
            end.0,
            model.acked.len() as i64,
            "{}: partition {partition}: high watermark differs from the model",
            self.context()
        );
        let mut consumer = engine.consumer();
        consumer
            .subscribe(
                topic,
                PartitionId(partition as i32),
                StartPosition::Offset(Offset(start as i64)),
            )
            .unwrap();
        // Bounded, so a run's cost does not grow with the log.
        for offset in start..model.acked.len().min(start + READ_RECORDS_MAX) {
            let record = consumer.poll(WAIT).unwrap_or_else(|| {
                panic!(
                    "{}: partition {partition}: offset {offset} never arrived",
                    self.context()
                )
            });
            assert_eq!(record.offset.0, offset as i64, "{}", self.context());
            assert!(
                record.value[..] == model.acked[offset][..],
                "{}: partition {partition}: offset {offset} holds the wrong value",
                self.context()
            );
        }
        self.counters.reads += 1;
    }

    /// After a reopen: each partition must hold a prefix of what was acknowledged, at least
    /// `durable` long (or `exact`ly everything). The model becomes what survived.
    fn verify_reopened(&mut self, exact: bool, limits: &[usize]) {
        for partition in 0..PARTITIONS {
            let (engine, topic, _) = self.engine.as_ref().unwrap();
            let mut consumer = engine.consumer();
            let (_, end) = consumer
                .subscribe(topic, PartitionId(partition as i32), StartPosition::Latest)
                .unwrap();
            let end = end.0 as usize;
            let model = &mut self.model[partition as usize];
            let limit = limits[partition as usize];
            let must_keep = if exact {
                model.acked.len()
            } else {
                model.durable.min(limit)
            };
            let may_keep = model.acked.len().min(limit);
            assert!(
                (must_keep..=may_keep).contains(&end),
                "seed {} (replay with SEED={}), operation {}: partition {partition} reopened \
                 with {end} records; {must_keep}..={may_keep} expected ({} acknowledged, {} \
                 durable, cut limit {limit})",
                self.seed,
                self.seed,
                self.counters.operations,
                model.acked.len(),
                model.durable,
            );
            let start = if self.random.gen_bool(0.1) {
                0
            } else {
                end.saturating_sub(READ_RECORDS_MAX)
            };
            let mut consumer = engine.consumer();
            consumer
                .subscribe(
                    topic,
                    PartitionId(partition as i32),
                    StartPosition::Offset(Offset(start as i64)),
                )
                .unwrap();
            for offset in start..end {
                let record = consumer.poll(WAIT).unwrap_or_else(|| {
                    panic!(
                        "seed {}: partition {partition}: offset {offset} of {end} never \
                         arrived after reopening",
                        self.seed
                    )
                });
                assert_eq!(record.offset.0, offset as i64, "seed {}", self.seed);
                assert!(
                    record.value[..] == model.acked[offset][..],
                    "seed {}: partition {partition}: offset {offset} holds the wrong value \
                     after reopening",
                    self.seed
                );
            }
            self.counters.records_lost_to_power_cuts += (model.acked.len() - end) as u64;
            model.acked.truncate(end);
            model.durable = model.durable.min(end);
        }
    }

    fn drop_engine(&mut self) {
        let (engine, topic, producer) = self.engine.take().unwrap();
        drop(producer);
        drop(topic);
        drop(engine);
    }

    fn clean_restart(&mut self) {
        let (engine, topic, producer) = self.engine.take().unwrap();
        drop(producer);
        drop(topic);
        engine.shutdown();
        for model in &mut self.model {
            model.durable = model.acked.len();
        }
        self.open();
        self.verify_reopened(true, &[usize::MAX; PARTITIONS as usize]);
        self.counters.clean_restarts += 1;
    }

    fn reopen_fault(&mut self) -> Option<(u64, Fault)> {
        if !self.random.gen_bool(0.2) {
            return None;
        }
        let errno = if self.random.gen_bool(0.5) {
            libc::EIO
        } else {
            libc::ENOSPC
        };
        Some((self.random.gen_range(1..=40), Fault::Error(errno)))
    }

    fn process_crash(&mut self) {
        self.disk.crash();
        self.drop_engine();
        let fault = self.reopen_fault();
        self.open_with(fault);
        self.verify_reopened(true, &[usize::MAX; PARTITIONS as usize]);
        self.counters.process_crashes += 1;
    }

    fn power_cut(&mut self) {
        let cut = if self.random.gen_bool(0.5) {
            PowerCut::DropUnsynced
        } else {
            PowerCut::TearUnsynced
        };
        self.disk.power_cut(cut);
        self.drop_engine();
        let mut limits = vec![usize::MAX; PARTITIONS as usize];
        if self.random.gen_bool(0.3) {
            let partition = self.random.gen_range(0..PARTITIONS);
            limits[partition as usize] = self.flip_in_active_segment(partition);
        }
        if self.random.gen_bool(0.2) {
            self.flip_in_index();
        }
        let fault = self.reopen_fault();
        self.open_with(fault);
        self.verify_reopened(false, &limits);
        self.counters.power_cuts += 1;
    }

    fn partition_directory(&self, partition: u32) -> PathBuf {
        self.directory
            .path()
            .join(TOPIC)
            .join(partition.to_string())
    }

    /// Flips a random bit of the partition's last segment; returns the offset recovery must
    /// cut at (the base offset of the batch hit), or no limit when the bit lies past the
    /// batches that are valid anyway.
    fn flip_in_active_segment(&mut self, partition: u32) -> usize {
        let directory = self.partition_directory(partition);
        let Some(segment) = last_file(&self.disk.files(), &directory, "log") else {
            return usize::MAX;
        };
        let bytes = self.disk.read(&segment).unwrap();
        if bytes.is_empty() {
            return usize::MAX;
        }
        let position = self.random.gen_range(0..bytes.len());
        let bit = self.random.gen_range(0..8);
        let mut start = 0;
        let mut limit = usize::MAX;
        while start < bytes.len() {
            let Ok(batch) = rill::record::StoredBatch::parse(&bytes[start..]) else {
                break;
            };
            let end = start + batch.stored_len();
            if (start..end).contains(&position) {
                limit = batch.base_offset() as usize;
                break;
            }
            start = end;
        }
        self.disk.flip_bit(&segment, position, bit).unwrap();
        self.counters.bits_flipped += 1;
        limit
    }

    /// Flips a random bit of a random index file: recovery must notice and rebuild it.
    fn flip_in_index(&mut self) {
        let indexes: Vec<PathBuf> = self
            .disk
            .files()
            .into_iter()
            .filter(|path| path.extension().is_some_and(|e| e == "index"))
            .collect();
        if indexes.is_empty() {
            return;
        }
        let index = &indexes[self.random.gen_range(0..indexes.len())];
        let len = self.disk.read(index).unwrap().len();
        if len == 0 {
            return;
        }
        let position = self.random.gen_range(0..len);
        let bit = self.random.gen_range(0..8);
        self.disk.flip_bit(index, position, bit).unwrap();
        self.counters.bits_flipped += 1;
    }

    fn step(&mut self) {
        self.counters.operations += 1;
        match self.random.gen_range(0..100) {
            0..=44 => {
                let count = self.random.gen_range(1..=12);
                self.append(count, false);
            }
            45..=59 => self.append_with_fault(),
            60..=79 => {
                let partition = self.random.gen_range(0..PARTITIONS);
                let len = self.model[partition as usize].acked.len();
                let start = if self.random.gen_bool(0.5) {
                    self.random.gen_range(0..=len)
                } else {
                    len.saturating_sub(self.random.gen_range(0..8))
                };
                self.read(partition, start);
            }
            80..=84 => self.clean_restart(),
            85..=91 => self.process_crash(),
            _ => self.power_cut(),
        }
    }
}

fn last_file(files: &[PathBuf], directory: &Path, extension: &str) -> Option<PathBuf> {
    files
        .iter()
        .filter(|path| path.parent() == Some(directory))
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .max()
        .cloned()
}

fn environment_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {text:?}"))
    })
}

#[test]
fn random_operations_match_the_model_across_crashes_and_faults() {
    let seed = environment_number("SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let operations = environment_number("SIM_OPERATIONS").unwrap_or(1000);
    eprintln!("simulation: SEED={seed} SIM_OPERATIONS={operations}");
    let started = Instant::now();
    let mut simulation = Simulation::new(seed);
    for done in 0..operations {
        simulation.step();
        if (done + 1) % 10_000 == 0 {
            eprintln!(
                "simulation: SEED={seed}: {} operations clean after {:?}: {:?}",
                done + 1,
                started.elapsed(),
                simulation.counters
            );
        }
    }
    simulation.clean_restart();
    eprintln!(
        "simulation: SEED={seed}: {operations} operations clean in {:?}: {:?}",
        started.elapsed(),
        simulation.counters
    );
}
