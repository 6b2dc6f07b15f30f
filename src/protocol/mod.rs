//! One module per wire protocol: serde types, decoding and encoding. Pure: no I/O, no
//! domain rules; those live in `services` and `sim`.

pub mod comms;
pub mod game;
pub mod garp;
pub mod raos;
pub mod store;
