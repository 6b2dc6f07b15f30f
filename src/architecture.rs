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
