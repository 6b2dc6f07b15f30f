//! realtime-game.md client messages: any text decodes to a message or a protocol error.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = ecliptic::protocol::game::decode(text);
});
