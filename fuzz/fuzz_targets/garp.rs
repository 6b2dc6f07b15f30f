//! GARP requests: any text decodes to a frame or a GARP error.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = ecliptic::protocol::garp::decode(text);
});
