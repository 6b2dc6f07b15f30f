//! The `ecliptic` command: the stock server and the operator's helper commands.

fn main() -> std::process::ExitCode {
    ecliptic::cli::main_with(|server| server)
}
