//! The `rill` binary end to end, run as a user runs it: real processes on a temporary data
//! directory, checked by their exact output lines and exit statuses.
//!
//! Finding the binary: a test of another package gets no `CARGO_BIN_EXE_rill`, so the first
//! test to need it runs `cargo build -p rill --bin rill` once (with the cargo, target directory
//! and profile of the running test), which is a no-op when `cargo test --workspace` built it
//! already, and rebuilds it when only this package was asked for (`cargo test -p rill-tests`)
//! so a stale binary is never tested. Set `RILL_BIN` to test a binary built elsewhere.
//!
//! Every process gets `--shards 2` to keep the thread count low however many tests run at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rill::partitioner::partition_for_key;
use rill_tests::rill_binary;

/// Longest a `rill` process may run in these tests before it is killed as hung.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished `rill` process left behind.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// Asserts success and returns standard output.
    fn ok(self) -> String {
        assert!(
            self.status.success(),
            "rill failed with {}; stderr:\n{}",
            self.status,
            self.stderr
        );
        self.stdout
    }

    /// Asserts a failure reported as exactly one `rill: error:` line; returns that line.
    fn one_error_line(self) -> String {
        assert!(
            !self.status.success(),
            "rill should have failed; stdout:\n{}",
            self.stdout
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got:\n{}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("rill: error: "),
            "error line {:?} lacks the rill: error: prefix",
            lines[0]
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        lines[0].to_string()
    }
}

fn rill_command(data_dir: &Path, arguments: &[&str]) -> Command {
    let mut command = Command::new(rill_binary());
    command
        .args(arguments)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--shards", "2"])
        .env("RUST_BACKTRACE", "1");
    command
}

/// Runs `rill ARGUMENTS --data-dir DATA_DIR --shards 2` with `input` on standard input.
fn rill_with_input(data_dir: &Path, arguments: &[&str], input: &[u8]) -> Outcome {
    let child = rill_command(data_dir, arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill starts");
    finish(child, input.to_vec())
}

/// Runs `rill ARGUMENTS --data-dir DATA_DIR --shards 2` with empty standard input.
fn rill(data_dir: &Path, arguments: &[&str]) -> Outcome {
    rill_with_input(data_dir, arguments, b"")
}

/// Feeds `input`, collects the output, and kills the process if it outlives the timeout.
fn finish(mut child: Child, input: Vec<u8>) -> Outcome {
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        // A process that exits early closes the pipe; that is its business, not an error here.
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
    let status = wait_with_timeout(&mut child);
    writer.join().expect("stdin writer");
    Outcome {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).expect("reading a pipe");
        String::from_utf8(bytes).expect("rill prints UTF-8")
    })
}

fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for rill") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rill ran longer than {PROCESS_TIMEOUT:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn create_topic(data_dir: &Path, name: &str, partitions: u32) {
    rill(
        data_dir,
        &[
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ],
    )
    .ok();
}

/// `partition\toffset\tvalue\n` lines.
fn lines(records: &[(u32, i64, &str)]) -> String {
    records
        .iter()
        .map(|(partition, offset, value)| format!("{partition}\t{offset}\t{value}\n"))
        .collect()
}

/// Parses `partition\toffset\tvalue` lines.
fn parse_lines(text: &str) -> Vec<(u32, i64, String)> {
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let partition = fields.next().unwrap().parse().expect("partition");
            let offset = fields
                .next()
                .expect("offset field")
                .parse()
                .expect("offset");
            let value = fields.next().expect("value field").to_string();
            (partition, offset, value)
        })
        .collect()
}

/// Sends `signal` (e.g. "TERM") to a process; the tests crate has no libc of its own.
fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

/// A `rill consume` without `--to-end`, running until it is signalled.
struct Follower {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Follower {
    /// Starts following `topic` from the earliest record.
    fn start(data_dir: &Path, topic: &str) -> Follower {
        let mut child = rill_command(
            data_dir,
            &["consume", "--topic", topic, "--from", "earliest"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Follower { child, stdout }
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the follower prints");
        line
    }

    /// Sends `signal` and waits for the process to exit; returns the rest of its output.
    fn stop(mut self, signal: &str) -> Outcome {
        send_signal(&self.child, signal);
        let status = wait_with_timeout(&mut self.child);
        let mut stdout = String::new();
        self.stdout.read_to_string(&mut stdout).unwrap();
        let mut stderr = String::new();
        let mut pipe = self.child.stderr.take().expect("piped stderr");
        pipe.read_to_string(&mut stderr).unwrap();
        Outcome {
            status,
            stdout,
            stderr,
        }
    }
}

#[test]
fn created_topics_are_listed_by_name_with_their_partition_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let created = rill(&data, &["topic", "create", "orders", "--partitions", "3"]).ok();
    assert!(created.contains("orders"), "{created}");
    create_topic(&data, "audit", 1);
    let listed = rill(&data, &["topic", "list"]).ok();
    assert_eq!(listed, "audit\t1\norders\t3\n");
}

#[test]
fn creating_an_existing_topic_fails_unless_if_not_exists_is_given() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 3);
    let error = rill(
        dir.path(),
        &["topic", "create", "orders", "--partitions", "3"],
    )
    .one_error_line();
    assert!(error.contains("already exists"), "{error}");
    rill(
        dir.path(),
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--if-not-exists",
        ],
    )
    .ok();
    assert_eq!(rill(dir.path(), &["topic", "list"]).ok(), "orders\t3\n");
}

#[test]
fn produced_lines_are_acknowledged_and_consumed_back_as_partition_offset_value_lines() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 3);
    let acks = rill_with_input(
        dir.path(),
        &["produce", "--topic", "orders", "--partition", "1"],
        b"first\nsecond with spaces\n\nlast without newline",
    )
    .ok();
    let expected = lines(&[
        (1, 0, "first"),
        (1, 1, "second with spaces"),
        (1, 2, ""),
        (1, 3, "last without newline"),
    ]);
    assert_eq!(acks, expected);
    let one_partition = rill(
        dir.path(),
        &[
            "consume",
            "--topic",
            "orders",
            "--partition",
            "1",
            "--from",
            "earliest",
            "--to-end",
        ],
    )
    .ok();
    assert_eq!(one_partition, expected);
    let all_partitions = rill(
        dir.path(),
        &[
            "consume", "--topic", "orders", "--from", "earliest", "--to-end",
        ],
    )
    .ok();
    assert_eq!(all_partitions, expected);
}

#[test]
fn keyed_records_land_on_the_partition_kafkas_murmur2_partitioner_picks() {
    let dir = tempfile::tempdir().unwrap();
    let partitions = 7;
    create_topic(dir.path(), "users", partitions);
    for key in ["21", "foobar", "alice", "bob", "a-little-bit-long-string"] {
        let acks = rill_with_input(
            dir.path(),
            &["produce", "--topic", "users", "--key", key],
            format!("value of {key}\n").as_bytes(),
        )
        .ok();
        let records = parse_lines(&acks);
        assert_eq!(records.len(), 1, "{acks}");
        let expected = partition_for_key(key.as_bytes(), partitions);
        assert_eq!(records[0].0, expected, "key {key:?}");
        assert_eq!(records[0].2, format!("value of {key}"));
    }
}

#[test]
fn unkeyed_records_without_a_partition_spread_over_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "spread", 3);
    let input: String = (0..30).map(|i| format!("v{i}\n")).collect();
    let acks = parse_lines(
        &rill_with_input(
            dir.path(),
            &["produce", "--topic", "spread"],
            input.as_bytes(),
        )
        .ok(),
    );
    for partition in 0..3 {
        let offsets: Vec<i64> = acks
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, offset, _)| *offset)
            .collect();
        assert!(!offsets.is_empty(), "partition {partition} got no record");
        let contiguous: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, contiguous, "partition {partition}");
    }
}

#[test]
fn pipelined_produce_prints_every_ack_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "bulk", 4);
    let count = 50_000;
    let input: String = (0..count).map(|i| format!("record-{i}\n")).collect();
    let acks = parse_lines(
        &rill_with_input(
            dir.path(),
            &["produce", "--topic", "bulk"],
            input.as_bytes(),
        )
        .ok(),
    );
    assert_eq!(acks.len(), count);
    let mut next_offset = [0i64; 4];
    for (i, (partition, offset, value)) in acks.iter().enumerate() {
        assert_eq!(value, &format!("record-{i}"), "acks follow input order");
        assert_eq!(
            *offset, next_offset[*partition as usize],
            "offsets are contiguous"
        );
        next_offset[*partition as usize] += 1;
    }
    let mut consumed = parse_lines(
        &rill(
            dir.path(),
            &[
                "consume", "--topic", "bulk", "--from", "earliest", "--to-end",
            ],
        )
        .ok(),
    );
    let mut acknowledged = acks;
    consumed.sort();
    acknowledged.sort();
    assert_eq!(consumed, acknowledged);
}

#[test]
fn consume_from_an_offset_starts_at_that_offset() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 1);
    rill_with_input(
        dir.path(),
        &["produce", "--topic", "orders"],
        b"a\nb\nc\nd\ne\n",
    )
    .ok();
    let from_three = rill(
        dir.path(),
        &["consume", "--topic", "orders", "--from", "3", "--to-end"],
    )
    .ok();
    assert_eq!(from_three, lines(&[(0, 3, "d"), (0, 4, "e")]));
    let past_the_end = rill(
        dir.path(),
        &["consume", "--topic", "orders", "--from", "99", "--to-end"],
    )
    .ok();
    assert_eq!(
        past_the_end, "",
        "an offset past the end is clamped to the end"
    );
}

#[test]
fn consume_to_end_exits_at_once_when_there_is_nothing_to_read() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "empty", 3);
    let started = Instant::now();
    let empty = rill(
        dir.path(),
        &[
            "consume", "--topic", "empty", "--from", "earliest", "--to-end",
        ],
    )
    .ok();
    assert_eq!(empty, "");
    create_topic(dir.path(), "full", 2);
    rill_with_input(dir.path(), &["produce", "--topic", "full"], b"x\ny\nz\n").ok();
    let latest = rill(
        dir.path(),
        &["consume", "--topic", "full", "--from", "latest", "--to-end"],
    )
    .ok();
    assert_eq!(latest, "", "from latest, the end is already reached");
    assert!(
        started.elapsed() < PROCESS_TIMEOUT,
        "--to-end must not wait for records"
    );
}

#[test]
fn unknown_topic_is_one_clear_error_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 1);
    let consume = rill(
        dir.path(),
        &[
            "consume", "--topic", "missing", "--from", "earliest", "--to-end",
        ],
    )
    .one_error_line();
    assert!(consume.contains("unknown topic \"missing\""), "{consume}");
    assert!(consume.contains("rill topic create"), "{consume}");
    let produce =
        rill_with_input(dir.path(), &["produce", "--topic", "missing"], b"x\n").one_error_line();
    assert!(produce.contains("unknown topic \"missing\""), "{produce}");
}

#[test]
fn a_missing_data_directory_is_reported_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let error = rill(&missing, &["topic", "list"]).one_error_line();
    assert!(error.contains("does not exist"), "{error}");
    assert!(!missing.exists());
}

#[test]
fn invalid_durability_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 1);
    for durability in ["fast", "interval:", "interval:0", "interval:soon"] {
        let outcome = rill_with_input(
            dir.path(),
            &["produce", "--topic", "orders", "--durability", durability],
            b"never sent\n",
        );
        assert_eq!(outcome.status.code(), Some(2), "a command-line error");
        assert_eq!(outcome.stdout, "");
        let error = outcome.one_error_line();
        assert!(error.contains("durability"), "{error}");
    }
    let consumed = rill(
        dir.path(),
        &[
            "consume", "--topic", "orders", "--from", "earliest", "--to-end",
        ],
    )
    .ok();
    assert_eq!(consumed, "", "nothing was produced");
}

#[test]
fn bad_arguments_are_one_line_with_the_usage() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 2);
    let missing_topic = rill(dir.path(), &["produce"]);
    assert_eq!(missing_topic.status.code(), Some(2));
    let error = missing_topic.one_error_line();
    assert!(error.contains("--topic"), "{error}");
    let bad_from = rill(
        dir.path(),
        &["consume", "--topic", "orders", "--from", "-1"],
    );
    assert_eq!(bad_from.status.code(), Some(2));
    let error = bad_from.one_error_line();
    assert!(error.contains("--from"), "{error}");
    let error = rill_with_input(
        dir.path(),
        &["produce", "--topic", "orders", "--partition", "2"],
        b"x\n",
    )
    .one_error_line();
    assert!(error.contains("no partition 2"), "{error}");
    let zero_shards = Command::new(rill_binary())
        .args(["topic", "list", "--shards", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("rill runs");
    let outcome = Outcome {
        status: zero_shards.status,
        stdout: String::from_utf8(zero_shards.stdout).unwrap(),
        stderr: String::from_utf8(zero_shards.stderr).unwrap(),
    };
    let error = outcome.one_error_line();
    assert!(error.contains("shards"), "{error}");
}

#[test]
fn a_second_process_is_refused_while_the_first_holds_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "orders", 1);
    rill_with_input(dir.path(), &["produce", "--topic", "orders"], b"held\n").ok();
    // A following consumer holds the data directory until it is told to stop; its first
    // line says it has the engine open.
    let mut follower = Follower::start(dir.path(), "orders");
    assert_eq!(follower.read_line(), "0\t0\theld\n");

    let error = rill(dir.path(), &["topic", "list"]).one_error_line();
    assert!(error.contains("in use by another process"), "{error}");
    let error = rill_with_input(dir.path(), &["produce", "--topic", "orders"], b"refused\n")
        .one_error_line();
    assert!(error.contains("in use by another process"), "{error}");

    let stopped = follower.stop("TERM");
    assert!(
        stopped.status.success(),
        "SIGTERM stops a follower cleanly: {}; {}",
        stopped.status,
        stopped.stderr
    );
    assert_eq!(stopped.stderr, "");
    assert_eq!(
        stopped.stdout, "",
        "nothing was produced while the follower ran"
    );

    // Released: the next process gets the data directory.
    assert_eq!(rill(dir.path(), &["topic", "list"]).ok(), "orders\t1\n");
}

#[test]
fn sigint_stops_a_following_consumer_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "quiet", 2);
    rill_with_input(
        dir.path(),
        &["produce", "--topic", "quiet", "--partition", "1"],
        b"only\n",
    )
    .ok();
    let mut follower = Follower::start(dir.path(), "quiet");
    assert_eq!(follower.read_line(), "1\t0\tonly\n");
    let stopped = follower.stop("INT");
    assert!(
        stopped.status.success(),
        "{}: {}",
        stopped.status,
        stopped.stderr
    );
    assert_eq!(stopped.stderr, "");
    assert_eq!(stopped.stdout, "");
}

#[test]
fn records_produced_with_sync_durability_are_acknowledged_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "ledger", 2);
    for durability in ["sync", "interval:5", "buffer"] {
        let input = format!("{durability}-1\n{durability}-2\n");
        rill_with_input(
            dir.path(),
            &[
                "produce",
                "--topic",
                "ledger",
                "--partition",
                "0",
                "--durability",
                durability,
            ],
            input.as_bytes(),
        )
        .ok();
    }
    let consumed = rill(
        dir.path(),
        &[
            "consume", "--topic", "ledger", "--from", "earliest", "--to-end",
        ],
    )
    .ok();
    assert_eq!(
        consumed,
        lines(&[
            (0, 0, "sync-1"),
            (0, 1, "sync-2"),
            (0, 2, "interval:5-1"),
            (0, 3, "interval:5-2"),
            (0, 4, "buffer-1"),
            (0, 5, "buffer-2"),
        ])
    );
}

#[test]
fn consume_after_restart_sees_everything_produced_by_earlier_processes() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "events", 3);
    let mut acknowledged = Vec::new();
    for run in 0..4 {
        let input: String = (0..25).map(|i| format!("run{run}-{i}\n")).collect();
        let acks = rill_with_input(
            dir.path(),
            &["produce", "--topic", "events"],
            input.as_bytes(),
        )
        .ok();
        acknowledged.extend(parse_lines(&acks));
    }
    // A different shard count moves partitions between shards; the log stays the same.
    let consumed = Command::new(rill_binary())
        .args([
            "consume",
            "--topic",
            "events",
            "--from",
            "earliest",
            "--to-end",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--shards", "1"])
        .output()
        .expect("rill runs");
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let mut consumed = parse_lines(&String::from_utf8(consumed.stdout).unwrap());
    assert_eq!(consumed.len(), 100);
    consumed.sort();
    acknowledged.sort();
    assert_eq!(consumed, acknowledged);
    for partition in 0..3 {
        let offsets: Vec<i64> = consumed
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, offset, _)| *offset)
            .collect();
        let contiguous: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, contiguous, "offsets continue across restarts");
    }
}

#[test]
fn produce_prints_each_ack_before_the_next_line_arrives_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "chat", 1);
    let mut producer = rill_command(dir.path(), &["produce", "--topic", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill starts");
    let mut stdin = producer.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(producer.stdout.take().expect("piped stdout"));
    for (offset, value) in ["hello", "world"].iter().enumerate() {
        stdin.write_all(format!("{value}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        // Standard input stays open: the ack must come without more input or its end.
        let mut ack = String::new();
        stdout.read_line(&mut ack).unwrap();
        assert_eq!(ack, format!("0\t{offset}\t{value}\n"));
    }
    send_signal(&producer, "TERM");
    let status = wait_with_timeout(&mut producer);
    let mut stderr = String::new();
    let mut pipe = producer.stderr.take().expect("piped stderr");
    pipe.read_to_string(&mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "exit status says SIGTERM: {stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(stdin);
    let consumed = rill(
        dir.path(),
        &[
            "consume", "--topic", "chat", "--from", "earliest", "--to-end",
        ],
    )
    .ok();
    assert_eq!(consumed, lines(&[(0, 0, "hello"), (0, 1, "world")]));
}

#[test]
fn a_failed_record_stops_produce_and_only_acknowledged_records_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    create_topic(dir.path(), "limits", 1);
    // Fits through the line reader but not into a batch: the engine refuses it.
    let batch_bytes_max = rill::config::BATCH_BYTES_MAX;
    let mut input = b"before\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', batch_bytes_max - 1));
    input.extend_from_slice(b"\nafter\n");
    let outcome = rill_with_input(dir.path(), &["produce", "--topic", "limits"], &input);
    assert_eq!(outcome.status.code(), Some(1));
    let acks = outcome.stdout.clone();
    let error = outcome.one_error_line();
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("larger than"), "{error}");
    // "after" may have been in flight already (records are pipelined); either way, what was
    // printed is exactly what was stored.
    assert!(acks.starts_with(&lines(&[(0, 0, "before")])), "{acks}");
    let consumed = rill(
        dir.path(),
        &[
            "consume", "--topic", "limits", "--from", "earliest", "--to-end",
        ],
    )
    .ok();
    assert_eq!(consumed, acks);

    // Longer than any record can be: refused while reading, without buffering it whole.
    let mut input = b"ok\n".to_vec();
    input.extend(std::iter::repeat_n(b'y', batch_bytes_max + 1));
    let outcome = rill_with_input(dir.path(), &["produce", "--topic", "limits"], &input);
    assert_eq!(outcome.status.code(), Some(1));
    let acks = outcome.stdout.clone();
    let error = outcome.one_error_line();
    assert!(error.contains("line 2 is longer"), "{error}");
    let offset = parse_lines(&consumed).len() as i64;
    assert_eq!(acks, format!("0\t{offset}\tok\n"));
}
