//! A modded server in a dozen lines: the stock `ecliptic` command line (every flag and
//! subcommand), without the built-in pirates, and with a plugin that logs each ship
//! destroyed.
//!
//! ```sh
//! cargo run --release --example peaceful -- --http 127.0.0.1:8080
//! ```

use ecliptic::prelude::*;

/// Logs every ship destroyed (none, without pirates, unless players fight).
struct DestructionLog;

fn log_destroyed(mut destroyed: MessageReader<ShipDestroyed>) {
    for fact in destroyed.read() {
        tracing::info!(victim = ?fact.victim_user, killer = ?fact.killer_user, "ship destroyed");
    }
}

impl Plugin for DestructionLog {
    fn build(&self, app: &mut App) {
        app.add_systems(FixedLast, log_destroyed);
    }
}

fn main() -> std::process::ExitCode {
    ecliptic::cli::main_with(|server| {
        server
            .game_plugins(|game| game.disable::<NpcPlugin>())
            .add_plugin(DestructionLog)
    })
}
