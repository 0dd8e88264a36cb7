//! `rill`: the command line of an embedded Rill engine on a data directory.
//!
//! Each invocation opens the data directory (taking its lock, so one process at a time),
//! does one thing and shuts the engine down cleanly:
//!
//! ```text
//! rill topic create --data-dir D NAME --partitions N [--if-not-exists]
//! rill topic list   --data-dir D
//! rill produce      --data-dir D --topic T [--partition P] [--key K] [--durability MODE]
//!                   [--idempotent | --producer-id N --epoch E [--first-sequence S]]
//! rill consume      --data-dir D --topic T [--partition P] --from earliest|latest|OFFSET [--to-end]
//! ```
//!
//! Every command also takes `--shards N`.
//!
//! Output is for machines first: `produce` and `consume` print one
//! `partition<TAB>offset<TAB>value` line per record. `produce` prints a line only once the
//! record is acknowledged (as durable as `--durability` promises), in input order, and flushes
//! standard output before it waits for anything, so whatever a caller has read is exactly what
//! was acknowledged.
//!
//! Errors are edges: typed engine errors become one `rill: error: ...` line on standard error
//! and a non-zero exit status (2 for a bad command line, 1 otherwise). Nothing a user can do
//! wrong panics.
//!
//! Threading: the engine's handles are used by the main thread only. `produce` adds one thread
//! that reads standard input, so acknowledgements are printed while input is still awaited
//! (a person typing records sees each ack at once).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use rill::client::Record;
use rill::config::{BATCH_BYTES_MAX, SHARDS_MAX};
use rill::error::{OpenError, SendError, TopicError, TrySendError};
use rill::types::{Epoch, ProducerId, Sequence};
use rill::{Durability, Engine, EngineConfig, Offset, PartitionId, StartPosition, Topic};

/// Exit status for a command line clap could not parse (clap's own convention).
const EXIT_USAGE: u8 = 2;
/// How long the main thread blocks at most before it looks at the signal flag again.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long `produce` waits for an ack before it looks for more input again.
const PRODUCE_ACK_WAIT: Duration = Duration::from_micros(500);
/// Bytes of standard input the reader thread hands over at most in one chunk.
const INPUT_CHUNK_BYTES_MAX: usize = 64 << 10;
/// Chunks of input waiting for the main thread; bounds `produce`'s read-ahead memory to
/// about `INPUT_CHUNKS_MAX * INPUT_CHUNK_BYTES_MAX` plus one line.
const INPUT_CHUNKS_MAX: usize = 16;
/// Longest input line: a longer one can never be a record (its batch would exceed the limit),
/// so the reader refuses it instead of buffering it.
const INPUT_LINE_BYTES_MAX: usize = BATCH_BYTES_MAX;
/// Size of the buffer in front of standard output.
const OUTPUT_BUFFER_BYTES: usize = 64 << 10;

const PRODUCE_ABOUT: &str = "Append one record per line of standard input";
const PRODUCE_LONG_ABOUT: &str = "\
Append one record per line of standard input.

Each line (without its \\n, and without a \\r before it) becomes the value of one record; an
empty line is a record with an empty value; a last line without \\n is a record too.

For every acknowledged record, one line `partition<TAB>offset<TAB>value` is printed to
standard output, in input order, and standard output is flushed before rill waits for
anything. A printed line means the record was stored as --durability promises; a line that was
not printed was not acknowledged.

Records are pipelined: many are in flight at once, and their acks are printed in input order.

If a record fails (or a line is longer than the largest record, 4 MiB), rill prints
`rill: error: line N: ...` to standard error and stops sending: lines not yet handed to the
engine are never sent (the error line names the last line that was), records already in flight
still get their outcome (the acknowledged ones are printed), and rill exits with status 1.
On SIGINT or SIGTERM it stops the same way and exits with status 128 + the signal number.

With --idempotent, rill allocates a producer id never handed out before (epoch 0) and prints
`rill: idempotent producer id=N epoch=0` to standard error before it sends anything. Every
record then carries that id, the epoch and a sequence number per partition: 0, 1, 2, ... in
input order among the records of that partition.

To resend records as the same producer (after a crash, say), pass --producer-id N --epoch E
(rill prints the same identity line) and, for the partition given with --partition, the
sequence of the first line with --first-sequence S; the lines after it get S+1, S+2, ...
A line whose sequence that partition already stored (within the producer's last 5 stored
batches) is acknowledged with its original offset and not appended again; a sequence after a
gap is refused (out of order). Without --first-sequence, sequences start at 0, as a new epoch
must (a higher epoch fences every process still sending with a lower one).";

const CONSUME_ABOUT: &str = "Print the records of a topic";
const CONSUME_LONG_ABOUT: &str = "\
Print the records of a topic, one line `partition<TAB>offset<TAB>value` each (the value as
UTF-8, invalid sequences replaced by U+FFFD; a value holding a newline spans lines).

Without --partition, every partition of the topic is read; records of one partition come in
offset order, partitions interleave.

With --to-end, rill exits (status 0) once every partition read reached the end its log had when
rill started. Without it, rill keeps following the log until SIGINT or SIGTERM, then shuts the
engine down and exits with status 0. (Records can only be appended by the process holding the
data directory, so a following `rill consume` waits for records that no other process can add.)";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "rill",
    version,
    about = "Rill: a partitioned, append-only, replayable log, embedded on a data directory",
    long_about = None,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and list topics.
    #[command(subcommand, arg_required_else_help = true)]
    Topic(TopicCommand),
    #[command(about = PRODUCE_ABOUT, long_about = PRODUCE_LONG_ABOUT)]
    Produce(ProduceArgs),
    #[command(about = CONSUME_ABOUT, long_about = CONSUME_LONG_ABOUT)]
    Consume(ConsumeArgs),
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic (the data directory is created when missing).
    Create(TopicCreateArgs),
    /// Print each topic as `name<TAB>partitions`, sorted by name.
    List(EngineArgs),
}

/// Where the engine runs and how.
#[derive(Debug, Args)]
struct EngineArgs {
    /// The data directory; one process at a time may use it.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Shard threads [default: one per available core].
    #[arg(long, value_name = "N", value_parser = parse_shards)]
    shards: Option<usize>,
}

#[derive(Debug, Args)]
struct TopicCreateArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Topic name: 1 to 249 of [a-zA-Z0-9._-].
    #[arg(value_name = "NAME")]
    name: String,
    /// Number of partitions.
    #[arg(long, value_name = "N")]
    partitions: u32,
    /// Succeed without changing anything when the topic exists already.
    #[arg(long)]
    if_not_exists: bool,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Topic to append to.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Append every record to this partition [default: by key with Kafka's murmur2
    /// partitioner; without a key, round-robin].
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Key of every record (its UTF-8 bytes).
    #[arg(long, value_name = "K")]
    key: Option<String>,
    /// When an ack is sent: buffer (write reached the page cache), interval:MS (as buffer,
    /// plus an fdatasync every MS milliseconds), sync (after fdatasync) [default: buffer].
    #[arg(long, value_name = "MODE", value_parser = Durability::parse)]
    durability: Option<Durability>,
    /// Send as a new idempotent producer: retries are never stored twice. Prints
    /// `rill: idempotent producer id=N epoch=0` to standard error.
    #[arg(long, conflicts_with = "producer_id")]
    idempotent: bool,
    /// Advanced: send as this existing idempotent producer id (with --epoch), to resend
    /// records after a failure without storing them twice.
    #[arg(
        long,
        value_name = "N",
        requires = "epoch",
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    producer_id: Option<i64>,
    /// Advanced: the epoch of --producer-id; a higher epoch than stored fences older ones
    /// and must start at sequence 0.
    #[arg(
        long,
        value_name = "E",
        requires = "producer_id",
        value_parser = clap::value_parser!(i16).range(0..)
    )]
    epoch: Option<i16>,
    /// Advanced: the sequence of the first line in the partition given by --partition (with
    /// --producer-id); later lines follow it [default: 0].
    #[arg(
        long,
        value_name = "S",
        requires_all = ["producer_id", "partition"],
        value_parser = clap::value_parser!(i32).range(0..)
    )]
    first_sequence: Option<i32>,
}

/// The identity `produce` sends with, from `--idempotent` or `--producer-id/--epoch`.
#[derive(Clone, Copy, Debug)]
enum ProducerIdentity {
    /// A plain producer: no producer id, no sequences.
    None,
    /// A producer id allocated now, at epoch 0.
    New,
    /// An existing producer id and epoch; `first_sequence` applies to `--partition`.
    Resume {
        producer: ProducerId,
        epoch: Epoch,
        first_sequence: Option<Sequence>,
    },
}

impl ProduceArgs {
    fn identity(&self) -> ProducerIdentity {
        match (self.idempotent, self.producer_id, self.epoch) {
            (true, _, _) => ProducerIdentity::New,
            (false, Some(producer), Some(epoch)) => ProducerIdentity::Resume {
                producer: ProducerId(producer),
                epoch: Epoch(epoch),
                first_sequence: self.first_sequence.map(Sequence),
            },
            // clap enforces that --producer-id and --epoch come together.
            (false, _, _) => ProducerIdentity::None,
        }
    }
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Topic to read.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Read only this partition [default: every partition].
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Where to start in each partition: earliest, latest (only records appended from now),
    /// or an offset (clamped to the stored range).
    #[arg(
        long,
        value_name = "earliest|latest|OFFSET",
        value_parser = parse_from,
        allow_negative_numbers = true
    )]
    from: StartArgument,
    /// Exit once every partition read reached the end of its log as it was at start.
    #[arg(long)]
    to_end: bool,
}

/// `consume --from`: the [`StartPosition`]s the command line offers.
#[derive(Clone, Copy, Debug)]
enum StartArgument {
    Earliest,
    Latest,
    Offset(i64),
}

impl StartArgument {
    fn start_position(self) -> StartPosition {
        match self {
            StartArgument::Earliest => StartPosition::Earliest,
            StartArgument::Latest => StartPosition::Latest,
            StartArgument::Offset(offset) => StartPosition::Offset(Offset(offset)),
        }
    }
}

fn parse_from(text: &str) -> Result<StartArgument, String> {
    match text {
        "earliest" => Ok(StartArgument::Earliest),
        "latest" => Ok(StartArgument::Latest),
        _ => match text.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(StartArgument::Offset(offset)),
            _ => Err(format!(
                "expected earliest, latest or an offset >= 0, got {text:?}"
            )),
        },
    }
}

fn parse_shards(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(shards) if (1..=SHARDS_MAX).contains(&shards) => Ok(shards),
        _ => Err(format!("expected a number of shards in 1..={SHARDS_MAX}")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_error(error),
    };
    let result = match cli.command {
        Command::Topic(TopicCommand::Create(args)) => topic_create(&args),
        Command::Topic(TopicCommand::List(args)) => topic_list(&args),
        Command::Produce(args) => produce(&args),
        Command::Consume(args) => consume(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` puts the whole chain of causes on one line.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("rill: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go out as clap writes them; a parse error becomes one line, with the usage
/// of the (sub)command appended so the user sees what was expected.
fn command_line_error(error: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ErrorKind};
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
        _ => {}
    }
    let rendered = error.to_string();
    // The message is the first paragraph; tips and usage follow after a blank line.
    let message = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    match error.get(ContextKind::Usage) {
        Some(usage) => {
            let usage = usage.to_string();
            let usage = usage.trim().trim_start_matches("Usage:").trim();
            eprintln!("rill: error: {message} (usage: {usage}; see --help)");
        }
        None => eprintln!("rill: error: {message} (see {} --help)", command_path()),
    }
    ExitCode::from(EXIT_USAGE)
}

/// `rill` and the subcommands named on the command line, e.g. `rill topic create`.
fn command_path() -> String {
    const SUBCOMMANDS: [&str; 5] = ["topic", "create", "list", "produce", "consume"];
    let mut path = vec!["rill".to_string()];
    path.extend(
        std::env::args()
            .skip(1)
            .take_while(|argument| SUBCOMMANDS.contains(&argument.as_str())),
    );
    path.join(" ")
}

/// Opens the engine. Only `topic create` may create the data directory: for every other
/// command a missing directory is almost certainly a typo, and creating it would hide that.
fn open_engine(
    args: &EngineArgs,
    durability: Option<Durability>,
    create_directory: bool,
) -> anyhow::Result<Engine> {
    let directory = &args.data_dir;
    if !create_directory && !directory.is_dir() {
        bail!(
            "data directory {} does not exist; create a topic in it with: rill topic create --data-dir {} NAME --partitions N",
            directory.display(),
            directory.display()
        );
    }
    let mut config = EngineConfig::new(directory);
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    if let Some(durability) = durability {
        config.durability = durability;
    }
    Engine::open(config).map_err(|error| match error {
        OpenError::Locked { path, .. } => anyhow!(
            "data directory {} is in use by another process (a rill command or an application embedding Rill); only one process may use it at a time",
            path.display()
        ),
        other => anyhow!(other),
    })
}

/// The topic called `name`, or an error that says how to create it.
fn find_topic(engine: &Engine, data_dir: &Path, name: &str) -> anyhow::Result<Topic> {
    engine.topic(name).map_err(|_| {
        let known: Vec<String> = engine
            .topics()
            .iter()
            .map(|topic| topic.name().to_string())
            .collect();
        let known = if known.is_empty() {
            "it has no topics".to_string()
        } else {
            format!("its topics: {}", known.join(", "))
        };
        anyhow!(
            "unknown topic {name:?} in {} ({known}); create it with: rill topic create --data-dir {} {name} --partitions N",
            data_dir.display(),
            data_dir.display()
        )
    })
}

/// Checks `--partition` against the topic.
fn check_partition(topic: &Topic, partition: u32) -> anyhow::Result<PartitionId> {
    let partitions = topic.partitions();
    if partition >= partitions {
        bail!(
            "topic {:?} has no partition {partition}: its partitions are 0..={}",
            topic.name(),
            partitions - 1
        );
    }
    Ok(PartitionId(partition as i32))
}

fn topic_create(args: &TopicCreateArgs) -> anyhow::Result<ExitCode> {
    let engine = open_engine(&args.engine, None, true)?;
    let data_dir = args.engine.data_dir.display();
    match engine.create_topic(&args.name, args.partitions) {
        Ok(topic) => {
            println!(
                "created topic {} with {} partitions in {data_dir}",
                topic.name(),
                topic.partitions()
            );
        }
        Err(TopicError::AlreadyExists(_)) if args.if_not_exists => {
            let topic = engine.topic(&args.name)?;
            if topic.partitions() != args.partitions {
                eprintln!(
                    "rill: note: topic {} exists with {} partitions, not {}; left unchanged",
                    topic.name(),
                    topic.partitions(),
                    args.partitions
                );
            }
        }
        Err(TopicError::AlreadyExists(name)) => {
            bail!(
                "topic {name:?} already exists in {data_dir} (pass --if-not-exists to accept that)"
            )
        }
        Err(error) => return Err(error.into()),
    }
    engine.shutdown();
    Ok(ExitCode::SUCCESS)
}

fn topic_list(args: &EngineArgs) -> anyhow::Result<ExitCode> {
    let engine = open_engine(args, None, false)?;
    let mut out = io::stdout().lock();
    for topic in engine.topics() {
        match writeln!(out, "{}\t{}", topic.name(), topic.partitions()) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => break,
            other => other.context("writing to standard output")?,
        }
    }
    match out.flush() {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to standard output")?,
    }
    engine.shutdown();
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Signals.

/// The first SIGINT or SIGTERM received, 0 before. Written by the handler only.
static SIGNAL_RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: a lock-free atomic store, and `signal` (listed as
    // async-signal-safe by POSIX) so that a second Ctrl-C kills a shutdown that hangs.
    SIGNAL_RECEIVED.store(signal, Ordering::Relaxed);
    // SAFETY: resetting a disposition to SIG_DFL has no memory-safety requirements.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Routes SIGINT and SIGTERM to [`SIGNAL_RECEIVED`] so the main loop can stop and shut the
/// engine down instead of dying with records in flight.
fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is an `extern "C"` function that only performs
        // async-signal-safe operations, as a signal handler must.
        let previous = unsafe { libc::signal(signal, handler) };
        assert_ne!(
            previous,
            libc::SIG_ERR,
            "SIGINT and SIGTERM are valid signals"
        );
    }
}

fn signal_received() -> Option<i32> {
    match SIGNAL_RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

// ---------------------------------------------------------------------------------------------
// produce

/// What the input thread hands the main thread.
#[derive(Debug)]
enum Input {
    /// Complete lines, newline removed, in input order.
    Lines(Vec<Bytes>),
    /// Standard input ended (after the last `Lines`).
    End,
    /// Reading failed; nothing follows.
    Failed(String),
}

/// Reads standard input in chunks and splits it into lines, so the main thread never blocks
/// on a read while acks wait to be printed.
fn spawn_input_reader(sender: Sender<Input>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("rill-stdin".into())
        .spawn(move || {
            let message = match read_lines(&sender) {
                Ok(()) => Input::End,
                Err(error) => Input::Failed(error),
            };
            // The main thread may have stopped listening (a failed record); that is fine.
            let _ = sender.send(message);
        })
        .map(|_| ())
}

/// Sends the lines of standard input; `Err` describes why reading stopped early.
fn read_lines(sender: &Sender<Input>) -> Result<(), String> {
    let mut stdin = io::stdin().lock();
    let mut chunk = vec![0u8; INPUT_CHUNK_BYTES_MAX];
    // The start of a line whose newline has not been read yet.
    let mut partial: Vec<u8> = Vec::new();
    let mut line_number: u64 = 0;
    loop {
        let read = match stdin.read(&mut chunk) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("reading standard input: {error}")),
        };
        if read == 0 {
            if !partial.is_empty() {
                let line = Bytes::from(std::mem::take(&mut partial));
                if sender
                    .send(Input::Lines(vec![trim_line_end(line)]))
                    .is_err()
                {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let mut lines = Vec::new();
        let mut rest = &chunk[..read];
        while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
            line_number += 1;
            let line = if partial.is_empty() {
                Bytes::copy_from_slice(&rest[..newline])
            } else {
                partial.extend_from_slice(&rest[..newline]);
                Bytes::from(std::mem::take(&mut partial))
            };
            lines.push(trim_line_end(line));
            rest = &rest[newline + 1..];
        }
        partial.extend_from_slice(rest);
        if partial.len() > INPUT_LINE_BYTES_MAX {
            // Hand over the lines before it, then refuse it.
            let _ = sender.send(Input::Lines(lines));
            return Err(format!(
                "line {} is longer than the largest record ({INPUT_LINE_BYTES_MAX} bytes)",
                line_number + 1
            ));
        }
        if !lines.is_empty() && sender.send(Input::Lines(lines)).is_err() {
            return Ok(()); // the main thread stopped
        }
    }
}

/// Drops the `\r` of a `\r\n` line end, as Kafka's console producer does.
fn trim_line_end(line: Bytes) -> Bytes {
    match line.last() {
        Some(b'\r') => line.slice(..line.len() - 1),
        _ => line,
    }
}

/// A record handed to the engine, waiting for its outcome to be printed in input order.
#[derive(Debug)]
struct InFlight {
    line_number: u64,
    value: Bytes,
    /// `None` until its ack arrives.
    outcome: Option<Result<(PartitionId, Offset), SendError>>,
}

/// The records sent and not yet printed, in ticket order. Tickets count up by one per
/// record sent, so the record of ticket `t` sits at `t - first_ticket`.
#[derive(Debug, Default)]
struct InFlightQueue {
    first_ticket: u64,
    records: VecDeque<InFlight>,
}

impl InFlightQueue {
    fn push(&mut self, ticket: u64, record: InFlight) {
        assert_eq!(
            ticket,
            self.first_ticket + self.records.len() as u64,
            "tickets count up by one per record sent"
        );
        self.records.push_back(record);
    }

    fn resolve(&mut self, ticket: u64, outcome: Result<(PartitionId, Offset), SendError>) {
        assert!(
            ticket >= self.first_ticket,
            "ticket {ticket} resolved twice"
        );
        let index = (ticket - self.first_ticket) as usize;
        let record = self
            .records
            .get_mut(index)
            .expect("an outcome names a record that was sent");
        assert!(record.outcome.is_none(), "ticket {ticket} resolved twice");
        record.outcome = Some(outcome);
    }

    /// The oldest record if its outcome arrived.
    fn pop_resolved(&mut self) -> Option<InFlight> {
        if self.records.front()?.outcome.is_some() {
            self.first_ticket += 1;
            self.records.pop_front()
        } else {
            None
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Why `produce` stopped taking input before its end.
#[derive(Debug)]
enum Stop {
    /// A record failed, or input could not be read.
    Failed,
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// Standard output is gone: acks can no longer be reported.
    OutputClosed,
}

fn produce(args: &ProduceArgs) -> anyhow::Result<ExitCode> {
    let engine = open_engine(&args.engine, args.durability, false)?;
    let topic = find_topic(&engine, &args.engine.data_dir, &args.topic)?;
    let partition = args
        .partition
        .map(|partition| check_partition(&topic, partition))
        .transpose()?;
    let key = args.key.as_ref().map(|key| Bytes::from(key.clone()));
    install_signal_handlers();
    let (sender, receiver) = crossbeam_channel::bounded(INPUT_CHUNKS_MAX);
    spawn_input_reader(sender).context("starting the input thread")?;
    let stop = {
        let mut producer = match args.identity() {
            ProducerIdentity::None => engine.producer(),
            ProducerIdentity::New => engine
                .idempotent_producer()
                .context("allocating an idempotent producer id")?,
            ProducerIdentity::Resume {
                producer,
                epoch,
                first_sequence,
            } => {
                let mut handle = engine.resume_producer(producer, epoch);
                if let (Some(sequence), Some(partition)) = (first_sequence, partition) {
                    handle.set_next_sequence(&topic, partition, sequence);
                }
                handle
            }
        };
        if let Some((producer, epoch)) = producer.identity() {
            // Before anything is sent, so a caller that kills rill later knows the identity
            // to resend with.
            eprintln!(
                "rill: idempotent producer id={} epoch={}",
                producer.0, epoch.0
            );
        }
        let mut run = ProduceRun {
            topic: &topic,
            partition,
            key,
            producer: &mut producer,
            input: receiver,
            unsent: VecDeque::new(),
            lines_read: 0,
            last_sent_line: 0,
            in_flight: InFlightQueue::default(),
            out: io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, io::stdout().lock()),
            stop: None,
        };
        run.run();
        run.stop
    };
    engine.shutdown();
    Ok(match stop {
        None => ExitCode::SUCCESS,
        Some(Stop::Failed) => ExitCode::FAILURE,
        Some(Stop::Signal(signal)) => ExitCode::from(128u8.saturating_add(signal as u8)),
        Some(Stop::OutputClosed) => {
            eprintln!(
                "rill: error: standard output was closed; stopped reading input because acknowledgements could not be reported"
            );
            ExitCode::FAILURE
        }
    })
}

/// The state of one `produce` run; see [`PRODUCE_LONG_ABOUT`] for the contract.
struct ProduceRun<'a> {
    topic: &'a Topic,
    partition: Option<PartitionId>,
    key: Option<Bytes>,
    producer: &'a mut rill::Producer,
    input: Receiver<Input>,
    /// Lines read and not yet accepted by the engine (backpressure), with line numbers.
    unsent: VecDeque<(u64, Bytes)>,
    lines_read: u64,
    /// Line number of the last record handed to the engine; 0 before the first.
    last_sent_line: u64,
    in_flight: InFlightQueue,
    out: io::BufWriter<io::StdoutLock<'static>>,
    /// Set once no more input will be sent; the run ends when nothing is in flight.
    stop: Option<Stop>,
}

impl ProduceRun<'_> {
    fn run(&mut self) {
        let mut input_ended = false;
        loop {
            self.collect_outcomes();
            self.print_resolved();
            if self.stop.is_none() {
                if let Some(signal) = signal_received() {
                    eprintln!(
                        "rill: interrupted by signal {signal}; input after line {} was not sent",
                        self.last_sent_line
                    );
                    self.stop_sending(Stop::Signal(signal));
                }
            }
            if self.stop.is_none() {
                self.send_unsent();
            }
            let finished_sending = self.stop.is_some() || input_ended;
            if finished_sending && self.unsent.is_empty() && self.in_flight.is_empty() {
                return;
            }
            if !finished_sending && self.unsent.is_empty() {
                // Block on input only when no ack is awaited; otherwise just look.
                let received = if self.in_flight.is_empty() {
                    match self.input.recv_timeout(SIGNAL_CHECK_INTERVAL) {
                        Ok(input) => Some(input),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Input::End),
                    }
                } else {
                    match self.input.try_recv() {
                        Ok(input) => Some(input),
                        Err(TryRecvError::Empty) => None,
                        Err(TryRecvError::Disconnected) => Some(Input::End),
                    }
                };
                match received {
                    Some(Input::Lines(lines)) => {
                        for line in lines {
                            self.lines_read += 1;
                            self.unsent.push_back((self.lines_read, line));
                        }
                        continue;
                    }
                    Some(Input::End) => {
                        input_ended = true;
                        continue;
                    }
                    Some(Input::Failed(message)) => {
                        eprintln!(
                            "rill: error: {message}; stopped reading input (input after line {} was not sent)",
                            self.last_sent_line
                        );
                        self.stop_sending(Stop::Failed);
                        continue;
                    }
                    None => {}
                }
            }
            if !self.in_flight.is_empty() {
                // Backpressure, no input ready, or draining: wait for an ack.
                if let Some(outcome) = self.producer.wait_outcome(PRODUCE_ACK_WAIT) {
                    let result = outcome.result.map(|offset| (outcome.partition, offset));
                    self.in_flight.resolve(outcome.ticket.0, result);
                }
            }
        }
    }

    /// Stops taking input; records in flight still get their outcome printed.
    fn stop_sending(&mut self, stop: Stop) {
        if self.stop.is_none() {
            self.stop = Some(stop);
        }
        self.unsent.clear();
    }

    fn collect_outcomes(&mut self) {
        while let Some(outcome) = self.producer.poll_outcome() {
            let result = outcome.result.map(|offset| (outcome.partition, offset));
            self.in_flight.resolve(outcome.ticket.0, result);
        }
    }

    /// Hands unsent lines to the engine until it pushes back.
    fn send_unsent(&mut self) {
        while let Some((line_number, value)) = self.unsent.pop_front() {
            let mut record = Record::new(value.clone());
            if let Some(key) = &self.key {
                record = record.key(key.clone());
            }
            if let Some(partition) = self.partition {
                record = record.partition(partition);
            }
            match self.producer.try_send(self.topic, record) {
                Ok(ticket) => {
                    self.last_sent_line = line_number;
                    self.in_flight.push(
                        ticket.0,
                        InFlight {
                            line_number,
                            value,
                            outcome: None,
                        },
                    );
                }
                Err(TrySendError::Full(_)) => {
                    self.unsent.push_front((line_number, value));
                    return;
                }
                Err(TrySendError::Send(error)) => {
                    eprintln!(
                        "rill: error: line {line_number}: {error}; stopped reading input (line {line_number} and later were not sent)"
                    );
                    self.stop_sending(Stop::Failed);
                    return;
                }
            }
        }
    }

    /// Prints every record at the front whose outcome arrived, then flushes.
    fn print_resolved(&mut self) {
        let mut printed = false;
        while let Some(record) = self.in_flight.pop_resolved() {
            match record.outcome.expect("popped records are resolved") {
                Ok((partition, offset)) => {
                    if matches!(self.stop, Some(Stop::OutputClosed)) {
                        continue;
                    }
                    let written = write!(self.out, "{partition}\t{offset}\t")
                        .and_then(|()| self.out.write_all(&record.value))
                        .and_then(|()| self.out.write_all(b"\n"));
                    if let Err(error) = written {
                        self.output_failed(&error);
                    }
                    printed = true;
                }
                Err(error) => {
                    let first = self.stop.is_none();
                    let line_number = record.line_number;
                    if first {
                        eprintln!(
                            "rill: error: line {line_number}: {error}; stopped reading input (input after line {} was not sent)",
                            self.last_sent_line
                        );
                    } else {
                        eprintln!("rill: error: line {line_number}: {error}");
                    }
                    self.stop_sending(Stop::Failed);
                }
            }
        }
        if printed && !matches!(self.stop, Some(Stop::OutputClosed)) {
            if let Err(error) = self.out.flush() {
                self.output_failed(&error);
            }
        }
    }

    fn output_failed(&mut self, error: &io::Error) {
        if error.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("rill: error: writing to standard output: {error}");
        }
        // Reporting is what `produce` promises; without it, stop (overriding other reasons).
        self.stop = Some(Stop::OutputClosed);
        self.unsent.clear();
    }
}

impl std::fmt::Debug for ProduceRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProduceRun")
            .field("topic", &self.topic.name())
            .field("lines_read", &self.lines_read)
            .field("unsent", &self.unsent.len())
            .field("in_flight", &self.in_flight.records.len())
            .field("stop", &self.stop)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// consume

/// One partition being read.
#[derive(Debug)]
struct Reading {
    partition: PartitionId,
    /// With `--to-end`: the log's end when `consume` started; records from it on are not
    /// printed.
    end_offset: Option<i64>,
    /// Reached `end_offset` (never true without `--to-end`).
    done: bool,
}

fn consume(args: &ConsumeArgs) -> anyhow::Result<ExitCode> {
    let engine = open_engine(&args.engine, None, false)?;
    let topic = find_topic(&engine, &args.engine.data_dir, &args.topic)?;
    let partitions: Vec<PartitionId> = match args.partition {
        Some(partition) => vec![check_partition(&topic, partition)?],
        None => (0..topic.partitions() as i32).map(PartitionId).collect(),
    };
    install_signal_handlers();
    let mut consumer = engine.consumer();
    // The ends first: nothing else appends while this process holds the data directory, so
    // they are the ends at start whichever order the subscriptions are made in.
    let mut ends = Vec::with_capacity(partitions.len());
    if args.to_end {
        for &partition in &partitions {
            let (probe, end) = consumer
                .subscribe(&topic, partition, StartPosition::Latest)
                .with_context(|| format!("finding the end of partition {partition}"))?;
            consumer.unsubscribe(probe);
            ends.push(Some(end.0));
        }
    } else {
        ends.resize(partitions.len(), None);
    }
    // Indexed by `SubscriptionId`; the probes above hold `None`.
    let mut readings: Vec<Option<Reading>> = Vec::new();
    let mut remaining = 0usize;
    for (&partition, &end_offset) in partitions.iter().zip(&ends) {
        let (subscription, start) = consumer
            .subscribe(&topic, partition, args.from.start_position())
            .with_context(|| format!("subscribing to partition {partition}"))?;
        let done = end_offset.is_some_and(|end| start.0 >= end);
        if done {
            consumer.unsubscribe(subscription);
        } else {
            remaining += 1;
        }
        let index = subscription.0 as usize;
        if readings.len() <= index {
            readings.resize_with(index + 1, || None);
        }
        readings[index] = Some(Reading {
            partition,
            end_offset,
            done,
        });
    }
    let mut out = io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, io::stdout().lock());
    let result = follow(
        &mut consumer,
        &mut readings,
        &mut remaining,
        args.to_end,
        &mut out,
    );
    drop(consumer);
    engine.shutdown();
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(anyhow!(error).context("writing to standard output")),
    }
}

/// Prints records until every reading is done (`--to-end`) or a signal arrives.
fn follow(
    consumer: &mut rill::Consumer,
    readings: &mut [Option<Reading>],
    remaining: &mut usize,
    to_end: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    loop {
        if (to_end && *remaining == 0) || signal_received().is_some() {
            return out.flush();
        }
        while let Some(record) = consumer.try_poll() {
            print_record(record, consumer, readings, remaining, out)?;
            if to_end && *remaining == 0 {
                return out.flush();
            }
        }
        // Nothing ready: show what was printed before waiting.
        out.flush()?;
        if let Some(record) = consumer.poll(SIGNAL_CHECK_INTERVAL) {
            print_record(record, consumer, readings, remaining, out)?;
        }
    }
}

/// Prints one record unless it lies past its partition's end; marks the partition done at
/// its end.
fn print_record(
    record: rill::ConsumerRecord,
    consumer: &mut rill::Consumer,
    readings: &mut [Option<Reading>],
    remaining: &mut usize,
    out: &mut impl Write,
) -> io::Result<()> {
    let Some(Some(reading)) = readings.get_mut(record.subscription.0 as usize) else {
        return Ok(()); // a probe's record: not ours to print
    };
    if reading.done {
        return Ok(());
    }
    assert_eq!(
        record.partition, reading.partition,
        "a subscription reads one partition"
    );
    if reading.end_offset.is_some_and(|end| record.offset.0 >= end) {
        return Ok(());
    }
    write!(out, "{}\t{}\t", record.partition, record.offset)?;
    out.write_all(String::from_utf8_lossy(&record.value).as_bytes())?;
    out.write_all(b"\n")?;
    if reading
        .end_offset
        .is_some_and(|end| record.offset.0 + 1 >= end)
    {
        reading.done = true;
        *remaining -= 1;
        consumer.unsubscribe(record.subscription);
    }
    Ok(())
}
