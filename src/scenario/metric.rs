//! Metric names that expectations refer to and reports print.

use std::fmt;

/// A latency statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Statistic {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// Maximum.
    Max,
}

impl Statistic {
    /// Every statistic, in report order.
    pub const ALL: [Self; 4] = [Self::P50, Self::P90, Self::P99, Self::Max];

    /// The statistic's name in metric names.
    pub fn name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
            Self::Max => "max",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stat| stat.name() == text)
    }
}

/// The level an engine error was raised at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorLevel {
    /// One message.
    Email,
    /// One mailbox.
    Mailbox,
    /// Every mailbox of a server profile.
    ServerProfile,
}

impl ErrorLevel {
    /// Every level, in report order.
    pub const ALL: [Self; 3] = [Self::Email, Self::Mailbox, Self::ServerProfile];

    /// The level's name in metric names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Mailbox => "mailbox",
            Self::ServerProfile => "server_profile",
        }
    }
}

/// A metric of one strategy's run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Mailboxes the engine polls: the forward mailbox and every direct one.
    PolledMailboxes,
    /// Messages the mail service accepted for user and queue mailboxes.
    Sent,
    /// Messages stored in user and queue mailboxes, one per message and mailbox.
    Delivered,
    /// Email activities: one per distinct message recorded.
    Activities,
    /// Queue items: one per activity and accepting queue.
    QueueItems,
    /// Records created: one per message and accepting party.
    Records,
    /// Deliveries to a synced mailbox with neither a record nor a reported decision after the drain.
    Lost,
    /// Extra records for a message and party that already had one.
    Duplicated,
    /// Messages the tracking filter or a decision declined, with a reason.
    Declined,
    /// Messages quarantined after failing processing repeatedly.
    Quarantined,
    /// Forwarded copies that were not attachments, reported as unprocessable.
    Unprocessable,
    /// Records created per simulated hour of the run's active period.
    ThroughputPerHour,
    /// Delivery latency, overall or for one group.
    Latency {
        /// A group name, or `None` for every mailbox.
        group: Option<String>,
        /// Which statistic.
        statistic: Statistic,
    },
    /// The largest number of delivered messages waiting for a record at once.
    BacklogMax,
    /// Throttled answers the engine received.
    Throttled,
    /// Deliveries the mail service deferred because of a receive limit.
    Deferred,
    /// Engine errors, in total or at one level.
    Errors(Option<ErrorLevel>),
    /// Alerts raised.
    Alerts,
    /// Mailboxes the engine disabled.
    Disabled,
    /// Mailboxes whose latency broke the SLA while a fault was active.
    BlastRadius,
    /// Sync cycles run.
    Cycles,
    /// Busiest node's share of worker-slot time in use, in percent.
    UtilisationMax,
    /// Average node share of worker-slot time in use, in percent.
    UtilisationMean,
}

/// Plain metric names, for help texts.
pub const SIMPLE_NAMES: [&str; 23] = [
    "polled_mailboxes",
    "sent",
    "delivered",
    "activities",
    "queue_items",
    "records",
    "lost",
    "duplicated",
    "declined",
    "quarantined",
    "unprocessable",
    "throughput_per_hour",
    "backlog.max",
    "throttled",
    "deferred",
    "errors",
    "errors.email",
    "errors.mailbox",
    "errors.server_profile",
    "alerts",
    "disabled",
    "blast_radius",
    "cycles",
];

impl Metric {
    /// True for metrics measured in time.
    pub fn is_duration(&self) -> bool {
        matches!(self, Self::Latency { .. })
    }

    /// Parses a metric name; `groups` are the valid group names for per-group latency.
    pub fn parse(text: &str, groups: &[&str]) -> Result<Self, String> {
        let simple = match text {
            "polled_mailboxes" => Some(Self::PolledMailboxes),
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "activities" => Some(Self::Activities),
            "queue_items" => Some(Self::QueueItems),
            "records" => Some(Self::Records),
            "lost" => Some(Self::Lost),
            "duplicated" => Some(Self::Duplicated),
            "declined" => Some(Self::Declined),
            "quarantined" => Some(Self::Quarantined),
            "unprocessable" => Some(Self::Unprocessable),
            "throughput_per_hour" => Some(Self::ThroughputPerHour),
            "backlog.max" => Some(Self::BacklogMax),
            "throttled" => Some(Self::Throttled),
            "deferred" => Some(Self::Deferred),
            "errors" => Some(Self::Errors(None)),
            "alerts" => Some(Self::Alerts),
            "disabled" => Some(Self::Disabled),
            "blast_radius" => Some(Self::BlastRadius),
            "cycles" => Some(Self::Cycles),
            "utilisation.max" => Some(Self::UtilisationMax),
            "utilisation.mean" => Some(Self::UtilisationMean),
            _ => None,
        };
        if let Some(metric) = simple {
            return Ok(metric);
        }
        if let Some(level) = text.strip_prefix("errors.")
            && let Some(level) = ErrorLevel::ALL.into_iter().find(|l| l.name() == level)
        {
            return Ok(Self::Errors(Some(level)));
        }
        if let Some(rest) = text.strip_prefix("latency.") {
            let (group, statistic) = match rest.rsplit_once('.') {
                Some((group, statistic)) => (Some(group), statistic),
                None => (None, rest),
            };
            if let Some(statistic) = Statistic::parse(statistic) {
                match group {
                    None => {
                        return Ok(Self::Latency {
                            group: None,
                            statistic,
                        });
                    }
                    Some(group) if groups.contains(&group) => {
                        return Ok(Self::Latency {
                            group: Some(group.to_owned()),
                            statistic,
                        });
                    }
                    Some(group) => {
                        return Err(format!(
                            "unknown group {group:?} in metric {text:?}; groups: {}",
                            groups.join(", ")
                        ));
                    }
                }
            }
        }
        Err(format!(
            "unknown metric {text:?}; valid metrics: {}, utilisation.max, utilisation.mean, \
             latency.p50, latency.p90, latency.p99, latency.max, and latency.<group>.<statistic>",
            SIMPLE_NAMES.join(", ")
        ))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PolledMailboxes => f.write_str("polled_mailboxes"),
            Self::Sent => f.write_str("sent"),
            Self::Delivered => f.write_str("delivered"),
            Self::Activities => f.write_str("activities"),
            Self::QueueItems => f.write_str("queue_items"),
            Self::Records => f.write_str("records"),
            Self::Lost => f.write_str("lost"),
            Self::Duplicated => f.write_str("duplicated"),
            Self::Declined => f.write_str("declined"),
            Self::Quarantined => f.write_str("quarantined"),
            Self::Unprocessable => f.write_str("unprocessable"),
            Self::ThroughputPerHour => f.write_str("throughput_per_hour"),
            Self::Latency {
                group: None,
                statistic,
            } => write!(f, "latency.{}", statistic.name()),
            Self::Latency {
                group: Some(group),
                statistic,
            } => write!(f, "latency.{group}.{}", statistic.name()),
            Self::BacklogMax => f.write_str("backlog.max"),
            Self::Throttled => f.write_str("throttled"),
            Self::Deferred => f.write_str("deferred"),
            Self::Errors(None) => f.write_str("errors"),
            Self::Errors(Some(level)) => write!(f, "errors.{}", level.name()),
            Self::Alerts => f.write_str("alerts"),
            Self::Disabled => f.write_str("disabled"),
            Self::BlastRadius => f.write_str("blast_radius"),
            Self::Cycles => f.write_str("cycles"),
            Self::UtilisationMax => f.write_str("utilisation.max"),
            Self::UtilisationMean => f.write_str("utilisation.mean"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let groups = ["sales", "support"];
        let mut names: Vec<String> = SIMPLE_NAMES.iter().map(|s| s.to_string()).collect();
        names.extend(["utilisation.max", "latency.p99", "latency.sales.max"].map(String::from));
        for name in names {
            let metric = Metric::parse(&name, &groups).unwrap();
            assert_eq!(metric.to_string(), name);
        }
    }

    #[test]
    fn unknown_metric_lists_valid_ones() {
        let error = Metric::parse("latncy.p99", &[]).unwrap_err();
        assert!(
            error.starts_with("unknown metric \"latncy.p99\""),
            "{error}"
        );
        assert!(error.contains("latency.p99"), "{error}");
    }

    #[test]
    fn unknown_group_is_named() {
        let error = Metric::parse("latency.nobody.p99", &["sales"]).unwrap_err();
        assert!(error.contains("unknown group \"nobody\""), "{error}");
    }
}
