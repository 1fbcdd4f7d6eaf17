//! Progress bars: one per source table, with items/s and an ETA.
//!
//! The ETA comes from DescribeTable's approximate ItemCount, so it is a
//! guide, not a promise (AWS refreshes that count about every six hours).
//! Bars are drawn only on a terminal and never with `--quiet`; otherwise
//! every call here is a no-op.

use std::io::IsTerminal as _;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one run.
pub struct Progress {
    bars: Vec<ProgressBar>,
    _multi: MultiProgress,
}

impl Progress {
    /// One bar per table: (name, expected item count).
    pub fn new(quiet: bool, tables: &[(String, u64)]) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = ProgressStyle::with_template(
            "{prefix:>28} {bar:30} {pos:>9}/{len:9} {per_sec:>12} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bars = tables
            .iter()
            .map(|(name, count)| {
                let bar = multi.add(ProgressBar::new(*count));
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar
            })
            .collect();
        Progress {
            bars,
            _multi: multi,
        }
    }

    /// Counts `n` items read from table `i`.
    pub fn inc(&self, i: usize, n: u64) {
        if let Some(b) = self.bars.get(i) {
            // The count is approximate: let the bar grow rather than stall at 100%.
            if b.position() + n > b.length().unwrap_or(0) {
                b.set_length(b.position() + n);
            }
            b.inc(n);
        }
    }

    /// Marks every bar done.
    pub fn finish(&self) {
        for b in &self.bars {
            b.finish();
        }
    }
}
