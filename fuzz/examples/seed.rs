//! Writes the seed corpora: `cargo run --example seed -- <corpus directory>` (from fuzz/).
//! Each target gets valid stored batches in its own input format (a flags byte first).

use std::path::Path;

use rill::record::PREFIX_BYTES;
use rill_fuzz::seed_logs;

fn write(directory: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(directory).expect("corpus directory");
    std::fs::write(directory.join(name), bytes).expect("seed file");
}

/// The offset after the last batch of a valid log starting at offset 0.
fn next_offset(log: &[u8]) -> i64 {
    let mut position = 0;
    let mut next = 0;
    while position < log.len() {
        let batch = rill::record::StoredBatch::parse(&log[position..]).expect("seed is valid");
        position += batch.stored_len();
        next = batch.next_offset();
    }
    next
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let root = Path::new(&root);
    for (name, log) in seed_logs(0) {
        let first_len = rill::record::StoredBatch::parse(&log)
            .expect("seed is valid")
            .stored_len();
        for flags in [0u8, 1] {
            let mut input = vec![flags];
            input.extend_from_slice(&log[..first_len]);
            write(
                &root.join("stored_batch"),
                &format!("seed-{name}-flags{flags}"),
                &input,
            );
            let mut input = vec![flags * 2];
            input.extend_from_slice(&log[PREFIX_BYTES..first_len]);
            write(
                &root.join("kafka_batch"),
                &format!("seed-{name}-flags{}", flags * 2),
                &input,
            );
        }
        // segment_open: the whole log as the first segment; with and without a second one.
        for flags in [0u8, 1 | 2, 4 | 32, 1 | 4 | 8 | 16 | 32] {
            let mut input = vec![flags];
            input.extend_from_slice(&(log.len() as u16).to_le_bytes());
            input.extend_from_slice(&(48u16).to_le_bytes()); // index length
            input.push(0); // delta
            input.extend_from_slice(&(200u16).to_le_bytes()); // read bytes_max
            input.extend_from_slice(&1i64.to_le_bytes()); // probe offset
            input.extend_from_slice(&log);
            if flags & 8 != 0 {
                input.extend_from_slice(&[0u8; 48]);
            }
            if flags & 4 != 0 {
                let (_, second) = seed_logs(next_offset(&log)).swap_remove(0);
                input.extend_from_slice(&second);
            }
            write(
                &root.join("segment_open"),
                &format!("seed-{name}-flags{flags}"),
                &input,
            );
        }
    }
}
