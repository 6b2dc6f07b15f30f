//! A mod crate made the way a stranger would make it from `docs/modding.md`: a new crate
//! outside this repository's workspace, `ecliptic` added by path and `serde` as the guide
//! says, the repository's `Cargo.lock` copied in, and every Rust block of the guide as its
//! code (so the guide and this test cannot drift). It must build, and its server must
//! greet a player over `/game` as the guide promises.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::{self, ChildServer, GameClient};

const GUIDE: &str = include_str!("../../docs/modding.md");

/// The guide's fenced blocks of a kind (`sh`, `rust`, `rust,no_run`), in order.
fn blocks(kind: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in GUIDE.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(tag)) if tag == kind => current = Some(String::new()),
            (Some(block), Some("")) => {
                found.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    found
}

/// A block as a module of the mod crate, compiled as rustdoc compiles it: the whole block
/// is the body of a function (items and statements alike), hidden lines (`# …`) included.
fn as_module(block: &str) -> String {
    let code: Vec<&str> = block
        .lines()
        .map(|l| match l {
            "#" => "",
            l => l.strip_prefix("# ").unwrap_or(l),
        })
        .collect();
    format!(
        "#![allow(dead_code, unused)]\npub fn guide() {{\n{}\n}}\n",
        code.join("\n")
    )
}

/// `cargo` as a stranger runs it: none of what `cargo test` sets for this test.
fn cargo(dir: &Path) -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_tests = key.starts_with("CARGO_")
            && !matches!(&*key, "CARGO_HOME" | "CARGO_TARGET_DIR")
            || key == "LD_LIBRARY_PATH"
            || key == "RUSTFLAGS";
        if set_for_tests {
            cargo.env_remove(&*key);
        }
    }
    cargo.current_dir(dir);
    cargo
}

fn run(command: &mut Command) {
    let out = command.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "{command:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This test binary's target directory (`target/`), shared so that the mod crate reuses
/// what is built already.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<binary>")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mod_crate_built_from_the_guide_outside_the_repository_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let setup = &blocks("sh")[0];
    for step in [
        "cargo new --bin my-server",
        "cargo add serde --features derive",
    ] {
        assert!(setup.contains(step), "the guide's first step: {setup}");
    }
    assert!(setup.contains("--path"), "the guide's first step: {setup}");
    let dir = tempfile::tempdir().expect("a temp dir");
    run(cargo(dir.path()).args(["new", "--bin", "--vcs", "none", "my-server"]));
    let krate = dir.path().join("my-server");
    run(cargo(&krate)
        .arg("add")
        .arg("ecliptic")
        .arg("--path")
        .arg(repo));
    run(cargo(&krate).args(["add", "serde", "--features", "derive"]));
    std::fs::copy(repo.join("Cargo.lock"), krate.join("Cargo.lock")).expect("the lock file");

    let main = &blocks("rust,no_run")[0];
    let mut source = main.clone();
    for (n, block) in blocks("rust").iter().enumerate() {
        let name = format!("guide_{n}");
        std::fs::write(
            krate.join("src").join(format!("{name}.rs")),
            as_module(block),
        )
        .expect("a module");
        source.push_str(&format!("mod {name};\n"));
    }
    std::fs::write(krate.join("src/main.rs"), source).expect("main.rs");
    let target = target_dir();
    run(cargo(&krate).arg("build").env("CARGO_TARGET_DIR", &target));

    let (_tmp, data) = common::temp_data_dir();
    let server = ChildServer::spawn_program(&target.join("debug/my-server"), &data, &[]);
    let http = reqwest::Client::new();
    let login = common::register_and_login_at(&http, &server.url(""), "ann", "pw-secret").await;
    let mut game = GameClient::connect_to(server.http).await;
    game.login(login["access_token"].as_str().expect("a token"))
        .await;
    game.send("session.join_system", json!({"system_id": "sol-1"}))
        .await;
    let hello = game.recv_type("greeter.hello").await;
    assert_eq!(hello["payload"], "welcome to sol-1", "{hello}");
}

/// The examples are what a modder copies: they reach the server only through the prelude
/// and `cli::main_with`, the supported surface.
#[test]
fn the_examples_use_only_the_prelude_and_main_with() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples).expect("examples/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("an example");
        for (at, _) in text.match_indices("ecliptic::") {
            let rest = &text[at + "ecliptic::".len()..];
            assert!(
                rest.starts_with("prelude::") || rest.starts_with("cli::main_with"),
                "{} reaches past the prelude: ecliptic::{}",
                path.display(),
                rest.lines().next().unwrap_or("")
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} examples");
}
