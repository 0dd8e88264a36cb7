//! The embedded driver: Rill's engine in this process, driven through its client API.
//!
//! Nothing sits between the actors and the engine's rings, so the figures are the engine's
//! own (plus the harness's bookkeeping), without a network or protocol layer.

use std::path::PathBuf;
use std::time::Duration;

use rill::client::Record;
use rill::error::{TopicError, TrySendError as RillTrySendError};
use rill::{Durability, Engine, EngineConfig, PartitionId, StartPosition, Topic};

use super::{
    Ack, Delivery, Driver, DriverConsumer, DriverError, DriverProducer, OutgoingMessage,
    TrySendError,
};

/// How to open the engine.
#[derive(Clone, Debug)]
pub struct EmbeddedSettings {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// `None`: the engine's default (one shard per core).
    pub shards: Option<usize>,
    pub pin_shards: bool,
    /// How long an idle shard polls before sleeping; the engine's default when `None`.
    pub idle_spin: Option<std::time::Duration>,
    /// Producers are idempotent (producer id, epoch and sequence on every record).
    pub idempotent: bool,
}

/// Rill in this process.
#[derive(Debug)]
pub struct EmbeddedDriver {
    engine: Engine,
    idempotent: bool,
}

impl EmbeddedDriver {
    pub fn open(settings: &EmbeddedSettings) -> Result<EmbeddedDriver, DriverError> {
        let mut config = EngineConfig::new(&settings.data_dir);
        if let Some(shards) = settings.shards {
            config.shards = shards;
        }
        config.pin_shards = settings.pin_shards;
        if let Some(idle_spin) = settings.idle_spin {
            config.idle_spin = idle_spin;
        }
        config.durability = settings.durability;
        let engine = Engine::open(config).map_err(|error| DriverError::Open(error.to_string()))?;
        Ok(EmbeddedDriver {
            engine,
            idempotent: settings.idempotent,
        })
    }

    /// Stops the engine after it finished everything handed to it.
    pub fn shutdown(self) {
        self.engine.shutdown();
    }
}

impl Driver for EmbeddedDriver {
    type Topic = Topic;
    type Producer = EmbeddedProducer;
    type Consumer = EmbeddedConsumer;

    fn name(&self) -> &'static str {
        "embedded"
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        let config = self.engine.config();
        vec![
            ("durability", config.durability.to_string()),
            ("shards", config.shards.to_string()),
            ("pin_shards", config.pin_shards.to_string()),
            ("data_dir", config.data_dir.display().to_string()),
            (
                "producer_ring_records_max",
                config.producer_ring_records_max.to_string(),
            ),
            (
                "consumer_ring_deliveries_max",
                config.consumer_ring_deliveries_max.to_string(),
            ),
            ("segment_bytes_max", config.segment_bytes_max.to_string()),
            ("idle_spin_us", config.idle_spin.as_micros().to_string()),
            ("idempotent_producers", self.idempotent.to_string()),
        ]
    }

    fn create_topic(&self, name: &str, partitions: u32) -> Result<Topic, DriverError> {
        let failure = |reason: String| DriverError::CreateTopic {
            topic: name.to_string(),
            reason,
        };
        match self.engine.create_topic(name, partitions) {
            Ok(topic) => Ok(topic),
            Err(TopicError::AlreadyExists(_)) => {
                // A reused data directory: the old records are before the consumers' start.
                let topic = self
                    .engine
                    .topic(name)
                    .map_err(|error| failure(error.to_string()))?;
                if topic.partitions() != partitions {
                    return Err(failure(format!(
                        "it exists in the data directory with {} partitions, the workload \
                         needs {partitions}: use a fresh --data-dir",
                        topic.partitions()
                    )));
                }
                Ok(topic)
            }
            Err(error) => Err(failure(error.to_string())),
        }
    }

    fn producer(&self) -> EmbeddedProducer {
        let producer = if self.idempotent {
            self.engine
                .idempotent_producer()
                .expect("a producer id can be allocated")
        } else {
            self.engine.producer()
        };
        EmbeddedProducer { producer }
    }

    fn consumer(&self) -> EmbeddedConsumer {
        EmbeddedConsumer {
            consumer: self.engine.consumer(),
        }
    }
}

/// A Rill producer handle.
#[derive(Debug)]
pub struct EmbeddedProducer {
    producer: rill::Producer,
}

fn ack_from(outcome: rill::SendOutcome) -> Ack {
    Ack {
        ticket: outcome.ticket.0,
        result: outcome
            .result
            .map(|_offset| ())
            .map_err(|error| DriverError::Send(error.to_string())),
    }
}

impl DriverProducer for EmbeddedProducer {
    type Topic = Topic;

    fn try_send(&mut self, topic: &Topic, message: OutgoingMessage) -> Result<u64, TrySendError> {
        let mut record = Record::new(message.value);
        record.key = message.key;
        match self.producer.try_send(topic, record) {
            Ok(ticket) => Ok(ticket.0),
            Err(RillTrySendError::Full(record)) => Err(TrySendError::Full(OutgoingMessage {
                key: record.key,
                value: record.value,
            })),
            Err(RillTrySendError::Send(error)) => {
                Err(TrySendError::Failed(DriverError::Send(error.to_string())))
            }
        }
    }

    fn poll_ack(&mut self) -> Option<Ack> {
        self.producer.poll_outcome().map(ack_from)
    }

    fn wait_ack(&mut self, timeout: Duration) -> Option<Ack> {
        self.producer.wait_outcome(timeout).map(ack_from)
    }

    fn in_flight(&self) -> usize {
        self.producer.in_flight()
    }
}

/// A Rill consumer handle.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    consumer: rill::Consumer,
}

fn delivery_from(record: rill::ConsumerRecord) -> Delivery {
    Delivery {
        subscription: record.subscription.0,
        offset: record.offset.0,
        value: record.value,
    }
}

impl DriverConsumer for EmbeddedConsumer {
    type Topic = Topic;

    fn subscribe(&mut self, topic: &Topic, partition: u32) -> Result<u32, DriverError> {
        let (subscription, _start) = self
            .consumer
            .subscribe(topic, PartitionId(partition as i32), StartPosition::Latest)
            .map_err(|error| DriverError::Subscribe {
                topic: topic.name().to_string(),
                partition,
                reason: error.to_string(),
            })?;
        Ok(subscription.0)
    }

    fn try_poll(&mut self) -> Option<Delivery> {
        self.consumer.try_poll().map(delivery_from)
    }

    fn poll(&mut self, timeout: Duration) -> Option<Delivery> {
        self.consumer.poll(timeout).map(delivery_from)
    }
}
