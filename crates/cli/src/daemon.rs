//! `writeback run`: the daemon. A cycle every `interval` (a full reconcile when
//! `full_interval` has passed); SIGTERM/SIGINT finish the current cycle, a second one abandons it.

use crate::config::Config;
use crate::cycle::{run_cycle, CycleOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

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
    loop {
        let next = Instant::now() + cfg.interval;
        let cycle = run_cycle(cfg, CycleOptions::default());
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
            Some(Ok(report)) => info!(
                run = report.run_id,
                status = report.status.as_str(),
                errors = report.errors.len(),
                creates = report.counts.creates,
                member_adds = report.counts.member_adds,
                member_removes = report.counts.member_removes,
                deletes = report.counts.deletes,
                "cycle done"
            ),
            Some(Err(e)) => error!(error = %e, "cycle failed; retrying at the next interval"),
            None => return 0,
        }
        if stopping {
            info!("writeback daemon stopped");
            return 0;
        }
        tokio::select! {
            _ = sleep_until(next) => {},
            _ = term.recv() => { info!("writeback daemon stopped"); return 0; }
            _ = int.recv() => { info!("writeback daemon stopped"); return 0; }
        }
    }
}
