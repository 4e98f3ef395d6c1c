//! Traffic rules: who receives mail, how often, and what it looks like.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{Names, Resolver, span_of};
use crate::scenario::file::{self, SizeSpec};
use crate::scenario::units::Span;
use crate::scenario::{Burst, ReplyKey, SizeModel, Traffic};

/// Default fixed message size: a typical plain business email with headers.
const DEFAULT_MESSAGE_SIZE: u64 = 3600;

/// Largest message size a rule may ask for. The engine declines messages
/// over its own limit (32 MiB by default) as `message_too_large`.
const MAX_MESSAGE_SIZE: u64 = 100_000_000;

/// Most messages all rules together may plan, as expected from their rates
/// plus every burst and replayed file: the plan keeps a few dozen bytes per
/// message and the store every message's bytes.
pub const MAX_MESSAGES: f64 = 20_000_000.0;

impl Resolver<'_, '_> {
    /// Resolves one rule; `planned` accumulates the expected message count.
    pub(super) fn traffic(
        &mut self,
        rule: &Spanned<file::TrafficTable>,
        names: &Names<'_>,
        duration: Duration,
        planned: &mut f64,
    ) -> Traffic {
        let raw = rule.get_ref();
        let targets = names
            .mailboxes_named(raw.to.get_ref())
            .unwrap_or_else(|message| {
                self.error(span_of(&raw.to), message);
                Vec::new()
            });
        let cc = match &raw.cc {
            None => Vec::new(),
            Some(cc) => names
                .mailboxes_named(cc.get_ref())
                .unwrap_or_else(|message| {
                    self.error(span_of(cc), message);
                    Vec::new()
                }),
        };
        let cc_default = if cc.is_empty() { 0.0 } else { 1.0 };
        let cc_share = self.share(raw.cc_share.as_ref(), "cc_share", cc_default);
        if cc_share > 0.0
            && raw.cc.is_none()
            && let Some(share) = &raw.cc_share
        {
            self.error(
                span_of(share),
                "cc_share is set but cc is missing; add cc = \"<group or address>\"",
            );
        }
        let reply_share = self.share(raw.reply_share.as_ref(), "reply_share", 0.0);
        let reply_keys = self.reply_keys(raw.reply_keys.as_ref());
        let size = self.size(raw.size.as_ref());
        let eml_files = self.eml_files(raw.eml_dir.as_ref());

        let from = raw
            .from
            .as_ref()
            .map_or(Duration::ZERO, |from| from.get_ref().0);
        let until = match &raw.until {
            None => duration,
            Some(until) if until.get_ref().0 > duration => {
                self.error(
                    span_of(until),
                    format!(
                        "until {} is after the scenario's duration; use at most {}",
                        until.get_ref(),
                        Span(duration)
                    ),
                );
                duration
            }
            Some(until) => until.get_ref().0,
        };
        if from >= until
            && let Some(span) = raw
                .from
                .as_ref()
                .map(span_of)
                .or_else(|| raw.until.as_ref().map(span_of))
        {
            self.error(
                span,
                format!(
                    "from {} is not before until {}; the rule would send nothing",
                    Span(from),
                    Span(until)
                ),
            );
        }

        let rate = raw.rate.map_or(0.0, |rate| rate.per_second);
        if rate == 0.0 && raw.bursts.is_empty() && raw.eml_dir.is_none() {
            self.error(
                span_of(rule),
                "this [[traffic]] rule sends nothing; set rate, bursts or eml_dir",
            );
        }
        let bursts: Vec<Burst> = raw
            .bursts
            .iter()
            .map(|burst| self.burst(burst, duration))
            .collect();

        *planned += rate * targets.len() as f64 * until.saturating_sub(from).as_secs_f64();
        *planned += bursts
            .iter()
            .map(|burst| f64::from(burst.count))
            .sum::<f64>();
        *planned += eml_files.len() as f64;
        Traffic {
            targets,
            rate,
            bursts,
            reply_share,
            reply_keys,
            cc,
            cc_share,
            size,
            eml_files,
            from,
            until,
        }
    }

    fn burst(&mut self, burst: &Spanned<file::BurstTable>, duration: Duration) -> Burst {
        let table = burst.get_ref();
        if table.at.0 >= duration {
            self.error(
                span_of(burst),
                format!(
                    "burst at {} is not before the scenario's duration",
                    table.at
                ),
            );
        }
        if table.count == 0 {
            self.error(span_of(burst), "a burst needs count = 1 or more");
        }
        let over = table.over.map_or(Duration::from_secs(60), |over| over.0);
        if over.is_zero() {
            self.error(span_of(burst), "a burst's over must be above 0s");
        }
        Burst {
            at: table.at.0,
            count: table.count,
            over,
        }
    }

    fn reply_keys(&mut self, raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Vec<ReplyKey> {
        let Some(keys) = raw else {
            return vec![ReplyKey::InReplyTo, ReplyKey::Token, ReplyKey::References];
        };
        if keys.get_ref().is_empty() {
            self.error(
                span_of(keys),
                "reply_keys is empty; list at least one of in-reply-to, token, references, or leave it out for all three",
            );
        }
        keys.get_ref()
            .iter()
            .filter_map(|key| match key.get_ref().as_str() {
                "in-reply-to" => Some(ReplyKey::InReplyTo),
                "token" => Some(ReplyKey::Token),
                "references" => Some(ReplyKey::References),
                other => {
                    self.error(
                        span_of(key),
                        format!("unknown reply key {other:?}; valid keys: in-reply-to, token, references"),
                    );
                    None
                }
            })
            .collect()
    }

    fn size(&mut self, raw: Option<&Spanned<SizeSpec>>) -> SizeModel {
        let Some(spec) = raw else {
            return SizeModel::Fixed(DEFAULT_MESSAGE_SIZE);
        };
        let too_big = |size: u64| size > MAX_MESSAGE_SIZE;
        match spec.get_ref() {
            SizeSpec::Fixed(size) => {
                if size.0 == 0 || too_big(size.0) {
                    self.error(span_of(spec), "a message size must be from 1B to 100MB");
                }
                SizeModel::Fixed(size.0)
            }
            SizeSpec::LogNormal(table) => {
                let sigma = table.sigma.unwrap_or(1.0);
                let max = table.max.map_or(1_000_000, |max| max.0);
                if !(0.0..=4.0).contains(&sigma) {
                    self.error(
                        span_of(spec),
                        format!("sigma = {sigma} is out of range; use a number from 0.0 to 4.0"),
                    );
                }
                if table.median.0 == 0 || max < table.median.0 || too_big(max) {
                    self.error(
                        span_of(spec),
                        "a log-normal size needs 0 < median <= max <= 100MB",
                    );
                }
                SizeModel::LogNormal {
                    median: table.median.0,
                    sigma: sigma.clamp(0.0, 4.0),
                    max,
                }
            }
        }
    }

    fn eml_files(&mut self, raw: Option<&Spanned<String>>) -> Vec<PathBuf> {
        let Some(dir) = raw else {
            return Vec::new();
        };
        match list_eml_files(&self.base.join(dir.get_ref())) {
            Ok(files) if files.is_empty() => {
                self.error(
                    span_of(dir),
                    format!("folder {:?} has no .eml files", dir.get_ref()),
                );
                files
            }
            Ok(files) => files,
            Err(error) => {
                self.error(
                    span_of(dir),
                    format!(
                        "cannot read folder {:?} (relative to the scenario file): {error}",
                        dir.get_ref()
                    ),
                );
                Vec::new()
            }
        }
    }
}

fn list_eml_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("eml"))
            && path.is_file()
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
