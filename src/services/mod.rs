//! Domain services: the state and rules that every protocol shares. Protocol modules only
//! translate to and from these.

pub mod accounts;
pub mod assets;
pub mod backup;
pub mod catalog;
mod error;
pub mod garp_players;
pub mod leases;
pub mod mailbox;
pub mod pilots;
pub mod play;
pub mod progress;
pub mod rooms;
pub mod script_store;
pub mod studio;
pub mod uploads;
pub mod wagers;
pub mod wallet;

pub use accounts::Accounts;
pub use error::DomainError;
