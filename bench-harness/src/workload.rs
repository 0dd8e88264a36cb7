//! OpenMessaging Benchmark (OMB) workload files: parsing and validation.
//!
//! A workload file is read as OMB writes it: the field names are those of OMB's `Workload`
//! class (`io.openmessaging.benchmark.Workload`), missing fields take OMB's defaults, and a
//! field OMB does not know is refused (a typo must not silently fall back to a default).
//! A workload this harness cannot honour (a consumer backlog) is refused with a message
//! saying why, never quietly changed into a different test.
//!
//! Paths inside a workload (`payloadFile`) are relative to the workload file's directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes at the start of every payload that carry the intended send time (see `payload`).
pub const MESSAGE_SIZE_BYTES_MIN: u32 = 8;

/// How a producer picks each message's key (OMB's `KeyDistributorType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyDistributorType {
    /// No key: records are spread round-robin over partitions.
    #[default]
    NoKey,
    /// Cycle through a fixed pool of random keys.
    KeyRoundRobin,
    /// Pick from the same pool by the low bits of a nanosecond clock.
    RandomNano,
}

/// One OMB workload, with OMB's field names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Workload {
    pub name: String,
    /// Number of topics to create.
    pub topics: u32,
    /// Number of partitions of each topic.
    pub partitions_per_topic: u32,
    pub key_distributor: KeyDistributorType,
    /// Size of every message value.
    #[serde(rename = "messageSize")]
    pub message_size_bytes: u32,
    /// Generate `randomizedPayloadPoolSize` payloads instead of reading `payloadFile`.
    pub use_randomized_payloads: bool,
    /// Share of each randomized payload that is random; the rest is zeros.
    pub random_bytes_ratio: f64,
    pub randomized_payload_pool_size: u32,
    /// The payload of every message, relative to the workload file's directory.
    pub payload_file: Option<String>,
    /// Independent readers of every partition of each topic.
    pub subscriptions_per_topic: u32,
    pub producers_per_topic: u32,
    /// Consumers sharing one subscription's partitions.
    pub consumer_per_subscription: u32,
    /// Messages per second over all producers; 0 means as fast as possible.
    #[serde(rename = "producerRate")]
    pub producer_rate_messages_per_second: u64,
    /// Backlog to build before consumers start; this harness only supports 0.
    #[serde(rename = "consumerBacklogSizeGB")]
    pub consumer_backlog_size_gb: u64,
    /// Share of the backlog that must drain (only meaningful with a backlog).
    pub backlog_drain_ratio: f64,
    pub test_duration_minutes: u32,
    pub warmup_duration_minutes: u32,
}

impl Default for Workload {
    /// OMB's defaults: Java's zero values, plus the three fields OMB initialises.
    fn default() -> Workload {
        Workload {
            name: String::new(),
            topics: 0,
            partitions_per_topic: 0,
            key_distributor: KeyDistributorType::NoKey,
            message_size_bytes: 0,
            use_randomized_payloads: false,
            random_bytes_ratio: 0.0,
            randomized_payload_pool_size: 0,
            payload_file: None,
            subscriptions_per_topic: 0,
            producers_per_topic: 0,
            consumer_per_subscription: 0,
            producer_rate_messages_per_second: 0,
            consumer_backlog_size_gb: 0,
            backlog_drain_ratio: 1.0,
            test_duration_minutes: 0,
            warmup_duration_minutes: 1,
        }
    }
}

/// Why a workload file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read workload file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("workload file {path} is not a valid OMB workload: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("workload {path}: field {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("workload {path}: cannot be run as written: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("workload {path}: payload file {payload}")]
    Payload {
        path: PathBuf,
        payload: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "workload {path}: payload file {payload} holds {actual_bytes} bytes but messageSize \
         is {expected_bytes}: OMB requires them to be equal"
    )]
    PayloadSize {
        path: PathBuf,
        payload: PathBuf,
        actual_bytes: u64,
        expected_bytes: u64,
    },
}

/// A field that breaks a rule, before the file's path is attached.
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    Invalid { field: &'static str, reason: String },
    Unsupported { reason: String },
}

impl Violation {
    fn with_path(self, path: &Path) -> WorkloadError {
        match self {
            Violation::Invalid { field, reason } => WorkloadError::Invalid {
                path: path.to_path_buf(),
                field,
                reason,
            },
            Violation::Unsupported { reason } => WorkloadError::Unsupported {
                path: path.to_path_buf(),
                reason,
            },
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Violation {
    Violation::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A workload that parsed and passed validation, and where it came from.
#[derive(Clone, Debug)]
pub struct LoadedWorkload {
    pub workload: Workload,
    pub path: PathBuf,
    /// `payloadFile` resolved against the workload file's directory, when not randomized.
    pub payload_path: Option<PathBuf>,
}

impl Workload {
    /// Parses YAML text. Unknown fields are refused; missing ones take OMB's defaults.
    pub fn parse(text: &str) -> Result<Workload, String> {
        serde_saphyr::from_str::<Workload>(text).map_err(|error| error.to_string())
    }

    /// Checks that the workload describes a test this harness runs exactly as written.
    pub fn validate(&self) -> Result<(), Violation> {
        if self.consumer_backlog_size_gb > 0 {
            return Err(Violation::Unsupported {
                reason: format!(
                    "consumerBacklogSizeGB is {} but backlog workloads (build a backlog, then \
                     drain it) are not supported: use a workload with consumerBacklogSizeGB: 0",
                    self.consumer_backlog_size_gb
                ),
            });
        }
        if !(0.0..=1.0).contains(&self.backlog_drain_ratio) {
            return Err(invalid("backlogDrainRatio", "must be between 0.0 and 1.0"));
        }
        if self.topics == 0 {
            return Err(invalid("topics", "must be at least 1"));
        }
        if self.partitions_per_topic == 0 {
            return Err(invalid("partitionsPerTopic", "must be at least 1"));
        }
        if self.producers_per_topic == 0 {
            return Err(invalid("producersPerTopic", "must be at least 1"));
        }
        if self.subscriptions_per_topic > 0 && self.consumer_per_subscription == 0 {
            return Err(invalid(
                "consumerPerSubscription",
                "must be at least 1 when subscriptionsPerTopic is above 0",
            ));
        }
        if self.message_size_bytes < MESSAGE_SIZE_BYTES_MIN {
            return Err(invalid(
                "messageSize",
                format!(
                    "must be at least {MESSAGE_SIZE_BYTES_MIN} bytes: every message carries its \
                     intended send time in its first 8 bytes, got {}",
                    self.message_size_bytes
                ),
            ));
        }
        if self.use_randomized_payloads {
            if !(0.0..=1.0).contains(&self.random_bytes_ratio) {
                return Err(invalid("randomBytesRatio", "must be between 0.0 and 1.0"));
            }
            if self.randomized_payload_pool_size == 0 {
                return Err(invalid(
                    "randomizedPayloadPoolSize",
                    "must be at least 1 when useRandomizedPayloads is true",
                ));
            }
        } else if self.payload_file.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                "payloadFile",
                "is required unless useRandomizedPayloads is true",
            ));
        }
        Ok(())
    }

    /// Reads, parses and validates a workload file; resolves its payload file.
    pub fn load(path: &Path) -> Result<LoadedWorkload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let workload = Workload::parse(&text).map_err(|message| WorkloadError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        workload
            .validate()
            .map_err(|violation| violation.with_path(path))?;
        let payload_path = if workload.use_randomized_payloads {
            None
        } else {
            let file = workload.payload_file.as_deref().expect("validated");
            let directory = path.parent().unwrap_or_else(|| Path::new("."));
            let payload = directory.join(file);
            // Checked here, before any engine starts, as OMB's FilePayloadReader checks it.
            let actual_bytes = std::fs::metadata(&payload)
                .map_err(|source| WorkloadError::Payload {
                    path: path.to_path_buf(),
                    payload: payload.clone(),
                    source,
                })?
                .len();
            if actual_bytes != workload.message_size_bytes as u64 {
                return Err(WorkloadError::PayloadSize {
                    path: path.to_path_buf(),
                    payload,
                    actual_bytes,
                    expected_bytes: workload.message_size_bytes as u64,
                });
            }
            Some(payload)
        };
        Ok(LoadedWorkload {
            workload,
            path: path.to_path_buf(),
            payload_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workloads_directory() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads")
    }

    fn bundled_workloads() -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(workloads_directory())
            .expect("bundled workloads directory")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "yaml")
            })
            .collect();
        files.sort();
        files
    }

    const MINIMAL: &str = "
name: minimal
topics: 1
partitionsPerTopic: 2
messageSize: 64
payloadFile: payload/payload-100b.data
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 1000
consumerBacklogSizeGB: 0
testDurationMinutes: 1
";

    #[test]
    fn every_bundled_workload_parses_and_all_but_the_backlog_one_validate() {
        let files = bundled_workloads();
        assert_eq!(
            files.len(),
            14,
            "every OMB workload file is bundled: {files:?}"
        );
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            let workload = Workload::parse(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
            if name.starts_with("backlog-") {
                assert!(matches!(
                    Workload::load(&file),
                    Err(WorkloadError::Unsupported { .. })
                ));
                continue;
            }
            let loaded = Workload::load(&file).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(loaded.workload, workload);
            if let Some(payload) = loaded.payload_path {
                let bytes = std::fs::metadata(&payload)
                    .unwrap_or_else(|error| panic!("{name}: {}: {error}", payload.display()))
                    .len();
                assert_eq!(bytes, workload.message_size_bytes as u64, "{name}");
            }
        }
    }

    #[test]
    fn the_default_workload_reads_as_omb_wrote_it() {
        let path = workloads_directory().join("1-topic-16-partitions-1kb.yaml");
        let loaded = Workload::load(&path).unwrap();
        let workload = loaded.workload;
        assert_eq!(workload.name, "1 producer / 1 consumers on 1 topic");
        assert_eq!(workload.topics, 1);
        assert_eq!(workload.partitions_per_topic, 16);
        assert_eq!(workload.message_size_bytes, 1024);
        assert_eq!(workload.producer_rate_messages_per_second, 50_000);
        assert_eq!(workload.test_duration_minutes, 15);
        assert_eq!(workload.warmup_duration_minutes, 1, "OMB's default");
        assert_eq!(workload.key_distributor, KeyDistributorType::NoKey);
        assert_eq!(
            loaded.payload_path.unwrap(),
            workloads_directory().join("payload/payload-1Kb.data")
        );
    }

    #[test]
    fn randomized_and_keyed_fields_are_read() {
        let text = format!(
            "{MINIMAL}useRandomizedPayloads: true\nrandomBytesRatio: 0.25\n\
             randomizedPayloadPoolSize: 7\nkeyDistributor: RANDOM_NANO\n\
             warmupDurationMinutes: 0\nbacklogDrainRatio: 0.5\n"
        );
        let workload = Workload::parse(&text).unwrap();
        assert!(workload.use_randomized_payloads);
        assert_eq!(workload.random_bytes_ratio, 0.25);
        assert_eq!(workload.randomized_payload_pool_size, 7);
        assert_eq!(workload.key_distributor, KeyDistributorType::RandomNano);
        assert_eq!(workload.warmup_duration_minutes, 0);
        assert_eq!(workload.backlog_drain_ratio, 0.5);
        workload.validate().unwrap();
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let error = Workload::parse(&format!("{MINIMAL}producerRatee: 5\n")).unwrap_err();
        assert!(error.contains("producerRatee"), "{error}");
    }

    #[test]
    fn an_unknown_key_distributor_is_refused() {
        let error = Workload::parse(&format!("{MINIMAL}keyDistributor: ZIPF\n")).unwrap_err();
        assert!(error.contains("ZIPF"), "{error}");
    }

    #[test]
    fn the_backlog_field_must_be_spelled_as_omb_spells_it() {
        let text = MINIMAL.replace("consumerBacklogSizeGB", "consumerBacklogSizeGb");
        assert!(Workload::parse(&text).is_err());
    }

    #[test]
    fn a_backlog_workload_is_refused_not_changed() {
        let text = MINIMAL.replace("consumerBacklogSizeGB: 0", "consumerBacklogSizeGB: 100");
        let workload = Workload::parse(&text).unwrap();
        let violation = workload.validate().unwrap_err();
        match violation {
            Violation::Unsupported { reason } => {
                assert!(reason.contains("consumerBacklogSizeGB"), "{reason}")
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn a_message_too_small_for_the_timestamp_is_refused() {
        let text = MINIMAL.replace("messageSize: 64", "messageSize: 7");
        let workload = Workload::parse(&text).unwrap();
        assert!(matches!(
            workload.validate(),
            Err(Violation::Invalid {
                field: "messageSize",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_or_wrong_sized_payload_file_is_refused_when_loading() {
        let directory = tempfile::tempdir().unwrap();
        let workload_path = directory.path().join("workload.yaml");
        std::fs::write(&workload_path, MINIMAL).unwrap();
        assert!(matches!(
            Workload::load(&workload_path),
            Err(WorkloadError::Payload { .. })
        ));
        std::fs::create_dir(directory.path().join("payload")).unwrap();
        let payload = directory.path().join("payload/payload-100b.data");
        std::fs::write(&payload, [1u8; 100]).unwrap();
        assert!(matches!(
            Workload::load(&workload_path),
            Err(WorkloadError::PayloadSize {
                actual_bytes: 100,
                expected_bytes: 64,
                ..
            })
        ));
        std::fs::write(&payload, [1u8; 64]).unwrap();
        let loaded = Workload::load(&workload_path).unwrap();
        assert_eq!(
            loaded.payload_path.unwrap(),
            payload,
            "relative to the workload"
        );
    }

    #[test]
    fn a_payload_file_is_required_unless_payloads_are_randomized() {
        let text = MINIMAL.replace("payloadFile: payload/payload-100b.data\n", "");
        let workload = Workload::parse(&text).unwrap();
        assert!(matches!(
            workload.validate(),
            Err(Violation::Invalid {
                field: "payloadFile",
                ..
            })
        ));
    }
}
