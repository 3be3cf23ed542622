// Graph answer pages (`wb_graph::pages`: group, user and device delta pages and the
// writebackConfiguration listing), parsed exactly as the client parses them: never a panic
// — a malformed page is an `Err` value — and a page that parses merges into a cloud image
// (`apply_*_changes`) without a panic either.
//
// Input: the first byte picks the page kind, the rest is the answer body.
//
// Shared by the fuzz target `fuzz/fuzz_targets/graph_page.rs` and the test that runs the seed
// corpus `fuzz/corpus/graph_page/` in the normal test suite (`include!`d there).
use wb_graph::{pages, DeltaRound};
use wb_model::CloudSnapshot;

fn round<T>(changes: Vec<T>, full: bool) -> DeltaRound<T> {
    DeltaRound {
        changes,
        delta_link: String::new(),
        full,
    }
}

/// Checks one input; panics on a property that does not hold.
pub fn check(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let mut image = CloudSnapshot::default();
    match kind % 4 {
        0 => {
            if let Ok(page) = pages::group_delta(body) {
                let full = kind & 4 != 0;
                let _ = wb_graph::apply_group_changes(&mut image, &round(page.changes.clone(), full));
                let _ = wb_graph::apply_group_changes(&mut image, &round(page.changes, false));
            }
        }
        1 => {
            if let Ok(page) = pages::user_delta(body) {
                wb_graph::apply_user_changes(&mut image, &round(page.changes, kind & 4 != 0));
            }
        }
        2 => {
            if let Ok(page) = pages::device_delta(body) {
                wb_graph::apply_device_changes(&mut image, &round(page.changes, kind & 4 != 0));
            }
        }
        _ => {
            let _ = pages::writeback_configurations(body);
        }
    }
}

