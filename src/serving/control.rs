//! The bookkeeping of one model name, as plain data: which version is pinned, which versions
//! were live before (what rollback goes back to) and which loads failed. No I/O and no clocks:
//! the registry does the loading and tells this state what happened; the unit tests below drive
//! it directly, like the batcher's `State`.

use std::collections::BTreeMap;

/// How many previously live versions are remembered for rollback.
pub const ROLLBACK_DEPTH: usize = 16;

/// A load that failed, remembered until the version's files change.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub version: u64,
    /// Stable label of the cause (e.g. `checksum`, `output_shape`, `warmup`).
    pub kind: &'static str,
    pub error: String,
    /// Unix seconds.
    pub at: u64,
    /// Size/mtime fingerprint of the version's files when the load started; `None` when they
    /// could not even be stat'ed in time (retried once they can).
    pub fingerprint: Option<u64>,
}

/// Where a rollback goes: a version and, when it came from the history, its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackTarget {
    pub version: u64,
    history_index: Option<usize>,
}

#[derive(Debug, Default)]
pub struct Control {
    pinned: Option<u64>,
    /// Versions that were live before the current one, most recent last.
    previous: Vec<u64>,
    failures: BTreeMap<u64, Failure>,
    /// Versions found by the last successful scan of the model's directory, ascending.
    listed: Vec<u64>,
    /// A sync with the repository has completed at least once (successful or not): the default
    /// model choice waits for this before passing over a model that has no live version.
    pub synced: bool,
}

impl Control {
    pub fn pinned(&self) -> Option<u64> {
        self.pinned
    }

    pub fn pin(&mut self, version: u64) {
        self.pinned = Some(version);
    }

    pub fn unpin(&mut self) {
        self.pinned = None;
    }

    /// Records the versions a scan of the model's directory found (ascending).
    pub fn listed(&mut self, versions: Vec<u64>) {
        self.listed = versions;
    }

    /// Versions on disk as of the last scan.
    pub fn listed_versions(&self) -> &[u64] {
        &self.listed
    }

    /// Earlier live versions, most recent last.
    pub fn previous(&self) -> &[u64] {
        &self.previous
    }

    /// Remembered failures, by version.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.failures.values()
    }

    /// The remembered failure of `version`, if any.
    pub fn failure(&self, version: u64) -> Option<&Failure> {
        self.failures.get(&version)
    }

    /// The fingerprint a failed load of `version` was remembered with: `None` if it did not
    /// fail, `Some(None)` if its files could not be stat'ed then.
    pub fn failed_fingerprint(&self, version: u64) -> Option<Option<u64>> {
        self.failures.get(&version).map(|f| f.fingerprint)
    }

    /// `version` went live, replacing `old`. Its failure (if any) is forgotten; `old` joins the
    /// history when `remember` (an admin rollback does not add to the history it consumes),
    /// which keeps the last [`ROLLBACK_DEPTH`] entries.
    pub fn went_live(&mut self, version: u64, old: Option<u64>, remember: bool) {
        self.failures.remove(&version);
        if let (true, Some(v)) = (remember, old) {
            if v != version {
                self.previous.push(v);
                let excess = self.previous.len().saturating_sub(ROLLBACK_DEPTH);
                self.previous.drain(..excess);
            }
        }
    }

    pub fn failed(&mut self, failure: Failure) {
        self.failures.insert(failure.version, failure);
    }

    /// The version a rollback should load, chosen without changing anything (a rollback that
    /// fails to load leaves the history as it was, so it can be retried): the most recent
    /// earlier live version still on disk and not live now, else the next version on disk below
    /// the live one. `on_disk` is ascending.
    pub fn rollback_target(&self, live: Option<u64>, on_disk: &[u64]) -> Option<RollbackTarget> {
        let from_history = self
            .previous
            .iter()
            .enumerate()
            .rev()
            .find(|&(_, &v)| Some(v) != live && on_disk.contains(&v))
            .map(|(i, &v)| RollbackTarget {
                version: v,
                history_index: Some(i),
            });
        from_history.or_else(|| {
            on_disk
                .iter()
                .rev()
                .find(|&&v| live.is_some_and(|l| v < l))
                .map(|&v| RollbackTarget {
                    version: v,
                    history_index: None,
                })
        })
    }

    /// The rollback to `target` succeeded: the target and the history entries after it (skipped:
    /// gone from disk or live) are used up, and the model is pinned to it.
    pub fn rolled_back(&mut self, target: RollbackTarget) {
        if let Some(i) = target.history_index {
            self.previous.truncate(i);
        }
        self.pinned = Some(target.version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(version: u64) -> Failure {
        Failure {
            version,
            kind: "checksum",
            error: "bad".into(),
            at: 1,
            fingerprint: Some(7),
        }
    }

    #[test]
    fn the_history_keeps_the_last_versions_and_skips_reloads() {
        let mut c = Control::default();
        c.went_live(1, None, true);
        assert!(c.previous().is_empty());
        c.went_live(1, Some(1), true);
        assert!(
            c.previous().is_empty(),
            "reloading the live version is not history"
        );
        for v in 2..=40 {
            c.went_live(v, Some(v - 1), true);
        }
        assert_eq!(c.previous().len(), ROLLBACK_DEPTH);
        assert_eq!(c.previous().last(), Some(&39));
        assert_eq!(c.previous()[0], 40 - ROLLBACK_DEPTH as u64);
        c.went_live(3, Some(40), false);
        assert_eq!(c.previous().last(), Some(&39), "a rollback adds no history");
    }

    #[test]
    fn a_failure_is_remembered_until_that_version_goes_live() {
        let mut c = Control::default();
        assert_eq!(c.failed_fingerprint(2), None);
        c.failed(failure(2));
        c.failed(Failure {
            fingerprint: None,
            ..failure(3)
        });
        assert_eq!(c.failed_fingerprint(2), Some(Some(7)));
        assert_eq!(c.failed_fingerprint(3), Some(None));
        assert_eq!(c.failures().count(), 2);
        c.went_live(2, None, true);
        assert_eq!(c.failed_fingerprint(2), None);
        assert_eq!(c.failures().map(|f| f.version).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn rollback_prefers_the_history_then_the_next_lower_version_on_disk() {
        let mut c = Control::default();
        for (v, old) in [(1, None), (5, Some(1)), (3, Some(5)), (7, Some(3))] {
            c.went_live(v, old, true);
        }
        assert_eq!(c.previous(), &[1, 5, 3]);
        // 3 is gone from disk: 5 is the most recent earlier version still there.
        let t = c.rollback_target(Some(7), &[1, 5, 7]).unwrap();
        assert_eq!(t.version, 5);
        assert_eq!(c.previous(), &[1, 5, 3], "choosing changes nothing");
        c.rolled_back(t);
        assert_eq!(c.previous(), &[1], "5 and the skipped 3 are used up");
        assert_eq!(c.pinned(), Some(5));
        // The live version itself is never a target.
        let t = c.rollback_target(Some(1), &[1, 5, 7]);
        assert_eq!(t, None);
        // No history: the next version below the live one on disk.
        let fresh = Control::default();
        let t = fresh.rollback_target(Some(7), &[2, 4, 7, 9]).unwrap();
        assert_eq!(t.version, 4);
        assert_eq!(fresh.rollback_target(None, &[2, 4]), None);
        assert_eq!(fresh.rollback_target(Some(2), &[2, 4]), None);
    }

    #[test]
    fn pin_and_unpin() {
        let mut c = Control::default();
        assert_eq!(c.pinned(), None);
        c.pin(4);
        assert_eq!(c.pinned(), Some(4));
        c.unpin();
        assert_eq!(c.pinned(), None);
    }
}
