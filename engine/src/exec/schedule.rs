//! The ready set of a workflow run: which steps may start now, given what each waits for. One
//! scheduler for both directions: forwards a step waits for its dependencies; in compensation
//! a step waits for every step that depended on it (undone in reverse order).

use std::collections::{BTreeMap, BTreeSet};

/// Steps (by index) with how many prerequisites each still waits for.
#[derive(Debug, Default)]
pub(super) struct ReadySet {
    waiting: BTreeMap<usize, usize>,
    /// For each step, the steps that wait for it.
    unblocks: BTreeMap<usize, Vec<usize>>,
    ready: BTreeSet<usize>,
}

impl ReadySet {
    /// `members` are the steps to run; `waits` lists `(step, prerequisite)` pairs, one per
    /// prerequisite not yet met (a pair whose step is not a member is ignored).
    pub(super) fn new(
        members: impl IntoIterator<Item = usize>,
        waits: impl IntoIterator<Item = (usize, usize)>,
    ) -> ReadySet {
        let mut waiting: BTreeMap<usize, usize> = members.into_iter().map(|i| (i, 0)).collect();
        let mut unblocks: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (step, prerequisite) in waits {
            if let Some(n) = waiting.get_mut(&step) {
                *n += 1;
                unblocks.entry(prerequisite).or_default().push(step);
            }
        }
        let ready = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| *i)
            .collect();
        ReadySet {
            waiting,
            unblocks,
            ready,
        }
    }

    /// The next step free to start: the lowest index (forwards) or the highest (`latest`, for
    /// compensation: the latest steps are undone first).
    pub(super) fn next(&mut self, latest: bool) -> Option<usize> {
        match latest {
            false => self.ready.pop_first(),
            true => self.ready.pop_last(),
        }
    }

    /// Step `i` is done: the steps waiting for it come one closer; those now free join the ready
    /// set when `admit` lets them.
    pub(super) fn done(&mut self, i: usize, admit: impl Fn(usize) -> bool) {
        for &j in self.unblocks.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(n) = self.waiting.get_mut(&j) {
                *n = n.saturating_sub(1);
                if *n == 0 && admit(j) {
                    self.ready.insert(j);
                }
            }
        }
    }

    /// The steps waiting for `i`.
    pub(super) fn waiting_for(&self, i: usize) -> Vec<usize> {
        self.unblocks.get(&i).cloned().unwrap_or_default()
    }

    /// Takes `i` out of the ready set (it will not run: skipped).
    pub(super) fn drop(&mut self, i: usize) {
        self.ready.remove(&i);
    }
}

#[cfg(test)]
mod tests {
    use super::ReadySet;

    /// a(0) ← b(1) ← d(3), a(0) ← c(2) ← d(3): a diamond.
    fn diamond() -> Vec<(usize, usize)> {
        vec![(1, 0), (2, 0), (3, 1), (3, 2)]
    }

    #[test]
    fn forwards_a_step_starts_once_all_it_waits_for_are_done() {
        let mut s = ReadySet::new(0..4, diamond());
        assert_eq!(s.next(false), Some(0));
        assert_eq!(s.next(false), None);
        s.done(0, |_| true);
        assert_eq!((s.next(false), s.next(false)), (Some(1), Some(2)));
        s.done(1, |_| true);
        assert_eq!(s.next(false), None, "d still waits for c");
        s.done(2, |_| true);
        assert_eq!(s.next(false), Some(3));
    }

    #[test]
    fn in_reverse_the_latest_free_step_goes_first_and_a_refused_one_never_joins() {
        // Compensation: each step waits for the steps that depended on it.
        let reversed = diamond().into_iter().map(|(step, pre)| (pre, step));
        let mut s = ReadySet::new(0..4, reversed);
        assert_eq!(s.next(true), Some(3));
        s.done(3, |_| true);
        assert_eq!((s.next(true), s.next(true)), (Some(2), Some(1)));
        s.done(2, |_| true);
        s.done(1, |j| j != 0);
        assert_eq!(s.next(true), None, "admit refused step 0");
        assert_eq!(s.waiting_for(1), vec![0]);
    }

    #[test]
    fn a_prerequisite_already_met_is_not_listed_and_a_dropped_step_does_not_run() {
        // Step 1 needs 0, which succeeded in an earlier run: no pair for it.
        let mut s = ReadySet::new([1, 2], [(2, 1)]);
        assert_eq!(s.next(false), Some(1));
        s.done(1, |_| true);
        s.drop(2);
        assert_eq!(s.next(false), None);
    }
}
