//! Progress bars for long work, on stderr when it is a terminal; hidden otherwise, so logs,
//! tests and the journal see only log lines.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `total` steps of `what` (e.g. "operations"), with rate and ETA.
pub fn bar(total: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {what} · {{rate}} · ETA {{eta}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", s.per_sec());
        })
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
        .with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_hidden_unless_stderr_is_a_terminal() {
        assert_eq!(
            bar(10, "operations").is_hidden(),
            !std::io::stderr().is_terminal()
        );
    }
}
