//! store-lobby-tcp.md lines: any line decodes to a developer or lobby command, or a code-100 answer.
#![no_main]

use ecliptic::protocol::store;

libfuzzer_sys::fuzz_target!(|line: &str| {
    if let Ok(mut request) = store::decode(line) {
        let _ = store::decode_dev(&mut request);
    }
    if let Ok(mut request) = store::decode(line) {
        let _ = store::decode_lobby(&mut request);
    }
});
