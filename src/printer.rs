//! Output: data on stdout, everything else on stderr.
//!
//! Decisions, and why:
//! - **stdout is for data only** (tables, JSON, a path), so `crew status --json | jq` and
//!   `cd "$(crew cache path)"` work; progress, warnings and errors go to stderr (as in uv's
//!   `printer.rs`).
//! - **`--quiet` silences stderr chatter, never data or errors**: a script asking for data
//!   wants it.
//! - **Colour is decided once per stream** from `--color`, `NO_COLOR` and whether the stream is
//!   a terminal; `--color always` beats `NO_COLOR`, as <https://no-color.org> allows for explicit
//!   flags. Escape codes are written by hand: six colours do not justify a dependency.
//! - **Renderers take `&mut dyn Write`**, so tests read exactly what a command printed via
//!   [`Printer::capture`].
//! - **A closed stdout is not an error** (`crew status | head -1`): the reader got what it wanted.

use std::fmt::{self, Display};
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::env_vars;
use crate::error::CrewError;
use crate::settings::Env;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when the stream is a terminal and `NO_COLOR` is unset
    #[default]
    Auto,
    /// Always colour, even into a pipe or with `NO_COLOR` set
    Always,
    /// Never colour
    Never,
}

impl ColorChoice {
    /// Whether to colour a stream that is (or is not) a terminal, given the environment.
    pub fn enabled(self, is_terminal: bool, env: &Env) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal
                    && env.get(env_vars::NO_COLOR).is_none()
                    && env.get(env_vars::TERM) != Some("dumb")
            }
        }
    }
}

/// How much goes to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Data and errors only.
    Quiet,
    Normal,
    /// `-v` (1), `-vv` (2), ...
    Verbose(u8),
}

impl Verbosity {
    /// From `-q` and the `-v` count (clap makes them mutually exclusive).
    pub fn from_flags(quiet: bool, verbose: u8) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, count) => Verbosity::Verbose(count),
        }
    }
}

/// Colours for text, or no-ops when colour is off. Renderers ask the printer for one per stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    enabled: bool,
}

/// A piece of text with an optional SGR code around it.
pub struct Painted<T> {
    code: Option<&'static str>,
    text: T,
}

impl<T: Display> Display for Painted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "\x1b[{code}m{}\x1b[0m", self.text),
            None => self.text.fmt(f),
        }
    }
}

impl Style {
    /// A style that colours (or not).
    pub fn new(enabled: bool) -> Self {
        Style { enabled }
    }

    /// Whether colour is on.
    pub fn enabled(self) -> bool {
        self.enabled
    }

    fn paint<T: Display>(self, code: &'static str, text: T) -> Painted<T> {
        Painted {
            code: self.enabled.then_some(code),
            text,
        }
    }

    pub fn bold<T: Display>(self, text: T) -> Painted<T> {
        self.paint("1", text)
    }

    pub fn dim<T: Display>(self, text: T) -> Painted<T> {
        self.paint("2", text)
    }

    pub fn red<T: Display>(self, text: T) -> Painted<T> {
        self.paint("1;31", text)
    }

    pub fn green<T: Display>(self, text: T) -> Painted<T> {
        self.paint("32", text)
    }

    pub fn yellow<T: Display>(self, text: T) -> Painted<T> {
        self.paint("1;33", text)
    }

    pub fn cyan<T: Display>(self, text: T) -> Painted<T> {
        self.paint("36", text)
    }
}

type Buffer = Arc<Mutex<Vec<u8>>>;

/// Where one stream goes.
#[derive(Clone)]
enum Sink {
    Stdout,
    Stderr,
    Buffer(Buffer),
}

impl Sink {
    fn write_with(&self, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut lock = io::stdout().lock();
                render(&mut lock)?;
                lock.flush()
            }
            Sink::Stderr => {
                let mut lock = io::stderr().lock();
                render(&mut lock)?;
                lock.flush()
            }
            Sink::Buffer(buffer) => {
                let mut bytes = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                render(&mut *bytes)
            }
        }
    }
}

/// Writes command output; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Printer {
    verbosity: Verbosity,
    out: Sink,
    err: Sink,
    out_style: Style,
    err_style: Style,
}

impl fmt::Debug for Printer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Printer")
            .field("verbosity", &self.verbosity)
            .field("out_style", &self.out_style)
            .field("err_style", &self.err_style)
            .finish_non_exhaustive()
    }
}

/// What a captured printer wrote, for tests.
#[derive(Clone, Default)]
pub struct Captured {
    out: Buffer,
    err: Buffer,
}

impl Captured {
    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}

impl Printer {
    /// A printer on the real stdout and stderr.
    pub fn new(verbosity: Verbosity, color: ColorChoice, env: &Env) -> Self {
        Printer {
            verbosity,
            out: Sink::Stdout,
            err: Sink::Stderr,
            out_style: Style::new(color.enabled(io::stdout().is_terminal(), env)),
            err_style: Style::new(color.enabled(io::stderr().is_terminal(), env)),
        }
    }

    /// A printer writing into memory, without colour unless asked; read it back with the
    /// returned [`Captured`].
    pub fn capture(verbosity: Verbosity, color: bool) -> (Self, Captured) {
        let captured = Captured::default();
        let printer = Printer {
            verbosity,
            out: Sink::Buffer(captured.out.clone()),
            err: Sink::Buffer(captured.err.clone()),
            out_style: Style::new(color),
            err_style: Style::new(color),
        };
        (printer, captured)
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// Colours for what goes to stdout.
    pub fn out_style(&self) -> Style {
        self.out_style
    }

    /// Colours for what goes to stderr.
    pub fn err_style(&self) -> Style {
        self.err_style
    }

    /// Whether stderr is a terminal (never for a captured printer): progress bars are drawn only
    /// there, as they redraw lines in place.
    pub fn err_is_terminal(&self) -> bool {
        match self.err {
            Sink::Stderr => io::stderr().is_terminal(),
            Sink::Stdout => io::stdout().is_terminal(),
            Sink::Buffer(_) => false,
        }
    }

    /// Whether to draw progress bars: on a terminal only (they redraw lines in place), and not
    /// with `-q` or `--json` (`json`), whose callers want data and nothing else.
    pub fn shows_progress(&self, json: bool) -> bool {
        self.err_is_terminal() && self.verbosity != Verbosity::Quiet && !json
    }

    /// A progress bar on stderr over `len` steps named `what`, or a hidden one (every call on it
    /// a no-op) when [`Printer::shows_progress`] says no. Finish it with `finish_and_clear`.
    pub fn progress(&self, len: u64, what: &str, json: bool) -> ProgressBar {
        if !self.shows_progress(json) {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len}")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(what.to_string());
        bar
    }

    /// Writes data to stdout. A closed pipe counts as success; other failures are internal errors.
    pub fn out(
        &self,
        render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), CrewError> {
        match self.out.write_with(render) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(error) => Err(CrewError::internal(error)),
        }
    }

    /// Writes one line of data to stdout.
    pub fn out_line(&self, line: impl Display) -> Result<(), CrewError> {
        self.out(|w| writeln!(w, "{line}"))
    }

    /// Writes a view struct as pretty JSON on stdout, newline-terminated.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), CrewError> {
        let text = serde_json::to_string_pretty(value).map_err(CrewError::internal)?;
        self.out(|w| writeln!(w, "{text}"))
    }

    /// Writes to stderr regardless of verbosity. Failures to write to stderr are ignored: there is
    /// nowhere left to report them.
    pub fn err(&self, render: impl FnOnce(&mut dyn Write, Style) -> io::Result<()>) {
        let style = self.err_style;
        let _ = self.err.write_with(|w| render(w, style));
    }

    /// A progress or status line on stderr, unless `--quiet`.
    pub fn status(&self, message: impl Display) {
        if self.verbosity != Verbosity::Quiet {
            self.err(|w, _| writeln!(w, "{message}"));
        }
    }

    /// `warning: ...` on stderr, unless `--quiet`.
    pub fn warn(&self, message: impl Display) {
        if self.verbosity != Verbosity::Quiet {
            self.err(|w, style| writeln!(w, "{}: {message}", style.yellow("warning")));
        }
    }

    /// Detail shown only with `-v` or more.
    pub fn verbose(&self, message: impl Display) {
        if matches!(self.verbosity, Verbosity::Verbose(_)) {
            self.err(|w, style| writeln!(w, "{}", style.dim(message)));
        }
    }

    /// Reports a failure on stderr, always: the message, its causes, then its hints.
    pub fn error(&self, error: &CrewError) {
        self.err(|w, style| render_error(w, style, error));
    }
}

/// `error: message`, one `caused by:` per source, then `hint:` lines.
pub fn render_error(w: &mut dyn Write, style: Style, error: &CrewError) -> io::Result<()> {
    let mut chain = error.chain().into_iter();
    if let Some(message) = chain.next() {
        writeln!(w, "{}: {message}", style.red("error"))?;
    }
    for cause in chain {
        writeln!(w, "  {} {cause}", style.dim("caused by:"))?;
    }
    for hint in error.hints() {
        writeln!(w, "{}: {hint}", style.cyan("hint"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct View {
        issue: u64,
        state: &'static str,
    }

    #[test]
    fn data_goes_to_stdout_and_chatter_to_stderr() {
        let (printer, captured) = Printer::capture(Verbosity::Normal, false);
        printer.out_line("/tmp/cache").unwrap();
        printer.status("fetching issues");
        printer.warn("lease expired");
        printer.verbose("GET /repos/a/b");
        assert_eq!(captured.stdout(), "/tmp/cache\n");
        assert_eq!(
            captured.stderr(),
            "fetching issues\nwarning: lease expired\n"
        );
    }

    #[test]
    fn quiet_keeps_data_and_errors() {
        let (printer, captured) = Printer::capture(Verbosity::Quiet, false);
        printer.out_line("42").unwrap();
        printer.status("hidden");
        printer.warn("hidden");
        printer.error(&CrewError::user("issue #42 is closed").with_hint("reopen it first"));
        assert_eq!(captured.stdout(), "42\n");
        assert_eq!(
            captured.stderr(),
            "error: issue #42 is closed\nhint: reopen it first\n"
        );
    }

    #[test]
    fn verbose_shows_detail() {
        let (printer, captured) = Printer::capture(Verbosity::from_flags(false, 2), false);
        printer.verbose("GET /repos/a/b");
        assert_eq!(captured.stderr(), "GET /repos/a/b\n");
    }

    #[test]
    fn json_is_pretty_and_on_stdout() {
        let (printer, captured) = Printer::capture(Verbosity::Quiet, false);
        printer
            .json(&View {
                issue: 42,
                state: "working",
            })
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&captured.stdout()).unwrap();
        assert_eq!(value, serde_json::json!({"issue": 42, "state": "working"}));
        assert_eq!(captured.stderr(), "");
    }

    #[test]
    fn errors_show_causes_and_hints() {
        let error = CrewError::internal(io::Error::other("disk full")).with_hint("free some space");
        let mut out = Vec::new();
        render_error(&mut out, Style::new(false), &error).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "error: disk full\nhint: free some space\n"
        );
    }

    #[test]
    fn colour_follows_flag_terminal_and_no_color() {
        let plain = Env::from_pairs([("TERM", "xterm")]);
        let no_color = Env::from_pairs([("NO_COLOR", "1")]);
        let empty_no_color = Env::from_pairs([("NO_COLOR", "")]);
        let dumb = Env::from_pairs([("TERM", "dumb")]);
        assert!(ColorChoice::Auto.enabled(true, &plain));
        assert!(!ColorChoice::Auto.enabled(false, &plain));
        assert!(!ColorChoice::Auto.enabled(true, &no_color));
        assert!(ColorChoice::Auto.enabled(true, &empty_no_color));
        assert!(!ColorChoice::Auto.enabled(true, &dumb));
        assert!(ColorChoice::Always.enabled(false, &no_color));
        assert!(!ColorChoice::Never.enabled(true, &plain));
    }

    #[test]
    fn progress_is_hidden_off_a_terminal() {
        let (printer, _) = Printer::capture(Verbosity::Normal, true);
        assert!(!printer.shows_progress(false));
        assert!(printer.progress(3, "worktrees", false).is_hidden());
    }

    #[test]
    fn styles_are_no_ops_without_colour() {
        assert_eq!(Style::new(false).red("error").to_string(), "error");
        assert_eq!(
            Style::new(true).red("error").to_string(),
            "\x1b[1;31merror\x1b[0m"
        );
        let (printer, captured) = Printer::capture(Verbosity::Normal, true);
        printer.warn("x");
        assert_eq!(captured.stderr(), "\x1b[1;33mwarning\x1b[0m: x\n");
    }
}
