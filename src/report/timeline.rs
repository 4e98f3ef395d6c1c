//! Time series of one strategy's run: windows of equal length over
//! `duration + drain`, each with its delivery latency, backlog, throttled
//! answers and node use, plus the worst delay per mailbox for a heatmap.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::Latency;

/// Most windows a run is cut into.
pub const MAX_WINDOWS: usize = 100;

/// Most rows of the delay heatmap. A scenario with more mailboxes gets one
/// row per group and its most delayed mailboxes.
pub const MAX_DELAY_ROWS: usize = 80;

/// Window lengths to choose from, in milliseconds. Each is at most about
/// twice the one before, so the shortest one that gives at most
/// [`MAX_WINDOWS`] windows gives at least about half as many.
const WINDOW_LENGTHS_MS: [u32; 31] = [
    100,
    200,
    300,
    500,
    1_000,
    2_000,
    3_000,
    5_000,
    10_000,
    15_000,
    20_000,
    30_000,
    60_000,
    120_000,
    180_000,
    300_000,
    600_000,
    900_000,
    1_200_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    14_400_000,
    21_600_000,
    28_800_000,
    43_200_000,
    86_400_000,
    172_800_000,
    259_200_000,
    604_800_000,
];

/// Marks an empty cell in the millisecond arrays.
const EMPTY: u32 = u32::MAX;

/// Windows of equal length that cover a run from 0 to `end_ms`; the last
/// one ends at `end_ms` and may be shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Length of each window, in milliseconds.
    pub length_ms: u32,
    /// Number of windows.
    pub count: usize,
    /// End of the run, in milliseconds.
    pub end_ms: u32,
}

impl Windows {
    /// Cuts a run of length `end` into windows of the shortest length in a
    /// list of round values (100ms, 1s, 5m, 1h, ...) that gives at most
    /// [`MAX_WINDOWS`] windows.
    pub fn covering(end: Duration) -> Self {
        let end_ms = end.as_millis().min(u128::from(u32::MAX - 1)) as u32;
        let fits = |length: u32| end_ms.div_ceil(length) as usize <= MAX_WINDOWS;
        let length_ms = WINDOW_LENGTHS_MS
            .iter()
            .copied()
            .find(|&length| fits(length))
            .unwrap_or_else(|| end_ms.div_ceil(MAX_WINDOWS as u32))
            .max(1);
        Self {
            length_ms,
            count: (end_ms.div_ceil(length_ms) as usize).max(1),
            end_ms,
        }
    }

    /// Returns the window that contains `at_ms`. Times at or past the end
    /// belong to the last window.
    pub fn index(&self, at_ms: u32) -> usize {
        ((at_ms / self.length_ms) as usize).min(self.count - 1)
    }

    /// Start of window `index`, in milliseconds.
    pub fn start(&self, index: usize) -> u32 {
        (index as u32).saturating_mul(self.length_ms)
    }

    /// End of window `index`, in milliseconds.
    pub fn end(&self, index: usize) -> u32 {
        if index + 1 >= self.count {
            self.end_ms
        } else {
            self.start(index + 1)
        }
    }

    /// Calls `add(window, milliseconds)` for each window that the interval
    /// `from..until` overlaps, with the length of the overlap.
    pub fn split(&self, from_ms: u32, until_ms: u32, mut add: impl FnMut(usize, u32)) {
        let until_ms = until_ms.min(self.end_ms);
        if from_ms >= until_ms {
            return;
        }
        for index in self.index(from_ms)..=self.index(until_ms - 1) {
            let overlap = until_ms.min(self.end(index)) - from_ms.max(self.start(index));
            if overlap > 0 {
                add(index, overlap);
            }
        }
    }
}

/// One strategy's time series. Every array has one element per window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Window length, in seconds. Window `i` starts at `i × window`; the
    /// last one ends at `duration + drain`.
    pub window: f64,
    /// Deliveries that arrived in each window.
    pub deliveries: Vec<u64>,
    /// Median latency of the deliveries that arrived in each window and got
    /// a record, in seconds; `None` without any.
    pub latency_p50: Vec<Option<f64>>,
    /// The 99th percentile of the same, in seconds.
    pub latency_p99: Vec<Option<f64>>,
    /// Deliveries waiting for an outcome at each window's end.
    pub backlog: Vec<u64>,
    /// Throttled answers the engine received in each window.
    pub throttled: Vec<u64>,
    /// Per-node utilisation per window.
    pub nodes: Vec<NodeSeries>,
    /// Rows of the delay heatmap.
    pub delay_rows: Vec<DelayRow>,
    /// Time spans in which a fault of this strategy's world was active.
    pub faults: Vec<FaultSpan>,
}

/// One node's utilisation over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeSeries {
    /// Node number, from 0.
    pub node: u32,
    /// Percent of `threads × window length` spent in sync cycles.
    pub utilisation: Vec<f64>,
}

/// One heatmap row: the worst delay per window of one mailbox, or of a
/// whole group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DelayRow {
    /// The mailbox's address; `None` for a row that covers its whole group.
    pub mailbox: Option<String>,
    /// The group of the mailbox, or the group the row covers.
    pub group: String,
    /// Per window, the longest wait for an outcome among the deliveries
    /// that arrived in it, in seconds; `None` without any delivery.
    pub worst_delay: Vec<Option<f64>>,
}

/// A time span in which a fault was active in one strategy's world.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FaultSpan {
    /// Start, in seconds.
    pub from: f64,
    /// End, in seconds. A one-shot fault's span runs to the end of the run,
    /// since its effect lasts until the engine recovers.
    pub until: f64,
    /// The fault's kind, as named in scenario files.
    pub kind: String,
    /// The mailboxes it struck in this world (the forward mailbox's address
    /// when it struck that).
    pub accounts: Vec<String>,
}

/// A mailbox as the heatmap needs it.
#[derive(Clone, Debug)]
pub struct MailboxInfo {
    /// Its address.
    pub address: String,
    /// Index of its group in the list of group names.
    pub group: usize,
}

/// Collects deliveries into windows and assembles a [`Timeline`].
pub struct TimelineBuilder {
    windows: Windows,
    mailboxes: usize,
    deliveries: Vec<u64>,
    latencies: Vec<Vec<u64>>,
    backlog_changes: Vec<(u32, i64)>,
    /// Worst wait in ms per mailbox and window, row by row; [`EMPTY`] for none.
    delays: Vec<u32>,
}

impl TimelineBuilder {
    /// Creates a builder for a run cut into `windows`, with `mailboxes` user
    /// and queue mailboxes.
    pub fn new(windows: Windows, mailboxes: usize) -> Self {
        Self {
            windows,
            mailboxes,
            deliveries: vec![0; windows.count],
            latencies: vec![Vec::new(); windows.count],
            backlog_changes: Vec::new(),
            delays: vec![EMPTY; mailboxes * windows.count],
        }
    }

    /// Adds one delivery to `mailbox` that arrived at `arrival_ms` and got
    /// its outcome (a record or a decision) at `handled_ms`, if ever;
    /// `latency_ms` is the time to its record, if it got one.
    pub fn delivery(
        &mut self,
        mailbox: usize,
        arrival_ms: u32,
        handled_ms: Option<u32>,
        latency_ms: Option<u64>,
    ) {
        let window = self.windows.index(arrival_ms);
        self.deliveries[window] += 1;
        if let Some(latency) = latency_ms {
            self.latencies[window].push(latency);
        }
        self.backlog_changes.push((arrival_ms, 1));
        if let Some(handled) = handled_ms {
            self.backlog_changes.push((handled, -1));
        }
        // A delivery without an outcome waited until the end of the run.
        let waited_until = handled_ms.unwrap_or(self.windows.end_ms);
        let wait = waited_until
            .min(self.windows.end_ms)
            .saturating_sub(arrival_ms);
        if mailbox < self.mailboxes {
            let cell = &mut self.delays[mailbox * self.windows.count + window];
            *cell = if *cell == EMPTY {
                wait
            } else {
                (*cell).max(wait)
            };
        }
    }

    /// Assembles the timeline.
    ///
    /// `throttled` counts throttled answers per window, `node_busy_ms` is
    /// each node's time in cycles per window, and `threads` is the number of
    /// worker slots per node.
    pub fn finish(
        mut self,
        mailboxes: &[MailboxInfo],
        groups: &[String],
        throttled: Vec<u64>,
        node_busy_ms: Vec<Vec<u64>>,
        threads: u32,
        faults: Vec<FaultSpan>,
    ) -> Timeline {
        let windows = self.windows;
        let mut latency_p50 = Vec::with_capacity(windows.count);
        let mut latency_p99 = Vec::with_capacity(windows.count);
        for samples in &mut self.latencies {
            let latency = Latency::from_millis(samples);
            latency_p50.push(latency.p50);
            latency_p99.push(latency.p99);
        }
        let backlog = backlog_at_window_ends(&windows, &mut self.backlog_changes);
        let nodes = node_busy_ms
            .into_iter()
            .enumerate()
            .map(|(node, mut busy)| {
                busy.resize(windows.count, 0);
                (node, busy)
            })
            .map(|(node, busy)| NodeSeries {
                node: node as u32,
                utilisation: busy
                    .iter()
                    .enumerate()
                    .map(|(index, &busy)| {
                        let capacity = f64::from(windows.end(index) - windows.start(index))
                            * f64::from(threads);
                        (busy as f64 / capacity.max(1.0) * 1000.0).round() / 10.0
                    })
                    .collect(),
            })
            .collect();
        let delay_rows = self.delay_rows(mailboxes, groups, &faults);
        let mut throttled = throttled;
        throttled.resize(windows.count, 0);
        Timeline {
            window: f64::from(windows.length_ms) / 1000.0,
            deliveries: self.deliveries,
            latency_p50,
            latency_p99,
            backlog,
            throttled,
            nodes,
            delay_rows,
            faults,
        }
    }

    fn row(&self, mailbox: usize) -> &[u32] {
        let count = self.windows.count;
        &self.delays[mailbox * count..(mailbox + 1) * count]
    }

    /// Selects the heatmap rows: every mailbox when there are at most
    /// [`MAX_DELAY_ROWS`], otherwise per group a row for the whole group
    /// followed by the group's mailboxes that a fault struck and then the
    /// most delayed ones, as many as fit.
    fn delay_rows(
        &self,
        mailboxes: &[MailboxInfo],
        groups: &[String],
        faults: &[FaultSpan],
    ) -> Vec<DelayRow> {
        let mailboxes = &mailboxes[..mailboxes.len().min(self.mailboxes)];
        let group_name = |group: usize| groups.get(group).cloned().unwrap_or_default();
        if mailboxes.len() <= MAX_DELAY_ROWS {
            return mailboxes
                .iter()
                .enumerate()
                .map(|(index, mailbox)| DelayRow {
                    mailbox: Some(mailbox.address.clone()),
                    group: group_name(mailbox.group),
                    worst_delay: seconds_row(self.row(index)),
                })
                .collect();
        }

        let worst = |index: usize| {
            self.row(index)
                .iter()
                .copied()
                .filter(|&delay| delay != EMPTY)
                .max()
        };
        let struck: BTreeSet<&str> = faults
            .iter()
            .flat_map(|fault| fault.accounts.iter().map(String::as_str))
            .collect();
        let mut ranked: Vec<usize> = (0..mailboxes.len()).collect();
        // Struck mailboxes first, then the most delayed; ties keep the
        // scenario's order.
        ranked.sort_by_key(|&index| {
            (
                !struck.contains(mailboxes[index].address.as_str()),
                std::cmp::Reverse(worst(index)),
            )
        });
        let shown = MAX_DELAY_ROWS.saturating_sub(groups.len());
        let mut selected = vec![false; mailboxes.len()];
        for &index in ranked.iter().take(shown) {
            selected[index] = true;
        }

        let mut rows = Vec::new();
        for (group, name) in groups.iter().enumerate() {
            let members: Vec<usize> = (0..mailboxes.len())
                .filter(|&index| mailboxes[index].group == group)
                .collect();
            let mut whole = vec![EMPTY; self.windows.count];
            for &member in &members {
                for (cell, &delay) in whole.iter_mut().zip(self.row(member)) {
                    if delay != EMPTY && (*cell == EMPTY || delay > *cell) {
                        *cell = delay;
                    }
                }
            }
            rows.push(DelayRow {
                mailbox: None,
                group: name.clone(),
                worst_delay: seconds_row(&whole),
            });
            for member in members.into_iter().filter(|&index| selected[index]) {
                rows.push(DelayRow {
                    mailbox: Some(mailboxes[member].address.clone()),
                    group: name.clone(),
                    worst_delay: seconds_row(self.row(member)),
                });
            }
        }
        rows
    }
}

fn seconds_row(row: &[u32]) -> Vec<Option<f64>> {
    row.iter()
        .map(|&delay| (delay != EMPTY).then(|| f64::from(delay) / 1000.0))
        .collect()
}

/// Counts the deliveries waiting at each window's end: arrived at or
/// before it and not handled by then.
fn backlog_at_window_ends(windows: &Windows, changes: &mut [(u32, i64)]) -> Vec<u64> {
    changes.sort_unstable();
    let mut backlog = Vec::with_capacity(windows.count);
    let mut current = 0i64;
    let mut next = 0;
    for index in 0..windows.count {
        let end = windows.end(index);
        while next < changes.len() && changes[next].0 <= end {
            current += changes[next].1;
            next += 1;
        }
        backlog.push(current.max(0) as u64);
    }
    backlog
}

/// Rewrites pretty-printed JSON so that each array of only numbers and
/// nulls sits on one line, as in `[1, 2.5, null]`. The time series are
/// such arrays, and one line per element would make a report thousands of
/// lines long.
pub fn compact_number_arrays(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut copied = 0;
    let mut index = 0;
    let mut in_string = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' => {
                if let Some((close, items)) = number_array(&json[index + 1..]) {
                    out.push_str(&json[copied..index]);
                    out.push('[');
                    out.push_str(&items.join(", "));
                    out.push(']');
                    index += close + 2;
                    copied = index;
                    continue;
                }
            }
            _ => {}
        }
        index += 1;
    }
    out.push_str(&json[copied..]);
    out
}

/// When `rest` (the text after a `[`) starts with a non-empty list of
/// numbers and nulls up to its `]`, returns the offset of that `]` and the
/// items.
fn number_array(rest: &str) -> Option<(usize, Vec<&str>)> {
    let close = rest.find([']', '[', '{', '"'])?;
    if rest.as_bytes()[close] != b']' {
        return None;
    }
    let items: Vec<&str> = rest[..close].split(',').map(str::trim).collect();
    let scalar = |item: &&str| {
        *item == "null"
            || (!item.is_empty()
                && item
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || b"+-.eE".contains(&byte)))
    };
    if items.iter().all(scalar) {
        Some((close, items))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_eight_hours_are_five_minutes() {
        let windows = Windows::covering(Duration::from_secs(8 * 3600));
        assert_eq!(windows.length_ms, 300_000);
        assert_eq!(windows.count, 96);
    }

    #[test]
    fn windows_stay_within_limits() {
        for minutes in [1u64, 7, 30, 90, 200, 480, 720, 1560, 2880, 20_000, 400_000] {
            let windows = Windows::covering(Duration::from_secs(minutes * 60));
            assert!(windows.count <= MAX_WINDOWS, "{minutes}m: {windows:?}");
            assert!(windows.count >= 50, "{minutes}m: {windows:?}");
        }
    }

    #[test]
    fn last_window_ends_at_the_end() {
        let windows = Windows::covering(Duration::from_millis(1_234_567));
        assert_eq!(windows.end(windows.count - 1), 1_234_567);
        assert_eq!(windows.index(1_234_567), windows.count - 1);
        assert_eq!(windows.index(u32::MAX), windows.count - 1);
    }

    #[test]
    fn split_divides_an_interval_between_windows() {
        let windows = Windows {
            length_ms: 100,
            count: 5,
            end_ms: 500,
        };
        let mut parts = Vec::new();
        windows.split(150, 420, |index, ms| parts.push((index, ms)));
        assert_eq!(parts, vec![(1, 50), (2, 100), (3, 100), (4, 20)]);
        let mut past_end = Vec::new();
        windows.split(450, 900, |index, ms| past_end.push((index, ms)));
        assert_eq!(past_end, vec![(4, 50)]);
    }

    #[test]
    fn backlog_counts_waiting_deliveries_at_window_ends() {
        let windows = Windows {
            length_ms: 100,
            count: 3,
            end_ms: 300,
        };
        let mut builder = TimelineBuilder::new(windows, 1);
        builder.delivery(0, 10, Some(150), Some(140));
        builder.delivery(0, 20, Some(250), Some(230));
        builder.delivery(0, 120, None, None);
        let mailboxes = [MailboxInfo {
            address: "a@example.com".to_owned(),
            group: 0,
        }];
        let timeline = builder.finish(
            &mailboxes,
            &["users".to_owned()],
            vec![0, 2, 0],
            vec![vec![50, 0, 100]],
            2,
            Vec::new(),
        );
        assert_eq!(timeline.backlog, vec![2, 2, 1]);
        assert_eq!(timeline.deliveries, vec![2, 1, 0]);
        assert_eq!(timeline.latency_p50, vec![Some(0.14), None, None]);
        assert_eq!(timeline.latency_p99, vec![Some(0.23), None, None]);
        assert_eq!(timeline.throttled, vec![0, 2, 0]);
        assert_eq!(timeline.nodes[0].utilisation, vec![25.0, 0.0, 50.0]);
        // The delivery without an outcome waited until the end.
        assert_eq!(
            timeline.delay_rows[0].worst_delay,
            vec![Some(0.23), Some(0.18), None]
        );
    }

    #[test]
    fn many_mailboxes_show_groups_and_most_delayed() {
        let windows = Windows {
            length_ms: 100,
            count: 2,
            end_ms: 200,
        };
        let count = MAX_DELAY_ROWS + 20;
        let mut builder = TimelineBuilder::new(windows, count);
        let mut mailboxes = Vec::new();
        for index in 0..count {
            mailboxes.push(MailboxInfo {
                address: format!("user{index}@example.com"),
                group: index % 2,
            });
            builder.delivery(index, 0, Some(index as u32), Some(index as u64));
        }
        let groups = ["even".to_owned(), "odd".to_owned()];
        let timeline = builder.finish(&mailboxes, &groups, vec![], vec![], 1, vec![]);
        let rows = &timeline.delay_rows;
        assert_eq!(rows.len(), MAX_DELAY_ROWS);
        assert_eq!(rows[0].mailbox, None);
        assert_eq!(rows[0].group, "even");
        assert_eq!(rows[0].worst_delay, vec![Some(0.098), None]);
        let shown: Vec<&str> = rows
            .iter()
            .filter_map(|row| row.mailbox.as_deref())
            .collect();
        assert!(shown.contains(&"user99@example.com"));
        assert!(!shown.contains(&"user0@example.com"));
    }

    #[test]
    fn number_arrays_are_compacted() {
        let json = "{\n  \"a\": [\n    1,\n    null,\n    2.5e-3\n  ],\n  \"b\": [\n    \"x[\",\n    \"]\"\n  ],\n  \"c\": [],\n  \"d\": [\n    {\n      \"e\": [\n        -4\n      ]\n    }\n  ]\n}";
        let compact = compact_number_arrays(json);
        assert_eq!(
            compact,
            "{\n  \"a\": [1, null, 2.5e-3],\n  \"b\": [\n    \"x[\",\n    \"]\"\n  ],\n  \"c\": [],\n  \"d\": [\n    {\n      \"e\": [-4]\n    }\n  ]\n}"
        );
    }
}
