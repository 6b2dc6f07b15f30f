//! The layers, held by tests: the top-level modules import each other without a cycle,
//! and the cluster port names no feature. (`protocol`'s tests hold the wire to it.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `path` (or `path` itself).
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules: `src/<name>.rs` and `src/<name>/`, the crate root aside.
fn top_level_modules() -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(src())
        .expect("src")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            let module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
            (module && name != "lib" && name != "main").then_some((name, path))
        })
        .collect()
}

/// The code of a file as the build sees it outside tests: comments and the trailing
/// `#[cfg(test)]` module left out.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a source file");
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a module's code names through `crate::…`.
fn imports(module: &str, path: &Path, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for file in rust_files(path) {
        let code = code(&file);
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != module && modules.contains_key(&name) {
                    named.insert(name);
                }
            }
        }
    }
    named
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules();
    modules
        .iter()
        .map(|(name, path)| (name.clone(), imports(name, path, &modules)))
        .collect()
}

/// A path through `graph` from `to` back to itself, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = graph();
    assert!(graph.len() > 10, "the modules were found: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cluster_port_names_no_feature() {
    let kernel: BTreeSet<&str> = [
        "config", "metrics", "bridge", "store", "encoding", "journal",
    ]
    .into_iter()
    .collect();
    let named = &graph()["cluster"];
    for module in named {
        assert!(
            kernel.contains(module.as_str()),
            "src/cluster.rs names {module}: a feature registers its own notes"
        );
    }
}

/// The test's reading of imports finds what is there.
#[test]
fn the_import_reader_sees_grouped_and_plain_paths() {
    let graph = graph();
    assert!(graph["net"].contains("sim"), "{:?}", graph["net"]);
    assert!(graph["cli"].contains("services"), "{:?}", graph["cli"]);
    assert!(
        graph["protocol"].contains("services"),
        "{:?}",
        graph["protocol"]
    );
}

/// Whether `text` (one line of code) passes a WebSocket close code as a number.
fn names_a_close_code(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.match_indices("close").any(|(at, _)| {
        let after = &lower[at..];
        let call = &after[..after.find([')', '}', ';']).unwrap_or(after.len())];
        call.split(|c: char| !c.is_ascii_digit())
            .filter_map(|number| number.parse::<u32>().ok())
            .any(|n| (1000..=1015).contains(&n) || (4000..=4999).contains(&n))
    }) || text.contains("const CLOSE_")
}

/// Close codes are the protocols' (`protocol::close`, one table); everyone else says
/// why a connection ends (`bridge::Ending`).
#[test]
fn no_module_outside_the_protocols_names_a_close_code() {
    assert!(names_a_close_code("link.close(1008, \"policy\");"));
    assert!(names_a_close_code("WsOut::Close(4001, reason)"));
    assert!(!names_a_close_code(
        "link.close(Ending::Done, \"room ended\");"
    ));
    for path in rust_files(&src()) {
        if path.starts_with(src().join("protocol")) || path.ends_with("architecture.rs") {
            continue;
        }
        for (number, line) in code(&path).lines().enumerate() {
            assert!(
                !names_a_close_code(line),
                "{}:{}: a close code outside protocol/: {line}",
                path.display(),
                number + 1
            );
        }
    }
}

/// The length in lines of every function in `text`: (name, first line, lines). Braces in
/// strings, characters and comments are not counted.
fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    // The functions whose body is open: (name, first line, depth of its body).
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => line += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    } else if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') || bytes.get(i + 1) == Some(&b'\\') => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'\'' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'f' if text[i..].starts_with("fn ")
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) =>
            {
                let name: String = text[i + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                pending = Some((name, line));
            }
            b';' if pending.is_some() && depth == open.last().map_or(0, |o| o.2) => {
                // A declaration without a body (a trait's).
                pending = None;
            }
            b'{' => {
                depth += 1;
                if let Some((name, first)) = pending.take() {
                    open.push((name, first, depth));
                }
            }
            b'}' => {
                if open.last().is_some_and(|o| o.2 == depth)
                    && let Some((name, first, _)) = open.pop()
                {
                    found.push((name, first, line - first + 1));
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Long functions hide what they do: none in `src/` is over 120 lines.
#[test]
fn no_function_is_over_120_lines() {
    let sample = "fn short() {\n    let s = \"}\";\n}\n\nfn longer() {\n    if x { y }\n\n}\n";
    assert_eq!(
        function_lengths(sample),
        [("short".to_owned(), 1, 3), ("longer".to_owned(), 5, 4)]
    );
    for path in rust_files(&src()) {
        let text = std::fs::read_to_string(&path).expect("a source file");
        for (name, first, lines) in function_lengths(&text) {
            assert!(
                lines <= 120,
                "{}:{first}: fn {name} is {lines} lines",
                path.display()
            );
        }
    }
}

/// One meaning per name: no two public types of one name, but for the protocols' own
/// (each module is one protocol, and `garp::Request` is read with its module).
#[test]
fn no_two_public_types_share_a_name() {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in rust_files(&src()) {
        if path.starts_with(src().join("protocol")) || path.ends_with("architecture.rs") {
            continue;
        }
        for line in code(&path).lines() {
            let line = line.trim_start();
            let Some(rest) = ["pub struct ", "pub enum ", "pub trait ", "pub type "]
                .iter()
                .find_map(|kind| line.strip_prefix(kind))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(other) = seen.insert(name.clone(), path.clone()) {
                panic!(
                    "two public types named {name}: {} and {}",
                    other.display(),
                    path.display()
                );
            }
        }
    }
    assert!(seen.contains_key("Store"), "the reader finds public types");
}

/// The simulation, the services and the scripts build no wire message: they produce
/// domain values and call the encoders the server hands them (`sim::encoders`). The one
/// exception is `sim::extend`, which registers plugins' `/game` message types with the
/// game protocol's decoder.
#[test]
fn only_the_protocols_and_the_endpoints_speak_the_wire() {
    let mut checked = 0;
    for layer in [
        "sim",
        "services",
        "scripting",
        "cluster.rs",
        "store",
        "bridge.rs",
    ] {
        for path in rust_files(&src().join(layer)) {
            if path.ends_with("sim/extend.rs") {
                continue;
            }
            checked += 1;
            let code = code(&path);
            assert!(
                !code.contains("protocol::"),
                "{} uses a protocol module: it should produce a domain value and let the \
                 protocol encode it",
                path.display()
            );
        }
    }
    assert!(checked > 40, "the layers were read ({checked} files)");
}

/// Wire messages are built in `protocol/` alone. No other module, whatever its layer (the
/// endpoints and the command line's clients included), writes a JSON object literal or a
/// JSON key by hand: it hands domain values to a protocol's encoder, or a protocol's typed
/// request to its client. Two modules build JSON that is not a message, and are named
/// here: the values Luau scripts are handed (`sim/scripts`, the shapes of the scripting
/// API that `docs/ecliptic.d.luau` declares) and a new studio project's stored document.
#[test]
fn no_module_outside_the_protocols_builds_a_wire_message() {
    const NOT_WIRE: &[&str] = &["sim/scripts/mod.rs", "services/studio.rs"];
    let mut checked = 0;
    for path in rust_files(&src()) {
        if path.starts_with(src().join("protocol")) || path.ends_with("architecture.rs") {
            continue;
        }
        let relative = path.strip_prefix(src()).expect("under src/");
        if NOT_WIRE
            .iter()
            .any(|allowed| relative == Path::new(allowed))
        {
            continue;
        }
        checked += 1;
        let code = code(&path);
        for (n, line) in code.lines().enumerate() {
            assert!(
                !line.contains("json!") && !line.contains("\\\":"),
                "{}:{}: a wire message built outside protocol/ (encode it there): {line}",
                path.display(),
                n + 1
            );
        }
    }
    assert!(checked > 80, "the modules were read ({checked} files)");
}

/// The supported surface is small and visible: every public module of the crate is one
/// of it or hidden from the docs, and the example mods use nothing else.
#[test]
fn the_modding_surface_is_what_the_docs_show() {
    const SUPPORTED: &[&str] = &["bridge", "cli", "config", "modding", "prelude", "server"];
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let mut previous = "";
    let mut modules = 0;
    for line in lib.lines() {
        if let Some(rest) = line.strip_prefix("pub mod ") {
            modules += 1;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                SUPPORTED.contains(&name.as_str()) || previous.trim() == "#[doc(hidden)]",
                "pub mod {name} is neither supported nor #[doc(hidden)]"
            );
        }
        previous = line;
    }
    assert!(modules > 10, "the modules were read");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for path in rust_files(&examples) {
        let text = std::fs::read_to_string(&path).expect("an example");
        for (at, _) in text.match_indices("ecliptic::") {
            let used = &text[at..];
            assert!(
                used.starts_with("ecliptic::prelude")
                    || used.starts_with("ecliptic::cli::main_with"),
                "{} reaches past the supported surface: {}",
                path.display(),
                used.lines().next().unwrap_or_default()
            );
        }
    }
}
