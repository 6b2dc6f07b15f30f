//! comms-ws.md binary frames: any bytes split into type, header and payload, or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ecliptic::protocol::comms::decode_binary(bytes::Bytes::copy_from_slice(data))
    {
        let _ = frame.header();
    }
});
