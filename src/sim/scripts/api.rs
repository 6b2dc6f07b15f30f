//! The `ecliptic` table, declared once: each function's name, who may call it, and its
//! type as `docs/ecliptic.d.luau` writes it. The host looks a call up here and checks
//! who may make it before any function runs, so a function cannot be added without
//! saying who may call it; the tests below hold the type file and the tables of
//! `docs/scripting.md` to this list.

use crate::scripting::package::Permission;

/// Who may call a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every script: reads, hooks, the clock.
    Anyone,
    /// A mod granted this permission in its `mod.toml` (a room's script never is).
    Needs(Permission),
    /// A room's script only.
    Rooms,
}

/// One function of the `ecliptic` table.
#[derive(Debug)]
pub struct ApiFunction {
    pub name: &'static str,
    pub access: Access,
    /// Its type, as the definitions file gives it to editors.
    pub luau: &'static str,
}

const fn function(name: &'static str, access: Access, luau: &'static str) -> ApiFunction {
    ApiFunction { name, access, luau }
}

use Access::{Anyone, Needs, Rooms};
use Permission::{Comms, Credits, Messages, Ships, Store};

/// Every function of the `ecliptic` table.
pub const API: &[ApiFunction] = &[
    function(
        "on",
        Anyone,
        "(event: Event, handler: (fact: any) -> ()) -> ()",
    ),
    function(
        "on_message",
        Needs(Messages),
        "(kind: string, handler: (player: { user: string, name: string, seq: number }, payload: any) -> (any, string?)) -> ()",
    ),
    function("tick", Anyone, "() -> number"),
    function("now", Anyone, "() -> number"),
    function("ships", Anyone, "(instance: string?) -> { Ship }"),
    function("ship", Anyone, "(id: string) -> Ship?"),
    function("stations", Anyone, "(instance: string?) -> { Station }"),
    function("zones", Anyone, "(instance: string?) -> { Zone }"),
    function(
        "spawn_npc",
        Needs(Ships),
        "(spec: { instance: string?, x: number, y: number, class: string? }) -> string",
    ),
    function("remove_npc", Needs(Ships), "(id: string) -> boolean"),
    function(
        "damage",
        Needs(Ships),
        "(id: string, amount: number) -> number",
    ),
    function(
        "repair",
        Needs(Ships),
        "(id: string, amount: number) -> number",
    ),
    function(
        "grant",
        Needs(Credits),
        "(user: string, amount: number, callback: Callback?) -> ()",
    ),
    function(
        "charge",
        Needs(Credits),
        "(user: string, amount: number, callback: Callback?) -> ()",
    ),
    function(
        "send",
        Needs(Messages),
        "(user: string, kind: string, payload: any) -> boolean",
    ),
    function(
        "broadcast",
        Needs(Messages),
        "(kind: string, payload: any, instance: string?) -> number",
    ),
    function(
        "publish",
        Needs(Comms),
        "(topic: string, payload: any) -> number",
    ),
    function(
        "store_get",
        Needs(Store),
        "(key: string, callback: Callback) -> ()",
    ),
    function(
        "store_set",
        Needs(Store),
        "(key: string, value: any, callback: Callback?) -> ()",
    ),
    function("finish", Rooms, "(scores: { [string]: number }) -> ()"),
];

/// The function named `name`, if the table has one.
pub fn find(name: &str) -> Option<&'static ApiFunction> {
    API.iter().find(|f| f.name == name)
}

/// The names, for the VM to build the table from.
pub fn names() -> Vec<&'static str> {
    API.iter().map(|f| f.name).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const DEFINITIONS: &str = include_str!("../../../docs/ecliptic.d.luau");
    const GUIDE: &str = include_str!("../../../docs/scripting.md");

    /// The rows of the guide's table whose header starts with `header`: first cell, second.
    fn table(header: &str) -> Vec<(String, String)> {
        let start = GUIDE
            .find(header)
            .unwrap_or_else(|| panic!("docs/scripting.md has a table {header:?}"));
        GUIDE[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells[1].to_owned(), cells[2].to_owned())
            })
            .collect()
    }

    fn unquoted(cell: &str) -> &str {
        cell.trim_matches('`')
    }

    #[test]
    fn the_definitions_file_types_every_function_as_declared() {
        let start = DEFINITIONS
            .find("declare ecliptic: {")
            .expect("the declaration");
        let typed: BTreeMap<&str, &str> = DEFINITIONS[start..]
            .lines()
            .skip(1)
            .take_while(|line| line.trim() != "}")
            .filter_map(|line| line.trim().trim_end_matches(',').split_once(": "))
            .collect();
        let declared: BTreeMap<&str, &str> = API.iter().map(|f| (f.name, f.luau)).collect();
        assert_eq!(typed, declared);
    }

    #[test]
    fn the_guide_lists_every_function_once_with_its_permission() {
        let listed: Vec<String> = table("| function | returns |")
            .iter()
            .map(|(call, _)| {
                let call = unquoted(call);
                call[..call.find(['(', '{']).unwrap_or(call.len())].to_owned()
            })
            .collect();
        let declared: Vec<String> = API.iter().map(|f| f.name.to_owned()).collect();
        assert_eq!(listed, declared, "docs/scripting.md's functions, in order");

        let allowed: BTreeMap<String, BTreeSet<String>> = table("| permission | allows |")
            .into_iter()
            .map(|(permission, functions)| {
                let functions = functions
                    .split(',')
                    .map(|f| unquoted(f.trim()).to_owned())
                    .collect();
                (unquoted(&permission).to_owned(), functions)
            })
            .collect();
        let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for function in API {
            if let Needs(permission) = function.access {
                needed
                    .entry(permission.as_str().to_owned())
                    .or_default()
                    .insert(function.name.to_owned());
            }
        }
        assert_eq!(allowed, needed, "docs/scripting.md's permission table");
    }
}
