//! RaOS actions: any text decodes to an action or a 1000 failure.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = ecliptic::protocol::raos::decode(text);
});
