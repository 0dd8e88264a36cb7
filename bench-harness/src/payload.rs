//! Message payloads: the pool a workload describes, and the timestamp each message carries.
//!
//! The pool is either the one `payloadFile` (whose length must equal `messageSize`, as OMB
//! checks) or `randomizedPayloadPoolSize` generated payloads whose first
//! `floor(messageSize × randomBytesRatio)` bytes are random and the rest zeros (OMB's layout:
//! it helps judge compression). Producers pick a pool entry at random per message.
//!
//! Every message is a fresh copy of its pool entry whose first 8 bytes are overwritten with
//! a [`Stamp`]: a little-endian u64 holding the intended send time in nanoseconds since the
//! process clock's base in its low 63 bits and, in its top bit, whether the message belongs
//! to the measurement (it was first handed to the driver after warm-up ended). Consumers
//! read it back to compute end-to-end latency from the intended send time, so the figure
//! includes any delay the producer suffered (coordinated omission corrected), and to count
//! exactly the messages the producers counted. A fresh buffer per message keeps zero-copy
//! consumers from ever seeing a buffer reused under them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rand::RngCore;

/// Bytes of the stamp at the start of every payload.
pub const STAMP_BYTES: usize = 8;
/// The stamp bit that marks a measured message; intended send times stay below it.
const STAMP_MEASURED_BIT: u64 = 1 << 63;

/// What every payload carries in its first `STAMP_BYTES` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Nanoseconds since the process clock's base; below 2^63 (292 years).
    pub intended_send_ns: u64,
    /// Sent after warm-up: counts in the results.
    pub measured: bool,
}

impl Stamp {
    pub fn encode(&self) -> [u8; STAMP_BYTES] {
        assert!(self.intended_send_ns < STAMP_MEASURED_BIT);
        let flag = if self.measured { STAMP_MEASURED_BIT } else { 0 };
        (self.intended_send_ns | flag).to_le_bytes()
    }

    /// The stamp at the start of a value, or `None` when the value is too short.
    pub fn decode(value: &[u8]) -> Option<Stamp> {
        let bytes: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
        let word = u64::from_le_bytes(bytes);
        Some(Stamp {
            intended_send_ns: word & !STAMP_MEASURED_BIT,
            measured: word & STAMP_MEASURED_BIT != 0,
        })
    }
}

/// Why a payload pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot read payload file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "payload file {path} holds {actual_bytes} bytes but messageSize is {expected_bytes}: \
         OMB requires them to be equal"
    )]
    SizeMismatch {
        path: PathBuf,
        actual_bytes: usize,
        expected_bytes: usize,
    },
}

/// The payloads producers copy from. Cheap to clone; shared read-only by all producers.
#[derive(Clone, Debug)]
pub struct PayloadPool {
    payloads: Arc<[Bytes]>,
    message_bytes: usize,
}

impl PayloadPool {
    /// The one payload in `path`; its length must be `message_bytes`.
    pub fn from_file(path: &Path, message_bytes: usize) -> Result<PayloadPool, PayloadError> {
        let payload = std::fs::read(path).map_err(|source| PayloadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if payload.len() != message_bytes {
            return Err(PayloadError::SizeMismatch {
                path: path.to_path_buf(),
                actual_bytes: payload.len(),
                expected_bytes: message_bytes,
            });
        }
        Ok(PayloadPool::from_payloads(vec![Bytes::from(payload)]))
    }

    /// `pool_size` payloads of `message_bytes`, each random in its first
    /// `floor(message_bytes × random_bytes_ratio)` bytes and zero after (OMB's layout).
    pub fn randomized(
        message_bytes: usize,
        random_bytes_ratio: f64,
        pool_size: usize,
        random: &mut impl RngCore,
    ) -> PayloadPool {
        assert!((0.0..=1.0).contains(&random_bytes_ratio));
        assert!(pool_size > 0);
        let random_bytes = random_bytes_count(message_bytes, random_bytes_ratio);
        let payloads = (0..pool_size)
            .map(|_| {
                let mut payload = vec![0u8; message_bytes];
                random.fill_bytes(&mut payload[..random_bytes]);
                Bytes::from(payload)
            })
            .collect();
        PayloadPool::from_payloads(payloads)
    }

    fn from_payloads(payloads: Vec<Bytes>) -> PayloadPool {
        let message_bytes = payloads[0].len();
        assert!(payloads
            .iter()
            .all(|payload| payload.len() == message_bytes));
        assert!(message_bytes >= STAMP_BYTES);
        PayloadPool {
            payloads: payloads.into(),
            message_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    #[cfg(test)]
    pub fn message_bytes(&self) -> usize {
        self.message_bytes
    }

    #[cfg(test)]
    pub fn get(&self, index: usize) -> &Bytes {
        &self.payloads[index]
    }

    /// A fresh copy of pool entry `index` carrying `stamp`.
    pub fn message(&self, index: usize, stamp: Stamp) -> Bytes {
        let mut value = Vec::with_capacity(self.message_bytes);
        value.extend_from_slice(&self.payloads[index]);
        value[..STAMP_BYTES].copy_from_slice(&stamp.encode());
        Bytes::from(value)
    }
}

/// Random bytes at the start of each randomized payload: Java's `(int) (size * ratio)`.
pub fn random_bytes_count(message_bytes: usize, random_bytes_ratio: f64) -> usize {
    ((message_bytes as f64 * random_bytes_ratio) as usize).min(message_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn randomized_payloads_are_random_for_the_ratio_and_zero_after() {
        let mut random = rand::rngs::StdRng::seed_from_u64(1);
        let pool = PayloadPool::randomized(1000, 0.5, 10, &mut random);
        assert_eq!(pool.len(), 10);
        assert_eq!(pool.message_bytes(), 1000);
        for index in 0..pool.len() {
            let payload = pool.get(index);
            assert_eq!(payload.len(), 1000);
            assert!(payload[500..].iter().all(|&b| b == 0), "the tail is zeros");
            // A random byte is zero with probability 1/256: about 2 of 500.
            let zeros = payload[..500].iter().filter(|&&b| b == 0).count();
            assert!(zeros < 15, "the head is random, found {zeros} zeros");
        }
        assert_ne!(pool.get(0), pool.get(1), "each pool entry is drawn anew");
    }

    #[test]
    fn the_random_share_follows_javas_truncation() {
        assert_eq!(random_bytes_count(100, 0.5), 50);
        assert_eq!(random_bytes_count(1024, 0.5), 512);
        assert_eq!(random_bytes_count(100, 0.333), 33);
        assert_eq!(random_bytes_count(100, 0.0), 0);
        assert_eq!(random_bytes_count(100, 1.0), 100);
        let mut random = rand::rngs::StdRng::seed_from_u64(2);
        let pool = PayloadPool::randomized(64, 0.0, 1, &mut random);
        assert!(pool.get(0).iter().all(|&b| b == 0));
        let pool = PayloadPool::randomized(4096, 1.0, 1, &mut random);
        let zeros = pool.get(0).iter().filter(|&&b| b == 0).count();
        assert!(zeros < 60, "fully random, found {zeros} zeros");
    }

    #[test]
    fn a_message_is_a_stamped_copy_that_leaves_the_pool_untouched() {
        let mut random = rand::rngs::StdRng::seed_from_u64(3);
        let pool = PayloadPool::randomized(32, 1.0, 1, &mut random);
        let original = pool.get(0).clone();
        let stamp = Stamp {
            intended_send_ns: 0x0102_0304_0506_0708,
            measured: false,
        };
        let message = pool.message(0, stamp);
        assert_eq!(&message[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&message[8..], &original[8..]);
        assert_eq!(Stamp::decode(&message), Some(stamp));
        assert_eq!(pool.get(0), &original);
        assert_eq!(Stamp::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn the_measured_flag_rides_in_the_top_bit() {
        let stamp = Stamp {
            intended_send_ns: 42,
            measured: true,
        };
        assert_eq!(stamp.encode(), [42, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(Stamp::decode(&stamp.encode()), Some(stamp));
        let latest = Stamp {
            intended_send_ns: (1 << 63) - 1,
            measured: false,
        };
        assert_eq!(Stamp::decode(&latest.encode()), Some(latest));
    }

    #[test]
    fn a_payload_file_of_the_wrong_size_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("payload.data");
        std::fs::write(&path, [7u8; 100]).unwrap();
        assert!(PayloadPool::from_file(&path, 100).is_ok());
        assert!(matches!(
            PayloadPool::from_file(&path, 1024),
            Err(PayloadError::SizeMismatch {
                actual_bytes: 100,
                expected_bytes: 1024,
                ..
            })
        ));
    }
}
