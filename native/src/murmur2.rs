//! Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): the hash by which the Java
//! client and kafka-python choose a key's partition, and by which the pipeline decides which
//! partition owns a key's state. Java's signed arithmetic wraps like `u32`'s, so the bits agree.

use pyo3::prelude::*;

const SEED: u32 = 0x9747_B28C;
const M: u32 = 0x5BD1_E995;
const R: u32 = 24;

/// The hash of `data` as an unsigned 32-bit int.
#[pyfunction]
pub fn murmur2(data: &[u8]) -> u32 {
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h = (h ^ u32::from(tail[0])).wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}
