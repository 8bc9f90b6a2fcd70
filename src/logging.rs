//! Logging set-up shared by the binaries: `tracing` with an `EnvFilter` (`RUST_LOG`, default
//! `info`), text or JSON, and ANSI colours only when the log stream is a terminal and `NO_COLOR`
//! is unset — logs collected from a pipe or a file (Kubernetes, systemd, CI) must not carry
//! escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Whether colours suit `stream`: a terminal, and no `NO_COLOR` (https://no-color.org).
pub fn use_colour(stream: Stream) -> bool {
    let terminal = match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(json: bool, stream: Stream) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (json, stream) {
        (true, Stream::Stdout) => builder.json().init(),
        (true, Stream::Stderr) => builder.json().with_writer(std::io::stderr).init(),
        (false, Stream::Stdout) => builder.with_ansi(use_colour(stream)).init(),
        (false, Stream::Stderr) => builder
            .with_ansi(use_colour(stream))
            .with_writer(std::io::stderr)
            .init(),
    }
}
