//! The `highlander` command; see the `highlander_cli` library.

fn main() -> std::process::ExitCode {
    highlander_cli::main()
}
