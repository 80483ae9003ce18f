//! CLI polish: shell completions, examples in `--help`, and colour that follows `NO_COLOR` and
//! `--color`. None of these need GitHub.

use std::process::Output;

use crate::support::TestResult;

/// `crew <args>` in an empty directory (not a clone) with only `extra_env` set.
fn crew(args: &[&str], extra_env: &[(&str, &str)]) -> TestResult<Output> {
    let dir = tempfile::tempdir()?;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_crew"));
    command
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm");
    for (name, value) in extra_env {
        command.env(name, value);
    }
    Ok(command.output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn completions_name_the_subcommands_for_every_shell() -> TestResult {
    let bash = crew(&["completions", "bash"], &[])?;
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert!(script.contains("complete "), "{script}");
    for command in ["dispatch", "request-changes", "gc", "init", "completions"] {
        assert!(script.contains(command), "bash completions lack {command}");
    }
    for shell in ["zsh", "fish"] {
        let output = crew(&["completions", shell], &[])?;
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains("dispatch"), "{shell}");
    }
    let bad = crew(&["completions", "tcsh"], &[])?;
    assert_eq!(bad.status.code(), Some(2));
    Ok(())
}

#[test]
fn help_shows_examples() -> TestResult {
    let output = crew(&["dispatch", "--help"], &[])?;
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(help.contains("Examples:"), "{help}");
    assert!(
        help.contains("crew dispatch 42 --profile research"),
        "{help}"
    );
    for command in [
        "init", "doctor", "status", "fill", "merge", "cancel", "done", "gc", "cache",
    ] {
        let output = crew(&[command, "--help"], &[])?;
        assert!(
            stdout(&output).contains("Examples:"),
            "`crew {command} --help` has no examples"
        );
    }
    Ok(())
}

#[test]
fn errors_are_coloured_only_when_allowed() -> TestResult {
    // Not a clone: `crew init` fails with a user error and a hint, without touching GitHub.
    let escape = '\x1b';
    let no_color = crew(&["init"], &[("NO_COLOR", "1")])?;
    assert_eq!(no_color.status.code(), Some(1));
    let text = stderr(&no_color);
    assert!(text.starts_with("error: crew init needs a clone"), "{text}");
    assert!(text.contains("\nhint: "), "{text}");
    assert!(!text.contains(escape), "{text:?}");

    let never = crew(&["init", "--color", "never"], &[])?;
    assert!(!stderr(&never).contains(escape), "{:?}", stderr(&never));

    // stderr is a pipe here, so `auto` is off too.
    let auto = crew(&["init"], &[])?;
    assert!(!stderr(&auto).contains(escape), "{:?}", stderr(&auto));

    // `--color always` beats NO_COLOR (an explicit flag wins, as no-color.org allows).
    let always = crew(&["--color", "always", "init"], &[("NO_COLOR", "1")])?;
    let text = stderr(&always);
    assert!(
        text.contains("\x1b[1;31merror\x1b[0m: crew init"),
        "{text:?}"
    );
    assert!(text.contains("\x1b[36mhint\x1b[0m: "), "{text:?}");
    Ok(())
}
