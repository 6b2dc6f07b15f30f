//! comms-ws.md text frames: any text decodes to a frame or a protocol error.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = ecliptic::protocol::comms::decode(text);
});
