//! Progress: what a long run shows while it goes.
//!
//! On a terminal, one bar per source table of the records whose fate is
//! settled (written, deleted, filtered, dead-lettered or not written: what
//! the sink and the dead-letter file counted, not what was read), with
//! the records read beside it, and an overall bar with its rate and ETA.
//! Without a terminal (nohup, cron, Kubernetes, CI) one line goes to stderr
//! every `--progress-interval` with the same figures, so a run is never
//! silent for long. `--quiet` shows neither. Notices (a signal, a drain)
//! are printed above the bars, never drawn over. The expected counts come
//! from DescribeTable's approximate ItemCount (a Scan) or the manifests
//! (exports), so the ETA is a guide, not a promise.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::RunStats;

/// How often the bars are brought up to date.
const REDRAW: Duration = Duration::from_millis(500);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Bars,
    /// A line every so often (no terminal).
    Lines(Duration),
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines every `every` without one, nothing if quiet.
    pub fn detect(quiet: bool, every: Duration) -> Mode {
        match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Bars,
            (false, false) => Mode::Lines(every),
        }
    }
}

/// One table's figures.
struct Table {
    name: String,
    expected: u64,
    read: AtomicU64,
    files_done: AtomicUsize,
    files: usize,
    bar: ProgressBar,
}

/// The progress of one run.
pub struct Progress {
    mode: Mode,
    tables: Vec<Table>,
    total: ProgressBar,
    multi: MultiProgress,
    /// Records settled per table.
    settled: Box<dyn Fn(usize) -> u64 + Send + Sync>,
    /// The run's counters, for the sink's rate (none for `plan`).
    stats: Option<Arc<RunStats>>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// A signal came: the run finishes what it read.
    draining: std::sync::atomic::AtomicBool,
    /// A follow's lag, a line per table.
    lag: Mutex<Option<LagLines>>,
}

/// A follow's lag lines, one per table, made when shown.
pub type LagLines = Box<dyn Fn() -> Vec<String> + Send + Sync>;

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
}

impl Progress {
    /// Progress of a run over `tables`: (name, expected records, export
    /// files), the settled counts read from `stats`. Call
    /// [`Progress::start`] in a runtime.
    pub fn new(mode: Mode, tables: &[(String, u64, usize)], stats: Arc<RunStats>) -> Progress {
        let counts = stats.clone();
        let settled = Box::new(move |i| counts.settled(i));
        Progress::counting(mode, tables, settled, Some(stats))
    }

    /// Progress over `tables` with settled counts from `settled` (by table).
    pub fn counting(
        mode: Mode,
        tables: &[(String, u64, usize)],
        settled: Box<dyn Fn(usize) -> u64 + Send + Sync>,
        stats: Option<Arc<RunStats>>,
    ) -> Progress {
        let target = match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        };
        let multi = MultiProgress::with_draw_target(target);
        let per_table = style("{prefix:>28} {bar:30} {pos:>9}/{len:9} {msg}");
        let tables: Vec<Table> = tables
            .iter()
            .map(|(name, expected, files)| {
                let bar = multi.add(ProgressBar::new(*expected));
                bar.set_style(per_table.clone());
                bar.set_prefix(name.clone());
                Table {
                    name: name.clone(),
                    expected: *expected,
                    read: AtomicU64::new(0),
                    files_done: AtomicUsize::new(0),
                    files: *files,
                    bar,
                }
            })
            .collect();
        let expected = tables.iter().map(|t| t.expected).sum();
        let total = multi.add(ProgressBar::new(expected));
        total.set_style(style(
            "{prefix:>28} {bar:30} {pos:>9}/{len:9} {rate:>9} eta {eta} {msg}",
        ));
        total.set_prefix("all (settled)");
        Progress {
            mode,
            tables,
            total,
            multi,
            settled,
            stats,
            ticker: Mutex::new(None),
            draining: std::sync::atomic::AtomicBool::new(false),
            lag: Mutex::new(None),
        }
    }

    /// Starts bringing the bars up to date (or printing lines).
    pub fn start(self: &Arc<Self>) {
        let every = match self.mode {
            Mode::Quiet => return,
            Mode::Bars => REDRAW,
            Mode::Lines(every) => every,
        };
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut last = (Instant::now(), me.settled().0);
            loop {
                tokio::time::sleep(every).await;
                last = me.tick(last);
            }
        });
        *self.ticker.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// (settled in all, per table).
    fn settled(&self) -> (u64, Vec<u64>) {
        let per: Vec<u64> = (0..self.tables.len()).map(|i| (self.settled)(i)).collect();
        (per.iter().sum(), per)
    }

    /// One update: the bars, or a line. Returns the new (time, settled).
    fn tick(&self, (then, before): (Instant, u64)) -> (Instant, u64) {
        let (all, per) = self.settled();
        let now = Instant::now();
        match self.mode {
            Mode::Bars => self.draw(all, &per),
            Mode::Lines(_) => {
                let rate = (all - before.min(all)) as f64 / (now - then).as_secs_f64().max(0.001);
                eprintln!("{}", self.line(all, &per, rate));
            }
            Mode::Quiet => {}
        }
        (now, all)
    }

    fn draw(&self, all: u64, per: &[u64]) {
        let lags = self.lags();
        for (i, (t, &n)) in self.tables.iter().zip(per).enumerate() {
            // The counts are approximate: let a bar grow rather than stall at 100%.
            let read = t.read.load(Ordering::Relaxed);
            if read.max(n) > t.bar.length().unwrap_or(0) {
                t.bar.set_length(read.max(n));
            }
            t.bar.set_position(n);
            t.bar.set_message(table_note(t, lags.get(i)));
        }
        let read: u64 = self
            .tables
            .iter()
            .map(|t| t.read.load(Ordering::Relaxed))
            .sum();
        if read.max(all) > self.total.length().unwrap_or(0) {
            self.total.set_length(read.max(all));
        }
        self.total.set_position(all);
        self.total.set_message(self.rate_note());
    }

    /// Shows a follow's lag beside each table (and in each line).
    pub fn set_lag(&self, lines: LagLines) {
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = Some(lines);
    }

    /// Each table's lag, when the run follows streams (one computation a
    /// redraw, for every table).
    fn lags(&self) -> Vec<String> {
        let lag = self.lag.lock().unwrap_or_else(|p| p.into_inner());
        let lines = lag.as_ref().map(|f| f()).unwrap_or_default();
        // The table's name leads a line; the bar has it already.
        lines
            .into_iter()
            .map(|l| {
                l.split_once(' ')
                    .map_or(l.clone(), |(_, rest)| rest.trim().to_string())
            })
            .collect()
    }

    /// From now on the run only finishes what it read: say what is left.
    pub fn draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// While draining: the records read and not yet settled.
    fn drain_note(&self) -> Option<String> {
        if !self.draining.load(Ordering::Relaxed) {
            return None;
        }
        let read: u64 = self
            .tables
            .iter()
            .map(|t| t.read.load(Ordering::Relaxed))
            .sum();
        let left = read.saturating_sub(self.settled().0);
        Some(format!(
            "draining: waiting for {left} record(s) read but not yet written or recorded"
        ))
    }

    /// The sink's rate as last sampled: achieved, its limit, throttles;
    /// or what the run waits for.
    fn rate_note(&self) -> String {
        if let Some(drain) = self.drain_note() {
            return drain;
        }
        let (waiting, place) = crate::aws::slow_requests();
        if waiting > 0 {
            return format!(
                "{waiting} request(s) unanswered for over {} s ({place})",
                crate::aws::SLOW.as_secs()
            );
        }
        let Some(r) = self.stats.as_ref().and_then(|s| s.latest_rate()) else {
            return String::new();
        };
        let limit = r
            .rate_limit
            .map_or("no limit".to_string(), |l| format!("limit {l:.0} WCU/s"));
        format!(
            "writing {:.0} WCU/s ({limit}, {} call(s) in flight, {} throttle(s) last sample)",
            r.write_units_per_s, r.in_flight, r.throttles
        )
    }

    /// The line printed without a terminal.
    fn line(&self, all: u64, per: &[u64], rate: f64) -> String {
        let expected: u64 = self.tables.iter().map(|t| t.expected).sum();
        let read: u64 = self
            .tables
            .iter()
            .map(|t| t.read.load(Ordering::Relaxed))
            .sum();
        let pct = if expected == 0 {
            String::new()
        } else {
            format!(
                " ({:.1}%)",
                (all as f64 * 100.0 / expected as f64).min(100.0)
            )
        };
        let eta = match (rate > 0.0, expected > all) {
            (true, true) => format!(", eta {} s", ((expected - all) as f64 / rate).round()),
            _ => String::new(),
        };
        let lags = self.lags();
        let tables: Vec<String> = self
            .tables
            .iter()
            .zip(per)
            .enumerate()
            .map(|(i, (t, n))| {
                let lag = lags.get(i).map(|l| format!(" ({l})")).unwrap_or_default();
                format!("{} {n}/{}{lag}", t.name, t.read.load(Ordering::Relaxed))
            })
            .collect();
        let writing = self.rate_note();
        let writing = if writing.is_empty() {
            writing
        } else {
            format!("; {writing}")
        };
        format!(
            "singletable: progress: {all} of ~{expected} records settled{pct}, {read} read, {rate:.0}/s{eta}{writing}; settled/read by table: {}",
            tables.join(", ")
        )
    }

    /// Counts `n` records read from table `i`.
    pub fn inc(&self, i: usize, n: u64) {
        if let Some(t) = self.tables.get(i) {
            t.read.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts one export file of table `i` read to the end.
    pub fn file_done(&self, i: usize) {
        if let Some(t) = self.tables.get(i) {
            t.files_done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A notice for the user: above the bars, or on its own line.
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
            _ => eprintln!("{text}"),
        }
    }

    /// Stops the updates; the bars stay where the counts are (a run that
    /// stopped early shows where it stopped).
    pub fn finish(&self) {
        if let Some(t) = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        if self.mode == Mode::Bars {
            let (all, per) = self.settled();
            self.draw(all, &per);
            for t in &self.tables {
                t.bar.abandon();
            }
            self.total.abandon();
        }
    }
}

/// A table's bar message: records read, its lag, its files.
fn table_note(t: &Table, lag: Option<&String>) -> String {
    let mut note = format!("read {}", t.read.load(Ordering::Relaxed));
    if let Some(lag) = lag {
        note.push_str(&format!("; {lag}"));
    }
    if t.files > 0 {
        let done = t.files_done.load(Ordering::Relaxed);
        note.push_str(&format!(", files {done}/{}", t.files));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_settled_read_rate_and_eta() {
        let stats = Arc::new(RunStats::new(2));
        let tables = [("users".to_string(), 100, 0), ("chats".to_string(), 300, 2)];
        let p = Progress::new(Mode::Lines(Duration::from_secs(30)), &tables, stats.clone());
        p.inc(0, 60);
        p.inc(1, 40);
        RunStats::add(&stats.entity(0).written, 50);
        RunStats::add(&stats.entity(1).dead_lettered, 10);
        let (all, per) = p.settled();
        assert_eq!((all, per.clone()), (60, vec![50, 10]));
        let line = p.line(all, &per, 20.0);
        assert!(
            line.contains("60 of ~400 records settled (15.0%), 100 read, 20/s, eta 17 s"),
            "{line}"
        );
        assert!(line.contains("users 50/60, chats 10/40"), "{line}");
    }
}
