//! `/game`'s binary encoding: any bytes from a client decode to a message or a protocol
//! error; any bytes decode (or fail) on the client's side; and any payload, however
//! malformed, encodes to a frame that side reads back.
#![no_main]

use ecliptic::protocol::game::binary::{Decoder, Encoder, decode_client};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = decode_client(bytes);
    let _ = Decoder::default().decode(bytes);
    let mut encoder = Encoder::default();
    let mut decoder = Decoder::default();
    for kind in ["world.delta", "world.snapshot"] {
        let frame = encoder.encode(kind, 1, 2, bytes);
        let decoded = decoder.decode(&frame);
        // What the compact form carries, it carries back; what it cannot goes as the JSON
        // envelope, which reads back exactly when it is JSON.
        if std::str::from_utf8(bytes).is_ok() {
            let envelope = ecliptic::protocol::game::envelope(kind, 1, 2, bytes);
            assert_eq!(
                decoded.is_ok(),
                serde_json::from_str::<serde_json::Value>(&envelope).is_ok()
            );
        }
    }
});
