//! Crash test: what `rill produce` acknowledged is never lost, and a retry never duplicates.
//!
//! Each cycle starts a real `rill produce` process on a data directory, streams it unique
//! lines (`c{cycle}-r{n}`) on standard input, reads its acknowledgements
//! (`partition<TAB>offset<TAB>value`) and SIGKILLs it at a random moment: after a random number
//! of acks, or a few milliseconds after it started (often while it is still opening the
//! engine). Nothing gets to shut down cleanly; the data directory's lock goes with the process.
//!
//! Then `rill consume --from earliest --to-end` reopens the directory (recovery runs) and the
//! whole log is checked against the ledger of every acknowledgement seen so far:
//!
//! * **lost**: an acknowledged record is not at the offset it was acknowledged with;
//! * **duplicated**: a value appears twice, or a resend was stored again;
//! * **corrupt**: `consume` failed or reported anything but recovery cutting a torn tail right
//!   after a kill, a line is malformed, a partition's offsets are not 0, 1, 2, ... in order, a
//!   value was never sent, records of one producer are out of input order, a stored record
//!   follows a hole among the records sent to its partition, or a producer id was handed out
//!   twice.
//!
//! Cycles mix `--durability sync` and `buffer` (a process crash leaves the page cache alone, so
//! buffer-mode acks must survive it too), round-robin, `--key` and `--partition` routing, and
//! plain and `--idempotent` producers. After an idempotent cycle, the same identity resends
//! (`--producer-id/--epoch/--first-sequence`): the last acknowledged record must be acked with
//! its original offset and not stored again, and the last stored record plus one new record
//! must give the original offset and then the partition's end.
//!
//! Knobs: `CRASH_CYCLES` (default 30), `CRASH_SEED` (replays a run's choices; timing still
//! varies), `RILL_BIN` (the binary to test; otherwise it is built as in `cli.rs`). A failure
//! keeps the data directory and names it, with the seed and the cycle.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill::partitioner::partition_for_key;
use rill_tests::rill_binary;

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;
const CYCLES_DEFAULT: u64 = 30;
/// A fresh data directory every this many cycles, so that checking the whole log after each
/// cycle stays cheap in runs of thousands of cycles.
const CYCLES_PER_DIRECTORY: u64 = 10;
/// Most acks awaited before the kill; with sync durability a pipelined producer acks tens of
/// thousands of records a second, so a cycle stays well under a second.
const KILL_AFTER_ACKS_MAX: usize = 1_000;
/// Share of cycles killed a short delay after the start instead of after some acks.
const KILL_EARLY_PROBABILITY: f64 = 0.15;
const KILL_EARLY_DELAY_MAX: Duration = Duration::from_millis(40);
/// Extra time after the chosen ack before the kill, so the kill lands anywhere in a loop turn.
const KILL_JITTER_MAX: Duration = Duration::from_micros(3_000);
/// Lines offered per cycle at most; the kill comes long before (bounds a runaway cycle).
const LINES_PER_CYCLE_MAX: u64 = 200_000;
/// Lines written to the producer's standard input per write.
const LINES_PER_WRITE: u64 = 128;
/// Longest wait for the chosen number of acks: a producer that makes no progress for this
/// long is a failure, not something to kill and forget.
const ACK_WAIT_MAX: Duration = Duration::from_secs(10);
/// Longest a `consume` or a resend may run before it is killed as hung.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Records stored after a resent one before it may fall out of the producer's cached batches
/// (5 batches; each batch holds at least one record, so 4 later records leave it cached).
const RECORDS_AFTER_STILL_CACHED_MAX: usize = 4;
const SHARDS_MAX: u32 = 3;
/// Linux's SIGKILL (the tests crate does not depend on libc for one number).
const SIGKILL: i32 = 9;

/// How a cycle's producer picks partitions.
#[derive(Clone, Debug)]
enum Routing {
    /// No key, no partition: the producer handle deals records out in turn. Which record
    /// lands where depends on timing (a record refused by backpressure is retried on the
    /// next partition), so only the acks and the log say where each went.
    RoundRobin,
    /// `--key KEY`: every record to the key's partition.
    Keyed(String),
    /// `--partition P`.
    Explicit(u32),
}

impl Routing {
    /// The one partition every record goes to; `None` for round robin.
    fn partition(&self) -> Option<u32> {
        match self {
            Routing::RoundRobin => None,
            Routing::Keyed(key) => Some(partition_for_key(key.as_bytes(), PARTITIONS)),
            Routing::Explicit(partition) => Some(*partition),
        }
    }

    fn arguments(&self) -> Vec<String> {
        match self {
            Routing::RoundRobin => Vec::new(),
            Routing::Keyed(key) => vec!["--key".into(), key.clone()],
            Routing::Explicit(partition) => vec!["--partition".into(), partition.to_string()],
        }
    }
}

/// When the producer is killed.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// This long after the process started (it may not have opened the engine yet).
    AfterDelay(Duration),
    /// Once this many acks were read, plus a jitter.
    AfterAcks(usize, Duration),
}

/// What one cycle does, drawn from the seeded generator before it runs.
#[derive(Clone, Debug)]
struct CyclePlan {
    durability: &'static str,
    routing: Routing,
    idempotent: bool,
    kill: KillPoint,
    shards: u32,
}

impl CyclePlan {
    fn draw(rng: &mut StdRng, cycle: u64) -> CyclePlan {
        let routing = match rng.gen_range(0..3) {
            0 => Routing::RoundRobin,
            1 => Routing::Keyed(format!("key-{}", rng.gen_range(0..1_000))),
            _ => Routing::Explicit(rng.gen_range(0..PARTITIONS)),
        };
        let kill = if rng.gen_bool(KILL_EARLY_PROBABILITY) {
            KillPoint::AfterDelay(rng.gen_range(Duration::ZERO..=KILL_EARLY_DELAY_MAX))
        } else {
            KillPoint::AfterAcks(
                rng.gen_range(0..=KILL_AFTER_ACKS_MAX),
                rng.gen_range(Duration::ZERO..=KILL_JITTER_MAX),
            )
        };
        CyclePlan {
            // Every third cycle in buffer mode, the rest sync; both promise survival of a
            // process crash.
            durability: if cycle % 3 == 2 { "buffer" } else { "sync" },
            routing,
            idempotent: rng.gen_bool(0.5),
            kill,
            shards: rng.gen_range(1..=SHARDS_MAX),
        }
    }
}

/// One acknowledgement line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ack {
    partition: u32,
    offset: i64,
    value: String,
}

fn parse_record_line(line: &str) -> Option<Ack> {
    let mut fields = line.splitn(3, '\t');
    let partition = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    let value = fields.next()?.to_string();
    Some(Ack {
        partition,
        offset,
        value,
    })
}

/// The values this test writes: `c{cycle}-r{n}` from a crashed producer, `c{cycle}-next` from
/// the resumed identity after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ValueName {
    Record { cycle: u64, n: u64 },
    Next { cycle: u64 },
}

impl ValueName {
    fn parse(value: &str) -> Option<ValueName> {
        let rest = value.strip_prefix('c')?;
        let (cycle, what) = rest.split_once('-')?;
        let cycle = cycle.parse().ok()?;
        if what == "next" {
            return Some(ValueName::Next { cycle });
        }
        let n = what.strip_prefix('r')?.parse().ok()?;
        Some(ValueName::Record { cycle, n })
    }

    /// Where the value belongs in a partition: cycles run one after the other, a producer's
    /// records keep input order, and a cycle's `next` record comes after its crashed run.
    fn order_key(self) -> (u64, u64) {
        match self {
            ValueName::Record { cycle, n } => (cycle, n),
            ValueName::Next { cycle } => (cycle, u64::MAX),
        }
    }
}

fn record_value(cycle: u64, n: u64) -> String {
    format!("c{cycle}-r{n}")
}

/// What a finished process left behind.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Problems found, by the summary's categories.
#[derive(Debug, Default)]
struct Findings {
    lost: Vec<String>,
    duplicated: Vec<String>,
    corrupt: Vec<String>,
}

impl Findings {
    fn is_empty(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.corrupt.is_empty()
    }
}

/// Totals over the run, for the summary line.
#[derive(Debug, Default)]
struct Totals {
    cycles: u64,
    acked: u64,
    lost: u64,
    duplicated: u64,
    corrupt: u64,
    killed_early: u64,
    /// Partitions whose torn tail recovery cut after a kill (reported by `consume`).
    recovery_cuts: u64,
    /// Records of a killed producer that were stored although their ack was never read:
    /// proof that kills land with records in flight (allowed: they were never promised).
    stored_unacknowledged: u64,
    resends: u64,
    resends_refused_as_evicted: u64,
}

impl Totals {
    fn summary(&self) -> String {
        format!(
            "cycles={} acked={} lost={} duplicated={} corrupt={}",
            self.cycles, self.acked, self.lost, self.duplicated, self.corrupt
        )
    }
}

/// What the data directory went through before `verify` opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opened {
    /// Its last writer was SIGKILLed: recovery may cut torn tails.
    AfterKill,
    /// Its last writers shut down cleanly: nothing to cut.
    AfterCleanShutdown,
}

/// What was sent in one cycle of the current data directory.
#[derive(Debug)]
struct CycleRecord {
    routing: Routing,
    /// Lines handed to the producer's standard input (an upper bound on what it read).
    lines_written: u64,
    /// Whether a `c{cycle}-next` record was sent.
    next_sent: bool,
}

/// One data directory and everything known about what went into it.
#[derive(Debug)]
struct Directory {
    path: PathBuf,
    /// Every acknowledged value and where it was acknowledged.
    ledger: HashMap<String, (u32, i64)>,
    cycles: HashMap<u64, CycleRecord>,
    /// The largest idempotent producer id seen; a new one must be larger.
    producer_id_max: Option<i64>,
}

/// The log as `consume` printed it: values by partition and offset.
#[derive(Debug)]
struct Log {
    partitions: Vec<Vec<String>>,
}

struct CrashRun {
    seed: u64,
    rng: StdRng,
    totals: Totals,
    directory: Option<Directory>,
    cycle: u64,
    /// The current cycle's plan, for failure messages.
    plan: Option<CyclePlan>,
}

impl CrashRun {
    fn directory(&self) -> &Directory {
        self.directory.as_ref().expect("a data directory is open")
    }

    fn directory_mut(&mut self) -> &mut Directory {
        self.directory.as_mut().expect("a data directory is open")
    }

    fn data_dir(&self) -> PathBuf {
        self.directory().path.clone()
    }

    fn command(&self, arguments: &[String], shards: u32) -> Command {
        let mut command = Command::new(rill_binary());
        command
            .args(arguments)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--shards", &shards.to_string()])
            .env("RUST_BACKTRACE", "1");
        command
    }

    /// Runs `rill` to completion with `input` on standard input.
    fn run(&self, arguments: &[String], shards: u32, input: &[u8]) -> Outcome {
        let mut child = self
            .command(arguments, shards)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rill starts");
        let stdin = child.stdin.take();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input); // an early exit closes the pipe: its business
            }
        });
        let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
        let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
        let status = self.wait_with_timeout(&mut child, PROCESS_TIMEOUT);
        writer.join().expect("stdin writer");
        Outcome {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }

    fn wait_with_timeout(&self, child: &mut Child, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for rill") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!("rill ran longer than {timeout:?} and was killed"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Keeps the data directory and panics with everything needed to replay.
    fn fail(&self, message: &str) -> ! {
        let data_dir = self
            .directory
            .as_ref()
            .map(|directory| directory.path.display().to_string())
            .unwrap_or_default();
        println!("{}", self.totals.summary());
        panic!(
            "crash test failed: seed={} (replay with CRASH_SEED={}) cycle={} data_dir={data_dir} (kept)\nplan: {:?}\n{message}",
            self.seed, self.seed, self.cycle, self.plan
        );
    }

    /// Removes a data directory that passed every check (a failed one is kept).
    fn finish_directory(&mut self) {
        if let Some(directory) = self.directory.take() {
            std::fs::remove_dir_all(&directory.path)
                .unwrap_or_else(|error| panic!("removing {}: {error}", directory.path.display()));
        }
    }

    fn start_directory(&mut self) {
        // Kept from the start: a failure panics, and the directory must outlive that; it is
        // removed once it passed (`finish_directory`).
        let path = tempfile::Builder::new()
            .prefix("rill-crash-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        self.directory = Some(Directory {
            path,
            ledger: HashMap::new(),
            cycles: HashMap::new(),
            producer_id_max: None,
        });
        let outcome = self.run(
            &strings(&[
                "topic",
                "create",
                TOPIC,
                "--partitions",
                &PARTITIONS.to_string(),
            ]),
            2,
            b"",
        );
        if !outcome.status.success() {
            self.fail(&format!("topic create failed: {}", outcome.stderr));
        }
    }

    fn run_cycles(&mut self, cycles: u64) {
        for cycle in 0..cycles {
            self.cycle = cycle;
            if cycle % CYCLES_PER_DIRECTORY == 0 {
                self.finish_directory();
                self.start_directory();
            }
            let plan = CyclePlan::draw(&mut self.rng, cycle);
            self.plan = Some(plan.clone());
            self.crash_cycle(cycle, &plan);
            self.totals.cycles += 1;
        }
        self.finish_directory();
    }

    fn crash_cycle(&mut self, cycle: u64, plan: &CyclePlan) {
        let (acks, stderr, lines_written) = self.produce_and_kill(cycle, plan);
        self.directory_mut().cycles.insert(
            cycle,
            CycleRecord {
                routing: plan.routing.clone(),
                lines_written,
                next_sent: false,
            },
        );
        let mut findings = Findings::default();
        self.check_acks(cycle, plan, &acks, &mut findings);
        self.totals.acked += acks.len() as u64;
        for ack in &acks {
            self.directory_mut()
                .ledger
                .insert(ack.value.clone(), (ack.partition, ack.offset));
        }
        let log = self.verify(plan.shards, Opened::AfterKill, &mut findings);
        self.settle(&findings);
        let stored = log
            .partitions
            .iter()
            .flatten()
            .filter(|value| {
                matches!(ValueName::parse(value), Some(ValueName::Record { cycle: c, .. }) if c == cycle)
            })
            .count();
        self.totals.stored_unacknowledged += stored.saturating_sub(acks.len()) as u64;
        if plan.idempotent {
            if let Some(producer_id) = self.producer_id_from(&stderr, &mut findings) {
                self.resend(cycle, plan, producer_id, &acks, &log, &mut findings);
                // Whatever the resends stored (or wrongly stored again) shows in the log.
                self.verify(plan.shards, Opened::AfterCleanShutdown, &mut findings);
            }
            self.settle(&findings);
        }
    }

    /// Counts the findings; fails the run if there are any.
    fn settle(&mut self, findings: &Findings) {
        if findings.is_empty() {
            return;
        }
        self.totals.lost += findings.lost.len() as u64;
        self.totals.duplicated += findings.duplicated.len() as u64;
        self.totals.corrupt += findings.corrupt.len() as u64;
        let mut message = String::new();
        for (kind, list) in [
            ("lost", &findings.lost),
            ("duplicated", &findings.duplicated),
            ("corrupt", &findings.corrupt),
        ] {
            for finding in list.iter().take(20) {
                message.push_str(&format!("{kind}: {finding}\n"));
            }
            if list.len() > 20 {
                message.push_str(&format!("{kind}: ... {} more\n", list.len() - 20));
            }
        }
        self.fail(&message);
    }

    /// Starts a producer, feeds it lines, kills it at the planned moment. Returns the acks it
    /// printed (complete lines only), its standard error and how many lines were written.
    fn produce_and_kill(&mut self, cycle: u64, plan: &CyclePlan) -> (Vec<Ack>, String, u64) {
        let mut arguments =
            strings(&["produce", "--topic", TOPIC, "--durability", plan.durability]);
        arguments.extend(plan.routing.arguments());
        if plan.idempotent {
            arguments.push("--idempotent".into());
        }
        let started = Instant::now();
        let mut child = self
            .command(&arguments, plan.shards)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rill starts");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || {
            let mut written = 0u64;
            while written < LINES_PER_CYCLE_MAX {
                let chunk: String = (written..written + LINES_PER_WRITE)
                    .map(|n| record_value(cycle, n) + "\n")
                    .collect();
                if stdin.write_all(chunk.as_bytes()).is_err() {
                    break; // the producer is gone
                }
                written += LINES_PER_WRITE;
            }
            written
        });
        let (sender, receiver) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line) {
                    // A line cut by the kill has no newline; its record was acknowledged, but
                    // its text cannot be trusted, so it is not counted.
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.last() != Some(&b'\n') => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        if sender.send(text).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = read_in_background(child.stderr.take().expect("piped stderr"));

        let mut lines = Vec::new();
        match plan.kill {
            KillPoint::AfterDelay(delay) => {
                self.totals.killed_early += 1;
                std::thread::sleep(delay.saturating_sub(started.elapsed()));
            }
            KillPoint::AfterAcks(wanted, jitter) => {
                let deadline = Instant::now() + ACK_WAIT_MAX;
                while lines.len() < wanted {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match receiver.recv_timeout(left) {
                        Ok(line) => lines.push(line),
                        Err(mpsc::RecvTimeoutError::Disconnected) => break, // exited: see below
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            let _ = child.kill();
                            let _ = child.wait();
                            self.fail(&format!(
                                "the producer acknowledged {} of {wanted} records within {ACK_WAIT_MAX:?} (plan {plan:?})",
                                lines.len()
                            ));
                        }
                    }
                }
                spin_for(jitter);
            }
        }
        // SIGKILL: no handler, no shutdown, no flush.
        let _ = child.kill();
        let status = child.wait().expect("waiting for the killed producer");
        let lines_written = writer.join().expect("stdin writer");
        reader.join().expect("stdout reader");
        lines.extend(receiver.try_iter());
        let stderr = stderr.join().expect("stderr reader");
        if status.signal() != Some(SIGKILL) {
            self.fail(&format!(
                "the producer was not killed but exited by itself with {status}; stderr:\n{stderr}"
            ));
        }
        let mut acks = Vec::with_capacity(lines.len());
        for line in &lines {
            match parse_record_line(line) {
                Some(ack) => acks.push(ack),
                None => self.fail(&format!("malformed ack line {line:?}")),
            }
        }
        (acks, stderr, lines_written)
    }

    /// The acks themselves: this cycle's values, in input order, in the routed partitions.
    fn check_acks(&self, cycle: u64, plan: &CyclePlan, acks: &[Ack], findings: &mut Findings) {
        let mut previous: Option<u64> = None;
        for ack in acks {
            match ValueName::parse(&ack.value) {
                Some(ValueName::Record { cycle: c, n }) if c == cycle => {
                    if previous.is_some_and(|previous| n <= previous) {
                        findings
                            .corrupt
                            .push(format!("ack {ack:?} out of input order"));
                    }
                    previous = Some(n);
                    let expected = plan.routing.partition().unwrap_or(ack.partition);
                    if ack.partition != expected {
                        findings.corrupt.push(format!(
                            "ack {ack:?} in partition {}, routed to {expected}",
                            ack.partition
                        ));
                    }
                }
                _ => findings
                    .corrupt
                    .push(format!("ack {ack:?} is not a value of this cycle")),
            }
            if self.directory().ledger.contains_key(&ack.value) {
                findings
                    .duplicated
                    .push(format!("value {:?} acknowledged twice", ack.value));
            }
        }
    }

    /// Reads the whole log back through a fresh process (recovery runs) and checks it against
    /// the ledger.
    fn verify(&mut self, shards: u32, opened: Opened, findings: &mut Findings) -> Log {
        let outcome = self.run(
            &strings(&[
                "consume", "--topic", TOPIC, "--from", "earliest", "--to-end",
            ]),
            shards,
            b"",
        );
        if !outcome.status.success() {
            findings.corrupt.push(format!(
                "consume failed with {}: {}",
                outcome.status, outcome.stderr
            ));
            self.settle(findings);
        }
        let cut_note = format!("rill: {TOPIC}/");
        for line in outcome.stderr.lines() {
            if line.contains("io_uring unavailable") {
                continue;
            }
            // Recovery cutting a torn tail is what a kill mid-write leaves; after a clean
            // shutdown there must be nothing to cut.
            if line.starts_with(&cut_note)
                && line.contains(": recovery cut ")
                && opened == Opened::AfterKill
            {
                self.totals.recovery_cuts += 1;
                continue;
            }
            findings
                .corrupt
                .push(format!("consume ({opened:?}) reported on stderr: {line}"));
        }
        let directory = self.directory();
        let mut log = Log {
            partitions: vec![Vec::new(); PARTITIONS as usize],
        };
        let mut seen: HashMap<String, (u32, i64)> = HashMap::new();
        let mut last_key: Vec<Option<(u64, u64)>> = vec![None; PARTITIONS as usize];
        // Per (cycle, partition): how many of that cycle's records the partition holds.
        let mut held: HashMap<(u64, u32), u64> = HashMap::new();
        for line in outcome.stdout.lines() {
            let Some(record) = parse_record_line(line) else {
                findings.corrupt.push(format!("malformed line {line:?}"));
                continue;
            };
            let Some(values) = log.partitions.get_mut(record.partition as usize) else {
                findings
                    .corrupt
                    .push(format!("{record:?} is in no partition of the topic"));
                continue;
            };
            if record.offset != values.len() as i64 {
                findings.corrupt.push(format!(
                    "{record:?}: offset {} follows {} records (offsets must run 0, 1, 2, ...)",
                    record.offset,
                    values.len()
                ));
            }
            values.push(record.value.clone());
            let partition = record.partition;
            let Some(name) = ValueName::parse(&record.value) else {
                findings
                    .corrupt
                    .push(format!("{record:?}: a value never sent"));
                continue;
            };
            let known = match name {
                ValueName::Record { cycle, n } => directory.cycles.get(&cycle).is_some_and(|c| {
                    n < c.lines_written && c.routing.partition().unwrap_or(partition) == partition
                }),
                ValueName::Next { cycle } => {
                    directory.cycles.get(&cycle).is_some_and(|c| c.next_sent)
                }
            };
            if !known {
                findings
                    .corrupt
                    .push(format!("{record:?}: a value never sent to this partition"));
                continue;
            }
            if let Some(first) = seen.get(&record.value) {
                findings
                    .duplicated
                    .push(format!("{record:?}: stored before at {first:?}"));
            } else {
                seen.insert(record.value.clone(), (partition, record.offset));
            }
            let key = name.order_key();
            if last_key[partition as usize].is_some_and(|last| key <= last) {
                findings.corrupt.push(format!(
                    "{record:?} stored after {:?}, out of order",
                    last_key[partition as usize]
                ));
            }
            last_key[partition as usize] = Some(key);
            // With one partition per producer, its stored records are exactly its first
            // ones: record n sits right after record n - 1. (Round robin: the order check.)
            if let ValueName::Record { cycle, n } = name {
                let count = held.entry((cycle, partition)).or_insert(0);
                if directory.cycles[&cycle].routing.partition().is_some() && n != *count {
                    findings.corrupt.push(format!(
                        "{record:?}: record {count} of cycle {cycle} is missing before it (a hole)"
                    ));
                }
                *count += 1;
            }
        }
        let mut ledger: Vec<(&String, &(u32, i64))> = directory.ledger.iter().collect();
        ledger.sort_by_key(|&(_, place)| *place); // findings in log order
        for (value, &(partition, offset)) in ledger {
            let stored = log.partitions[partition as usize].get(offset as usize);
            if stored != Some(value) {
                findings.lost.push(format!(
                    "{value:?} acknowledged at {partition}/{offset}; stored there: {stored:?}; stored at: {:?}",
                    seen.get(value)
                ));
            }
        }
        log
    }

    /// The id in the producer's `rill: idempotent producer id=N epoch=0` line, if it got as
    /// far as printing it; checks that ids only grow.
    fn producer_id_from(&mut self, stderr: &str, findings: &mut Findings) -> Option<i64> {
        let line = stderr
            .lines()
            .find(|line| line.starts_with("rill: idempotent producer id="))?;
        let id: i64 = line
            .strip_prefix("rill: idempotent producer id=")?
            .strip_suffix(" epoch=0")?
            .parse()
            .ok()?;
        let directory = self.directory_mut();
        if directory.producer_id_max.is_some_and(|max| id <= max) {
            findings.corrupt.push(format!(
                "producer id {id} handed out again (ids up to {:?} were in use)",
                directory.producer_id_max
            ));
        }
        directory.producer_id_max = Some(id);
        Some(id)
    }

    /// Resends as the crashed producer: its last acknowledged record (must be acked with the
    /// original offset, or, if more records were stored after it than the producer's cached
    /// batches surely cover, may be refused as out of order), then its last stored record and a
    /// new one (the original offset, then the partition's end).
    fn resend(
        &mut self,
        cycle: u64,
        plan: &CyclePlan,
        producer_id: i64,
        acks: &[Ack],
        log: &Log,
        findings: &mut Findings,
    ) {
        let routing = &plan.routing;
        // This cycle's stored records per partition, as (offset, n), in order. The producer
        // numbered its records of a partition 0, 1, 2, ... and (checked in `verify`) they
        // are stored without holes, so a record's index here is its sequence.
        let stored = |partition: u32| -> Vec<(i64, u64)> {
            log.partitions[partition as usize]
                .iter()
                .enumerate()
                .filter_map(|(offset, value)| match ValueName::parse(value) {
                    Some(ValueName::Record { cycle: c, n }) if c == cycle => {
                        Some((offset as i64, n))
                    }
                    _ => None,
                })
                .collect()
        };
        let resend_arguments = |partition: u32, sequence: u64| {
            strings(&[
                "produce",
                "--topic",
                TOPIC,
                "--durability",
                plan.durability,
                "--producer-id",
                &producer_id.to_string(),
                "--epoch",
                "0",
                "--partition",
                &partition.to_string(),
                "--first-sequence",
                &sequence.to_string(),
            ])
        };

        if let Some(last) = acks.last() {
            let stored_here = stored(last.partition);
            let Some(sequence) = stored_here
                .iter()
                .position(|&(offset, _)| offset == last.offset)
            else {
                unreachable!("verify found every acknowledged record");
            };
            let stored_after = stored_here.len() - sequence - 1;
            let outcome = self.run(
                &resend_arguments(last.partition, sequence as u64),
                plan.shards,
                format!("{}\n", last.value).as_bytes(),
            );
            self.totals.resends += 1;
            let expected = format!("{}\t{}\t{}\n", last.partition, last.offset, last.value);
            let refused_as_evicted = outcome.status.code() == Some(1)
                && outcome.stdout.is_empty()
                && outcome.stderr.contains("out of order")
                && stored_after > RECORDS_AFTER_STILL_CACHED_MAX;
            if refused_as_evicted {
                self.totals.resends_refused_as_evicted += 1;
            } else if !outcome.status.success() || outcome.stdout != expected {
                let message = format!(
                    "resending the last acknowledged record {last:?} (sequence {sequence}, {stored_after} records stored after it): {}, stdout {:?}, stderr {:?}",
                    outcome.status,
                    outcome.stdout,
                    outcome.stderr
                );
                if outcome.status.success() {
                    findings.duplicated.push(message);
                } else {
                    findings.corrupt.push(message);
                }
            }
        }

        // The last stored record of the producer (always in its newest batch, so always a
        // recognised duplicate) and one new record, which must land at the partition's end.
        let partition = acks
            .last()
            .map(|ack| ack.partition)
            .or_else(|| routing.partition())
            .unwrap_or(0);
        let stored_here = stored(partition);
        let next_value = format!("c{cycle}-next");
        let end = log.partitions[partition as usize].len() as i64;
        let (first_sequence, input, expected) = match stored_here.last() {
            Some(&(offset, n)) => {
                let value = record_value(cycle, n);
                (
                    stored_here.len() as u64 - 1,
                    format!("{value}\n{next_value}\n"),
                    format!("{partition}\t{offset}\t{value}\n{partition}\t{end}\t{next_value}\n"),
                )
            }
            None => (
                0,
                format!("{next_value}\n"),
                format!("{partition}\t{end}\t{next_value}\n"),
            ),
        };
        self.directory_mut()
            .cycles
            .get_mut(&cycle)
            .expect("the cycle was recorded")
            .next_sent = true;
        let outcome = self.run(
            &resend_arguments(partition, first_sequence),
            plan.shards,
            input.as_bytes(),
        );
        self.totals.resends += 1;
        if outcome.status.success() && outcome.stdout == expected {
            self.totals.acked += 1;
            self.directory_mut()
                .ledger
                .insert(next_value, (partition, end));
        } else {
            let message = format!(
                "resending the last stored record (sequence {first_sequence}) and {next_value}: expected {expected:?}, got {}, stdout {:?}, stderr {:?}",
                outcome.status, outcome.stdout, outcome.stderr
            );
            if outcome.status.success() {
                findings.duplicated.push(message);
            } else {
                findings.corrupt.push(message);
            }
        }
    }
}

fn strings(arguments: &[&str]) -> Vec<String> {
    arguments
        .iter()
        .map(|argument| argument.to_string())
        .collect()
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Busy-waits: a sleep this short would mostly measure the scheduler.
fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

#[test]
fn killing_the_producer_never_loses_or_duplicates_an_acknowledged_record() {
    let cycles = env_u64("CRASH_CYCLES").unwrap_or(CYCLES_DEFAULT);
    let seed = env_u64("CRASH_SEED").unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("crash: seed={seed} cycles={cycles} (replay with CRASH_SEED={seed})");
    rill_binary(); // built before the clock matters
    let started = Instant::now();
    let mut run = CrashRun {
        seed,
        rng: StdRng::seed_from_u64(seed),
        totals: Totals::default(),
        directory: None,
        cycle: 0,
        plan: None,
    };
    run.run_cycles(cycles);
    let totals = &run.totals;
    eprintln!(
        "crash: {} cycles in {:.1} s; {} killed a few ms after start; {} torn tails cut by recovery; {} records stored without their ack being read; {} resends ({} refused as older than the cached batches)",
        totals.cycles,
        started.elapsed().as_secs_f64(),
        totals.killed_early,
        totals.recovery_cuts,
        totals.stored_unacknowledged,
        totals.resends,
        totals.resends_refused_as_evicted
    );
    println!("{}", totals.summary());
    assert_eq!(
        (totals.lost, totals.duplicated, totals.corrupt),
        (0, 0, 0),
        "seed {seed}"
    );
}
