//! # ecliptic
//!
//! An authoritative game simulation server. One thread owns a bevy ECS world stepped at a
//! fixed rate; tokio tasks speak five wire protocols around it and hand it typed commands
//! through a bounded inbox; SQLite keeps what must survive, written by one group-committing
//! thread. See `docs/operating.md` for the operator's view, `docs/architecture.md` for
//! the design, and the notes at the top of each module.
//!
//! The supported surface is what these docs show: [`prelude`], [`Server`] and [`Config`],
//! [`cli::main_with`], [`bridge`] for code running beside a server, and the guide in
//! [`modding`]. The other modules are the server's own: public for its test suite,
//! benches and fuzz targets, hidden here, and free to change.
//!
//! ## Starting a server in-process
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = ecliptic::Config::ephemeral("./var-demo");
//! let server = ecliptic::Server::new(config).start().await?;
//! println!("HTTP on {}", server.http_addr);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Adding gameplay
//!
//! The whole modding surface, from an empty crate to a modded server, is the guide in
//! [`modding`] (`docs/modding.md`); what follows is the short version.
//!
//! A feature is a bevy `Plugin`; its systems go into `FixedUpdate` in one of the
//! [`prelude::TickSet`]s, which fix the order of a tick. [`prelude`] has what a mod usually
//! needs:
//!
//! ```
//! use ecliptic::prelude::*;
//!
//! #[derive(Resource, Default)]
//! struct TicksSeen(u64);
//!
//! fn count_ticks(mut seen: ResMut<TicksSeen>) {
//!     seen.0 += 1;
//! }
//!
//! struct CounterPlugin;
//!
//! impl Plugin for CounterPlugin {
//!     fn build(&self, app: &mut App) {
//!         app.init_resource::<TicksSeen>()
//!             .add_systems(FixedUpdate, count_ticks.in_set(TickSet::Zones));
//!     }
//! }
//!
//! let server = ecliptic::Server::new(ecliptic::Config::default()).add_plugin(CounterPlugin);
//! # drop(server);
//! ```
//!
//! ## Reading what happens in play
//!
//! Gameplay facts ([`sim::facts`]) are bevy messages: a plugin reads them like any other.
//!
//! ```
//! use ecliptic::prelude::*;
//!
//! #[derive(Resource, Default)]
//! struct Kills(u64);
//!
//! fn count_kills(mut destroyed: MessageReader<ShipDestroyed>, mut kills: ResMut<Kills>) {
//!     kills.0 += destroyed.read().filter(|d| d.killer_user.is_some()).count() as u64;
//! }
//!
//! struct KillCounter;
//!
//! impl Plugin for KillCounter {
//!     fn build(&self, app: &mut App) {
//!         app.init_resource::<Kills>()
//!             .add_systems(FixedLast, count_kills);
//!     }
//! }
//!
//! // Without the built-in pirates, and with the counter.
//! let server = ecliptic::Server::new(ecliptic::Config::default())
//!     .game_plugins(|game| game.disable::<NpcPlugin>())
//!     .add_plugin(KillCounter);
//! # drop(server);
//! ```

#[cfg(test)]
mod architecture;
pub mod bridge;
pub mod cli;
#[doc(hidden)]
pub mod client;
#[doc(hidden)]
pub mod cluster;

/// What a gameplay mod usually needs, in one import: `use ecliptic::prelude::*;`.
pub mod prelude {
    /// The bevy crates ecliptic is built on, at the versions it uses. Through these, bevy's
    /// derives (`#[derive(Component)]`, `Resource`, `Message`) work in a mod crate that
    /// depends on `ecliptic` alone: they name `bevy_ecs`, which this import provides.
    pub use bevy_app;
    pub use bevy_ecs;

    pub use crate::bridge::{ConnId, InboxCommand, Pending};
    pub use crate::params;
    pub use crate::protocol::tolerant;
    pub use crate::services::DomainError;
    pub use crate::sim::comms::{CommsAppExt, ExtensionCall};
    pub use crate::sim::data::{Commodity, StationDef, SystemDef};
    pub use crate::sim::extend::{Caller, FromClient, GameAppExt};
    pub use crate::sim::facts::{
        AchievementUnlocked, PlayerJoined, PlayerLeft, ProjectileHit, ShipDestroyed, ShipDocked,
        ShipUndocked, TradeDone, ZoneEntered, ZoneLeft,
    };
    pub use crate::sim::instances::{Data, InInstance, Instance};
    pub use crate::sim::markets::Market;
    pub use crate::sim::npc::{NpcPlugin, Pirate};
    pub use crate::sim::physics::Kinematics;
    pub use crate::sim::players::{Client, NetIds, Pilot, spawn_ship};
    pub use crate::sim::replication::Replicated;
    pub use crate::sim::ships::{Controls, Hull, Ship};
    pub use crate::sim::stations::Station;
    pub use crate::sim::{HandleCommands, SimServices, SpaceGamePlugins, Tick, TickRate, TickSet};
    pub use crate::store::StoreError;
    pub use crate::store::{Connection, OptionalExtension, Row, ToValue};
    pub use crate::{Config, Server, ServerHandle};
    pub use bevy_app::{App, FixedLast, FixedUpdate, Plugin, PluginGroup};
    pub use bevy_ecs::prelude::*;
    pub use uuid::Uuid;
}
pub mod config;
#[doc(hidden)]
pub mod encoding;
#[doc(hidden)]
pub mod journal;
#[doc(hidden)]
pub mod loadgen;

#[doc = include_str!("../docs/modding.md")]
pub mod modding {}

#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod net;
#[doc(hidden)]
pub mod protocol;
#[doc(hidden)]
pub mod scripting;
pub mod server;
#[doc(hidden)]
pub mod services;
#[doc(hidden)]
pub mod sim;
#[doc(hidden)]
pub mod store;

pub use config::Config;
pub use server::{Server, ServerHandle};
