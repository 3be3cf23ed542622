//! `writeback run`: the daemon. A cycle every `interval` (a full reconcile when
//! `full_interval` has passed); SIGTERM/SIGINT finish the current cycle, a second one abandons it.
//! SIGHUP reads the configuration again: a good one is used from the next cycle, a bad one
//! is refused (logged, naming the key) and the running one kept.

use crate::config::Config;
use crate::cycle::{CycleOptions, Syncer};
use crate::web::Dashboard;
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

/// The longest wait between two attempts while cycles keep failing (an outage of the DC or
/// of Graph), unless `interval` itself is longer.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// How long to wait before the next cycle after `failures` failed cycles in a row:
/// `interval` when the last one succeeded, then doubling up to the cap.
pub fn next_wait(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let cap = BACKOFF_CAP.max(interval);
    let factor = 1u32 << (failures - 1).min(16);
    interval.saturating_mul(factor).min(cap)
}

/// The signals the daemon answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

/// When cycles ran and how many failed in a row; carried over a reload.
struct Pacing {
    last_start: Option<Instant>,
    failures: u32,
    /// When the first of the current run of failures failed.
    outage_since: std::time::Instant,
}

impl Pacing {
    /// When the next cycle starts (`None`: now, the daemon's first).
    fn next_cycle(&self, interval: Duration) -> Option<Instant> {
        self.last_start
            .map(|at| at + next_wait(interval, self.failures))
    }
}

/// The daemon, with the configuration `cfg` read from `path` (read again on SIGHUP).
pub async fn run(path: &Path, cfg: Config) -> i32 {
    let mut signals = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => Signals { term, int, hup },
        _ => {
            eprintln!("error: cannot install signal handlers");
            return 3;
        }
    };
    info!(
        interval = %humantime::format_duration(cfg.interval),
        full_interval = %humantime::format_duration(cfg.full_interval),
        staging = cfg.staging,
        "writeback daemon started"
    );
    let mut cfg = cfg;
    // One Syncer per configuration: its Graph token, LDAP connection and in-memory images
    // carry over from cycle to cycle; a reload builds a new one.
    let mut syncer = match Syncer::new(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let mut dashboard = match Dashboard::start(&cfg).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return 2;
        }
    };
    let mut pacing = Pacing {
        last_start: None,
        failures: 0,
        outage_since: std::time::Instant::now(),
    };
    loop {
        if let Some(code) =
            serve(&cfg, &mut syncer, &mut dashboard, &mut signals, &mut pacing).await
        {
            return code;
        }
        let Some(new) = reread(path, &cfg) else {
            continue;
        };
        drop(syncer);
        let running = std::mem::replace(&mut cfg, new);
        syncer = match Syncer::new(&cfg) {
            Ok(s) => {
                dashboard.reconfigured(&cfg);
                info!(
                    config = %path.display(),
                    interval = %humantime::format_duration(cfg.interval),
                    staging = cfg.staging,
                    "configuration reloaded: in effect from the next cycle"
                );
                s
            }
            Err(e) => {
                reload_refused(path, &e);
                cfg = running;
                match Syncer::new(&cfg) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return e.exit_code();
                    }
                }
            }
        };
    }
}

/// The configuration at `path` again, for SIGHUP: `None` when it cannot replace `running`
/// (the error is logged, naming the key).
fn reread(path: &Path, running: &Config) -> Option<Config> {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            reload_refused(path, &e);
            return None;
        }
    };
    // The dashboard reads the state file the daemon started with.
    if new.state != running.state {
        reload_refused(
            path,
            &format_args!(
                "writeback.state: {} → {}: the state file changes only with a restart",
                running.state.display(),
                new.state.display()
            ),
        );
        return None;
    }
    let token = |c: &Config| c.dashboard.token.as_ref().map(|t| t.expose().to_string());
    if new.dashboard.listen != running.dashboard.listen || token(&new) != token(running) {
        warn!("dashboard.listen, dashboard.enabled and dashboard.token change only with a restart: the dashboard keeps its address and token");
    }
    Some(new)
}

fn reload_refused(path: &Path, error: &dyn std::fmt::Display) {
    error!(config = %path.display(), error = %error, "configuration reload refused: the running configuration is kept");
}

/// Cycles with `cfg` until a signal: `Some(exit code)` to stop, `None` when SIGHUP asks for
/// the configuration to be read again (after the cycle running, if any).
async fn serve(
    cfg: &Config,
    syncer: &mut Syncer<'_>,
    dashboard: &mut Dashboard,
    signals: &mut Signals,
    pacing: &mut Pacing,
) -> Option<i32> {
    loop {
        if let Some(next) = pacing.next_cycle(cfg.interval) {
            dashboard.next_cycle_at(next);
            tokio::select! {
                _ = sleep_until(next) => {},
                _ = dashboard.sync_requested() => info!("sync now: requested from the dashboard"),
                _ = signals.hup.recv() => return None,
                _ = signals.term.recv() => { info!("writeback daemon stopped"); return Some(0); }
                _ = signals.int.recv() => { info!("writeback daemon stopped"); return Some(0); }
            }
        }
        let cycle_started = Instant::now();
        pacing.last_start = Some(cycle_started);
        let cycle = syncer.cycle(CycleOptions::default());
        tokio::pin!(cycle);
        let mut stopping = false;
        let mut reload = false;
        let result = loop {
            tokio::select! {
                r = &mut cycle => break Some(r),
                _ = signals.hup.recv() => {
                    info!("SIGHUP: the configuration is read again when the current cycle ends");
                    reload = true;
                    continue;
                }
                _ = signals.term.recv() => {},
                _ = signals.int.recv() => {},
            }
            if stopping {
                warn!(
                    "second signal: abandoning the current cycle; the next start replays it safely"
                );
                break None;
            }
            stopping = true;
            info!("signal received: finishing the current cycle (send again to abandon it)");
        };
        match result {
            Some(Ok(report)) => {
                if pacing.failures > 0 {
                    info!(
                        failed_cycles = pacing.failures,
                        outage_s = pacing.outage_since.elapsed().as_secs(),
                        "recovered: cycles succeed again"
                    );
                    pacing.failures = 0;
                }
                info!(
                    run = report.run_id,
                    status = report.status.as_str(),
                    errors = report.errors.len(),
                    creates = report.counts.creates,
                    member_adds = report.counts.member_adds,
                    member_removes = report.counts.member_removes,
                    deletes = report.counts.deletes,
                    "cycle done"
                );
                dashboard.cycle_done(report, cycle_started.elapsed());
            }
            Some(Err(e)) => {
                dashboard.cycle_failed(&e, cycle_started.elapsed());
                pacing.failures = pacing.failures.saturating_add(1);
                let wait = next_wait(cfg.interval, pacing.failures);
                if pacing.failures == 1 {
                    pacing.outage_since = std::time::Instant::now();
                    error!(error = %e, retry_in_s = wait.as_secs_f64(),
                        "cycle failed; retrying with backoff (one line per outage: further failures are logged at debug)");
                } else {
                    debug!(error = %e, failed_cycles = pacing.failures, retry_in_s = wait.as_secs_f64(), "cycle failed again");
                }
            }
            None => return Some(0),
        }
        if stopping {
            info!("writeback daemon stopped");
            return Some(0);
        }
        if reload {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_cycles_back_off_exponentially_to_a_cap() {
        let s = Duration::from_secs;
        assert_eq!(next_wait(s(1), 0), s(1));
        assert_eq!(next_wait(s(1), 1), s(1));
        assert_eq!(next_wait(s(1), 2), s(2));
        assert_eq!(next_wait(s(1), 4), s(8));
        assert_eq!(next_wait(s(1), 30), BACKOFF_CAP);
        assert_eq!(next_wait(s(30), 9), s(60));
        // An interval longer than the cap is never shortened.
        assert_eq!(next_wait(s(600), 5), s(600));
    }
}
