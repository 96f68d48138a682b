//! `highlander-sqlite`: the whole `highlander` command (run, status, reset, conformance,
//! chaos, demo) with the SQLite store added to the backends compiled in.

fn main() -> std::process::ExitCode {
    highlander_cli::main_with(&[&lock_sqlite::BACKEND])
}
