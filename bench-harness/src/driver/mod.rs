//! The seam between the benchmark and the system under test.
//!
//! A [`Driver`] creates topics and hands out producer and consumer handles; the actors in
//! `actors` drive those handles and measure. Today there is one driver, `embedded`, which
//! runs Rill in this process; a driver speaking the Kafka protocol to a Rill (or Kafka)
//! server can be added beside it without touching the actors.
//!
//! Threading: a driver is shared by reference between all actor threads (`Sync`). Each
//! thread creates its own handles with [`Driver::producer`] / [`Driver::consumer`] *on that
//! thread* and uses them only there: a handle may tie its wake-ups to the creating thread.
//!
//! Contracts the actors rely on (and assert):
//! - a producer handle numbers its accepted messages with tickets counting up from 0;
//! - a consumer handle numbers its subscriptions counting up from 0 and tags each delivery
//!   with the subscription it belongs to;
//! - a subscription made before the first message is sent receives every message sent to
//!   its partition afterwards, in offset order.

pub mod embedded;

use std::time::Duration;

use bytes::Bytes;

/// Why a driver operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("cannot start the system under test: {0}")]
    Open(String),
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("cannot subscribe to {topic} partition {partition}: {reason}")]
    Subscribe {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error("send failed: {0}")]
    Send(String),
}

/// A message to send: an optional key (which decides the partition) and a value.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// Why [`DriverProducer::try_send`] did not accept a message.
#[derive(Debug)]
pub enum TrySendError {
    /// Backpressure: too much is in flight. The message is handed back to retry later,
    /// after collecting acks.
    Full(OutgoingMessage),
    /// The send failed for good.
    Failed(DriverError),
}

/// What became of one accepted message.
#[derive(Debug)]
pub struct Ack {
    pub ticket: u64,
    pub result: Result<(), DriverError>,
}

/// One received message.
#[derive(Debug)]
pub struct Delivery {
    /// The subscription (as numbered by [`DriverConsumer::subscribe`]) it arrived on.
    pub subscription: u32,
    /// Its position in the partition; grows by one per message.
    pub offset: i64,
    pub value: Bytes,
}

/// The system under test.
pub trait Driver: Sync {
    type Topic: Clone + Send + Sync;
    type Producer: DriverProducer<Topic = Self::Topic>;
    type Consumer: DriverConsumer<Topic = Self::Topic>;

    /// Short name for reports, e.g. "embedded".
    fn name(&self) -> &'static str;

    /// Settings that shape the results, printed and saved next to them.
    fn settings(&self) -> Vec<(&'static str, String)>;

    /// Creates a topic (or, where it exists with the same partition count, opens it).
    fn create_topic(&self, name: &str, partitions: u32) -> Result<Self::Topic, DriverError>;

    /// A producer handle for the calling thread.
    fn producer(&self) -> Self::Producer;

    /// A consumer handle for the calling thread.
    fn consumer(&self) -> Self::Consumer;
}

/// Sends messages without blocking; acks come back through `poll_ack` / `wait_ack`.
pub trait DriverProducer {
    type Topic;

    /// Queues a message; on success returns its ticket (0, 1, 2, ... per handle).
    fn try_send(
        &mut self,
        topic: &Self::Topic,
        message: OutgoingMessage,
    ) -> Result<u64, TrySendError>;

    /// The next ack if one is ready.
    fn poll_ack(&mut self) -> Option<Ack>;

    /// The next ack, waiting up to `timeout` for one.
    fn wait_ack(&mut self, timeout: Duration) -> Option<Ack>;

    /// Messages accepted whose ack has not been returned yet.
    fn in_flight(&self) -> usize;
}

/// Receives messages from subscribed partitions.
pub trait DriverConsumer {
    type Topic;

    /// Subscribes to one partition from its end (only messages sent afterwards); returns the
    /// subscription's number (0, 1, 2, ... per handle).
    fn subscribe(&mut self, topic: &Self::Topic, partition: u32) -> Result<u32, DriverError>;

    /// The next message if one is ready.
    fn try_poll(&mut self) -> Option<Delivery>;

    /// The next message, waiting up to `timeout` for one.
    fn poll(&mut self, timeout: Duration) -> Option<Delivery>;
}
