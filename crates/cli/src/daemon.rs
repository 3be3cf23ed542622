//! `writeback run`: the daemon. A cycle every `interval` (a full reconcile when
//! `full_interval` has passed); SIGTERM/SIGINT finish the current cycle, a second one abandons it.

use crate::config::Config;
use crate::cycle::{CycleOptions, Syncer};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
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

pub async fn run(cfg: &Config) -> i32 {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
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
    // One Syncer for the daemon's life: its Graph token, LDAP connection and in-memory
    // images carry over from cycle to cycle.
    let mut syncer = match Syncer::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let mut dashboard = match crate::web::Dashboard::start(cfg).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return 2;
        }
    };
    // Consecutive failed cycles, and when the first of them failed.
    let mut failures = 0u32;
    let mut outage_since = std::time::Instant::now();
    loop {
        let cycle_started = Instant::now();
        let cycle = syncer.cycle(CycleOptions::default());
        tokio::pin!(cycle);
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                r = &mut cycle => break Some(r),
                _ = term.recv() => {},
                _ = int.recv() => {},
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
                if failures > 0 {
                    info!(
                        failed_cycles = failures,
                        outage_s = outage_since.elapsed().as_secs(),
                        "recovered: cycles succeed again"
                    );
                    failures = 0;
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
                failures = failures.saturating_add(1);
                let wait = next_wait(cfg.interval, failures);
                if failures == 1 {
                    outage_since = std::time::Instant::now();
                    error!(error = %e, retry_in_s = wait.as_secs_f64(),
                        "cycle failed; retrying with backoff (one line per outage: further failures are logged at debug)");
                } else {
                    debug!(error = %e, failed_cycles = failures, retry_in_s = wait.as_secs_f64(), "cycle failed again");
                }
            }
            None => return 0,
        }
        if stopping {
            info!("writeback daemon stopped");
            return 0;
        }
        let next = cycle_started + next_wait(cfg.interval, failures);
        dashboard.next_cycle_at(next);
        tokio::select! {
            _ = sleep_until(next) => {},
            _ = dashboard.sync_requested() => info!("sync now: requested from the dashboard"),
            _ = term.recv() => { info!("writeback daemon stopped"); return 0; }
            _ = int.recv() => { info!("writeback daemon stopped"); return 0; }
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
