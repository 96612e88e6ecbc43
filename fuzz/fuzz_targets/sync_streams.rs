//! Replication streams come from another server or an offline bundle: whatever their bytes,
//! reading them ends in entries or an error, never a panic; and what reads to the end cleanly
//! writes back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use repnet_store::sync::{StreamReader, StreamWriter};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = StreamReader::new(data) else { return };
    let header = *reader.header();
    let mut entries = Vec::new();
    loop {
        match reader.next_entry() {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    // A stream read cleanly to its end is the one its entries write.
    let mut writer = StreamWriter::new(Vec::new(), &header).expect("write to memory");
    for entry in &entries {
        writer.entry(entry).expect("write to memory");
    }
    let written = writer.finish().expect("write to memory");
    assert_eq!(written, data, "a valid stream reads back to its own bytes");
});
