//! Progress bars: one per source table, with items/s and an ETA.
//!
//! The ETA comes from DescribeTable's approximate ItemCount (for a Scan) or
//! the manifests' item counts (for exports, which also count files), so it
//! is a guide, not a promise (AWS refreshes ItemCount about every six hours).
//! Bars are drawn only on a terminal and never with `--quiet`; otherwise
//! every call here is a no-op.

use std::io::IsTerminal as _;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one run.
pub struct Progress {
    bars: Vec<ProgressBar>,
    files: Vec<(std::sync::atomic::AtomicUsize, usize)>,
    _multi: MultiProgress,
}

impl Progress {
    /// One bar per table: (name, expected item count, export files to read).
    pub fn new(quiet: bool, tables: &[(String, u64, usize)]) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = ProgressStyle::with_template(
            "{prefix:>28} {bar:30} {pos:>9}/{len:9} {rate:>10} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        );
        let bars = tables
            .iter()
            .map(|(name, count, files)| {
                let bar = multi.add(ProgressBar::new(*count));
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                if *files > 0 {
                    bar.set_message(format!("files 0/{files}"));
                }
                bar
            })
            .collect();
        let files = tables
            .iter()
            .map(|t| (std::sync::atomic::AtomicUsize::new(0), t.2))
            .collect();
        Progress {
            bars,
            files,
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

    /// Counts one export file of table `i` read to the end.
    pub fn file_done(&self, i: usize) {
        if let (Some(b), Some((done, total))) = (self.bars.get(i), self.files.get(i)) {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            b.set_message(format!("files {n}/{total}"));
        }
    }

    /// Marks every bar done.
    pub fn finish(&self) {
        for b in &self.bars {
            b.finish();
        }
    }
}
