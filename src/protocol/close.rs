//! Every WebSocket close code the server sends, in one table: why a connection ends
//! ([`Ending`]) is decided where it happens; what code that is on each endpoint is decided
//! here, once. A test keeps close codes out of every other module.

pub use crate::bridge::Ending;

/// The WebSocket endpoints, as their close codes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/game` (realtime-game.md).
    Game,
    /// `/ws` (comms-ws.md).
    Comms,
    /// `/raos` (raos-integration.md).
    Raos,
    /// `/fs/{gametoken}/{protocolid}` and its redirect `/ws/{gametoken}/{protocolid}`.
    Garp,
}

impl Endpoint {
    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Game => "game",
            Endpoint::Comms => "comms",
            Endpoint::Raos => "raos",
            Endpoint::Garp => "garp",
        }
    }
}

/// The close code of `ending` on `endpoint`.
pub fn code(endpoint: Endpoint, ending: Ending) -> u16 {
    use Ending::*;
    match (endpoint, ending) {
        (_, Done) => 1000,
        (_, Shutdown) => 1001,
        (_, NotUtf8) => 1007,
        (_, TooBig) => 1009,
        (_, Busy) => 1013,
        // comms-ws.md: 4001 is the token's end, 4002 a missed pong.
        (Endpoint::Comms, SessionEnded | TokenExpired) => 4001,
        (Endpoint::Comms, NoPong) => 4002,
        // realtime-game.md: a session another login took over.
        (Endpoint::Game, SessionReplaced) => 4001,
        // garp.md: the connection is refused.
        (Endpoint::Garp, Refused) => 4000,
        (_, TooSlow | NotAuthenticated | SessionEnded | SessionReplaced)
        | (_, TokenExpired | NoPong | Refused) => 1008,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes the specs name, where they name them.
    #[test]
    fn the_specs_codes() {
        assert_eq!(code(Endpoint::Comms, Ending::TokenExpired), 4001);
        assert_eq!(code(Endpoint::Comms, Ending::SessionEnded), 4001);
        assert_eq!(code(Endpoint::Comms, Ending::NoPong), 4002);
        assert_eq!(code(Endpoint::Game, Ending::SessionReplaced), 4001);
        assert_eq!(code(Endpoint::Garp, Ending::Refused), 4000);
        for endpoint in [
            Endpoint::Game,
            Endpoint::Comms,
            Endpoint::Raos,
            Endpoint::Garp,
        ] {
            assert_eq!(code(endpoint, Ending::Shutdown), 1001);
            assert_eq!(code(endpoint, Ending::TooSlow), 1008);
            assert_eq!(code(endpoint, Ending::NotAuthenticated), 1008);
        }
        assert_eq!(code(Endpoint::Raos, Ending::SessionEnded), 1008);
        assert_eq!(code(Endpoint::Game, Ending::SessionEnded), 1008);
    }
}
