//! Message keys, chosen as OMB's `KeyDistributor` classes choose them.
//!
//! OMB draws one pool of 10,000 keys per process: each is 7 random bytes written in
//! URL-safe base64 without padding, so 10 ASCII characters. `KEY_ROUND_ROBIN` walks the
//! pool (its first key is the pool's second entry: OMB increments before reading);
//! `RANDOM_NANO` takes entry `|(int) nanoTime % 10000|`. Keyed records then land on Kafka's
//! murmur2 partition, so key choice decides how evenly partitions fill.
//!
//! Each producer actor owns its distributor; the pool is shared read-only.

use std::sync::Arc;

use bytes::Bytes;
use rand::RngCore;

use crate::workload::KeyDistributorType;

/// Keys in the pool (OMB's `UNIQUE_COUNT`).
pub const KEY_POOL_KEYS: usize = 10_000;
/// Random bytes behind each key (OMB's `KEY_BYTE_SIZE`).
pub const KEY_RANDOM_BYTES: usize = 7;
/// Length of each key once encoded: 7 bytes in unpadded base64.
pub const KEY_BYTES: usize = (KEY_RANDOM_BYTES * 8).div_ceil(6);

const _: () = assert!(KEY_POOL_KEYS <= i32::MAX as usize);

/// The process-wide pool of keys.
#[derive(Clone, Debug)]
pub struct KeyPool {
    keys: Arc<[Bytes]>,
}

impl KeyPool {
    /// Draws `KEY_POOL_KEYS` keys from `random`.
    pub fn generate(random: &mut impl RngCore) -> KeyPool {
        let mut buffer = [0u8; KEY_RANDOM_BYTES];
        let keys: Vec<Bytes> = (0..KEY_POOL_KEYS)
            .map(|_| {
                random.fill_bytes(&mut buffer);
                let key = base64_url_unpadded(&buffer);
                debug_assert_eq!(key.len(), KEY_BYTES);
                Bytes::from(key)
            })
            .collect();
        KeyPool { keys: keys.into() }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn get(&self, index: usize) -> &Bytes {
        &self.keys[index]
    }
}

/// Encodes bytes as RFC 4648 URL-safe base64 without `=` padding (Guava's
/// `BaseEncoding.base64Url().omitPadding()`).
pub fn base64_url_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = String::with_capacity((bytes.len() * 8).div_ceil(6));
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = (group[0] as u32) << 16 | (group[1] as u32) << 8 | group[2] as u32;
        let characters = (chunk.len() * 8).div_ceil(6);
        for position in 0..characters {
            let index = (bits >> (18 - 6 * position)) & 0x3f;
            text.push(ALPHABET[index as usize] as char);
        }
    }
    text
}

/// The pool index `RANDOM_NANO` picks for a nanosecond clock reading: Java's
/// `Math.abs((int) System.nanoTime() % 10000)`, where the cast truncates to 32 bits first.
pub fn random_nano_index(clock_ns: u64) -> usize {
    let truncated = clock_ns as i32;
    (truncated % KEY_POOL_KEYS as i32).unsigned_abs() as usize
}

/// Picks keys for one producer actor.
#[derive(Debug)]
pub enum KeyDistributor {
    NoKey,
    RoundRobin { pool: KeyPool, index: usize },
    RandomNano { pool: KeyPool },
}

impl KeyDistributor {
    pub fn new(kind: KeyDistributorType, pool: &KeyPool) -> KeyDistributor {
        match kind {
            KeyDistributorType::NoKey => KeyDistributor::NoKey,
            KeyDistributorType::KeyRoundRobin => KeyDistributor::RoundRobin {
                pool: pool.clone(),
                index: 0,
            },
            KeyDistributorType::RandomNano => KeyDistributor::RandomNano { pool: pool.clone() },
        }
    }

    /// The next message's key; `clock_ns` is read only by `RANDOM_NANO`.
    pub fn next_key(&mut self, clock_ns: u64) -> Option<Bytes> {
        match self {
            KeyDistributor::NoKey => None,
            KeyDistributor::RoundRobin { pool, index } => {
                // OMB: `if (++currentIndex >= getLength()) currentIndex = 0;`
                *index += 1;
                if *index >= pool.len() {
                    *index = 0;
                }
                Some(pool.get(*index).clone())
            }
            KeyDistributor::RandomNano { pool } => {
                Some(pool.get(random_nano_index(clock_ns)).clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn pool() -> KeyPool {
        KeyPool::generate(&mut rand::rngs::StdRng::seed_from_u64(7))
    }

    #[test]
    fn base64_matches_rfc_4648_test_vectors_without_padding() {
        assert_eq!(base64_url_unpadded(b""), "");
        assert_eq!(base64_url_unpadded(b"f"), "Zg");
        assert_eq!(base64_url_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_url_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_url_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url_unpadded(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn the_pool_holds_ten_thousand_ten_character_url_safe_keys() {
        let pool = pool();
        assert_eq!(pool.len(), KEY_POOL_KEYS);
        assert_eq!(KEY_BYTES, 10);
        for index in 0..pool.len() {
            let key = pool.get(index);
            assert_eq!(key.len(), KEY_BYTES);
            assert!(key
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'));
        }
        let distinct: std::collections::HashSet<&Bytes> =
            (0..pool.len()).map(|index| pool.get(index)).collect();
        assert!(
            distinct.len() > KEY_POOL_KEYS - 5,
            "56 random bits rarely collide"
        );
    }

    #[test]
    fn no_key_gives_no_key() {
        let mut keys = KeyDistributor::new(KeyDistributorType::NoKey, &pool());
        assert_eq!(keys.next_key(123), None);
    }

    #[test]
    fn round_robin_starts_at_the_second_key_and_wraps_like_omb() {
        let pool = pool();
        let mut keys = KeyDistributor::new(KeyDistributorType::KeyRoundRobin, &pool);
        assert_eq!(keys.next_key(0).unwrap(), pool.get(1));
        assert_eq!(keys.next_key(0).unwrap(), pool.get(2));
        for _ in 3..KEY_POOL_KEYS {
            keys.next_key(0);
        }
        assert_eq!(
            keys.next_key(0).unwrap(),
            pool.get(0),
            "wraps after the last key"
        );
        assert_eq!(keys.next_key(0).unwrap(), pool.get(1));
    }

    #[test]
    fn random_nano_truncates_to_32_bits_before_the_remainder_like_java() {
        assert_eq!(random_nano_index(0), 0);
        assert_eq!(random_nano_index(12_345), 2_345);
        // (int) 0xFFFF_FFFF is -1; -1 % 10000 is -1; abs is 1.
        assert_eq!(random_nano_index(0xFFFF_FFFF), 1);
        // Bits above 32 are dropped by the cast.
        assert_eq!(random_nano_index((7 << 32) + 42), 42);
        // i32::MIN % 10000 = -3648.
        assert_eq!(random_nano_index(0x8000_0000), 3_648);
        for clock in [1u64, 99_999, u64::MAX, 1 << 40, 0x7FFF_FFFF] {
            assert!(random_nano_index(clock) < KEY_POOL_KEYS);
        }
    }

    #[test]
    fn random_nano_picks_the_key_at_the_clock_index() {
        let pool = pool();
        let mut keys = KeyDistributor::new(KeyDistributorType::RandomNano, &pool);
        assert_eq!(keys.next_key(20_017).unwrap(), pool.get(17));
    }
}
