//! The scenario file as written: TOML tables mapped one to one onto structs.
//!
//! Every struct rejects unknown keys, and values that later checks refer to
//! keep their position in the file (`Spanned`), so that an error can name
//! the line and column. `resolve` turns this into a checked [`super::Scenario`].

use serde::Deserialize;
use toml::Spanned;

use super::units::{Budget, Rate, Size, Span};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    pub duration: Spanned<Span>,
    pub drain: Option<Spanned<Span>>,
    pub sla: Option<Spanned<Span>>,
    pub strategies: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub server: ServerTable,
    #[serde(default)]
    pub cluster: ClusterTable,
    #[serde(default)]
    pub records: RecordsTable,
    #[serde(default)]
    pub forwarding: ForwardingTable,
    #[serde(default)]
    pub users: Vec<Spanned<GroupTable>>,
    #[serde(default)]
    pub queues: Vec<Spanned<GroupTable>>,
    #[serde(default)]
    pub contacts: ContactsTable,
    #[serde(default)]
    pub threads: ThreadsTable,
    #[serde(default)]
    pub traffic: Vec<Spanned<TrafficTable>>,
    #[serde(default)]
    pub faults: Vec<Spanned<FaultTable>>,
    #[serde(default, rename = "expect")]
    pub expectations: Vec<Spanned<ExpectTable>>,
}

/// `[server]`: the mail service's protocol, latency and per-mailbox limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTable {
    pub preset: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub latency: Option<Span>,
    pub max_connections: Option<Spanned<u32>>,
    pub receive_per_hour: Option<Spanned<u32>>,
    pub command_budget: Option<Budget>,
    pub backoff_hint: Option<Span>,
}

/// `[cluster]`: the sync engine's nodes, threads and polling.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTable {
    pub nodes: Option<Spanned<u32>>,
    pub threads_per_node: Option<Spanned<u32>>,
    pub poll_interval: Option<Spanned<Span>>,
    pub idle_poll_max: Option<Spanned<Span>>,
    pub batch_size: Option<Spanned<u32>>,
    pub max_per_cycle: Option<Spanned<u32>>,
    pub max_connections: Option<Spanned<u32>>,
    pub retry_interval: Option<Spanned<Span>>,
    pub max_retries: Option<u32>,
    pub max_email_attempts: Option<Spanned<u32>>,
    pub command_timeout: Option<Spanned<Span>>,
    pub enable_after_fault: Option<bool>,
}

/// `[records]`: the modelled cost of creating records.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsTable {
    pub cost: Option<Span>,
}

/// `[forwarding]`: how server-side rules copy mail to the forward mailbox.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingTable {
    pub mode: Option<Spanned<String>>,
    pub delay: Option<Span>,
    pub mailbox: Option<Spanned<String>>,
}

/// `[[users]]` and `[[queues]]`: a group of mailboxes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupTable {
    pub name: Spanned<String>,
    pub count: Spanned<u32>,
    pub address: Spanned<String>,
    pub tracking: Option<Spanned<String>>,
    pub mixed: Option<Spanned<String>>,
}

/// `[contacts]`: the known senders of generated mail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsTable {
    pub count: Option<Spanned<u32>>,
    pub address: Option<Spanned<String>>,
    pub unknown_share: Option<Spanned<f64>>,
}

/// `[threads]`: conversations the CRM tracked before the run starts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadsTable {
    pub count: Option<u32>,
}

/// `[[traffic]]`: mail arriving for a group or a mailbox.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficTable {
    pub to: Spanned<String>,
    pub rate: Option<Rate>,
    #[serde(default)]
    pub bursts: Vec<Spanned<BurstTable>>,
    pub reply_share: Option<Spanned<f64>>,
    pub reply_keys: Option<Spanned<Vec<Spanned<String>>>>,
    pub cc: Option<Spanned<String>>,
    pub cc_share: Option<Spanned<f64>>,
    pub size: Option<Spanned<SizeSpec>>,
    pub eml_dir: Option<Spanned<String>>,
    pub from: Option<Spanned<Span>>,
    pub until: Option<Spanned<Span>>,
}

/// A burst: `count` messages spread over `over`, starting at `at`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstTable {
    pub at: Span,
    pub count: u32,
    pub over: Option<Span>,
}

/// A message size: fixed (`"4KB"`) or drawn from a log-normal distribution.
#[derive(Debug)]
pub enum SizeSpec {
    Fixed(Size),
    LogNormal(LogNormalTable),
}

impl<'de> Deserialize<'de> for SizeSpec {
    // Written by hand so that a bad value gets the size's own message
    // instead of serde's "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SizeSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a size such as \"3.6KB\", or a table { median = \"3KB\", sigma = 1.0, max = \"1MB\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SizeSpec, E> {
                text.parse().map(SizeSpec::Fixed).map_err(E::custom)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<SizeSpec, M::Error> {
                let table =
                    LogNormalTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SizeSpec::LogNormal(table))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `{ median = "3KB", sigma = 1.0, max = "1MB" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormalTable {
    pub median: Size,
    pub sigma: Option<f64>,
    pub max: Option<Size>,
}

/// `[[faults]]`: a fault on a schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultTable {
    pub mailbox: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub reads_mail_of: Option<Spanned<String>>,
    pub kind: Spanned<String>,
    pub from: Spanned<Span>,
    pub until: Option<Spanned<Span>>,
    pub bytes: Option<Spanned<u64>>,
    pub count: Option<Spanned<u32>>,
}

/// `[[expect]]`: a bound on a metric.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectTable {
    pub strategy: Option<Spanned<String>>,
    pub metric: Spanned<String>,
    pub ratio_to: Option<Spanned<String>>,
    pub max: Option<Spanned<BoundValue>>,
    pub min: Option<Spanned<BoundValue>>,
    pub equals: Option<Spanned<BoundValue>>,
}

/// A bound: a plain number, or a duration string for time metrics.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum BoundValue {
    Integer(i64),
    Float(f64),
    Text(String),
}
