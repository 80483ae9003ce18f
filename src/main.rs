//! The `crew` binary: everything lives in the library so it can be tested; this only turns the
//! result into an exit code.

fn main() -> std::process::ExitCode {
    crew::main_exit_code()
}
