//! Progress bars for the long phases. indicatif hides them when stderr is not a terminal, so
//! CI logs only get the per-phase summary lines.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {pos}/{len} epochs, {elapsed} elapsed, ETA {eta} (upper bound) {msg}",
        )
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// A bar over users (ranking passes).
pub fn items_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {pos}/{len} users, {elapsed} elapsed, ETA {eta}",
        )
        .expect("progress template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
