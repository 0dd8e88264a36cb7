//! What crosses between client threads and a shard. Data travels through SPSC rings
//! (`ring::spsc`); rare control messages (topic opening, attaching rings, subscribing,
//! stopping) travel through a channel, off the data path.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::Sender;

use super::wake::Parker;
use crate::ring::spsc;
use crate::types::{Epoch, Offset, PartitionId, ProducerId, Sequence, StartPosition};

/// One record for a partition owned by the receiving shard.
#[derive(Debug)]
pub(crate) struct ProduceRequest {
    /// Index of the partition in the shard's partition table.
    pub slot: u32,
    /// The producer handle's number for this record; echoed in the ack.
    pub ticket: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// Idempotent producer identity and this record's sequence for its partition.
    pub stamp: Option<ProducerStamp>,
}

/// Who sent a record, for idempotence: Kafka's producer id, epoch and sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer: ProducerId,
    pub epoch: Epoch,
    pub sequence: Sequence,
}

/// The outcome of one [`ProduceRequest`].
#[derive(Debug)]
pub(crate) struct ProduceAck {
    pub ticket: u64,
    pub partition: PartitionId,
    pub result: Result<Offset, crate::error::SendError>,
}

/// Stored batches for one subscription: one or more whole batches, back to back, starting at
/// or before the subscription's next offset (the consumer skips records it has seen).
#[derive(Debug)]
pub(crate) struct Delivery {
    pub subscription: u32,
    pub batches: Bytes,
    /// Read back from a segment file (not the buffer the shard just built and checked): the
    /// consumer verifies every CRC before handing records out.
    pub from_disk: bool,
}

/// A partition a shard opened, as the client side sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenedPartition {
    pub slot: u32,
}

/// Rare messages to a shard.
#[derive(Debug)]
pub(crate) enum Control {
    /// Open (recovering) or create a partition log and own it from now on.
    OpenPartition {
        topic: Arc<str>,
        partition: PartitionId,
        directory: PathBuf,
        reply: Sender<Result<OpenedPartition, String>>,
    },
    AttachProducer {
        requests: spsc::Consumer<ProduceRequest>,
        acks: spsc::Producer<ProduceAck>,
        parker: Arc<Parker>,
    },
    AttachConsumer {
        consumer: u64,
        deliveries: spsc::Producer<Delivery>,
        parker: Arc<Parker>,
    },
    Subscribe {
        consumer: u64,
        subscription: u32,
        slot: u32,
        start: StartPosition,
        /// The offset the subscription starts at.
        reply: Sender<Offset>,
    },
    Unsubscribe {
        consumer: u64,
        subscription: u32,
        slot: u32,
    },
    /// Finish everything queued, sync, write indexes and stop.
    Shutdown,
}
