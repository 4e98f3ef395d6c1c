//! Expectations: bounds on metrics that make `mailsim run` pass or fail.

use toml::Spanned;

use super::{Resolver, span_of};
use crate::scenario::file::{self, BoundValue};
use crate::scenario::metric::Metric;
use crate::scenario::units::Span;
use crate::scenario::{Bound, Expectation, Strategy};

impl Resolver<'_, '_> {
    pub(super) fn expectation(
        &mut self,
        expect: &Spanned<file::ExpectTable>,
        strategies: &[Strategy],
        groups: &[&str],
    ) -> Option<Expectation> {
        let raw = expect.get_ref();
        let metric = match Metric::parse(raw.metric.get_ref(), groups) {
            Ok(metric) => metric,
            Err(message) => {
                self.error(span_of(&raw.metric), message);
                return None;
            }
        };
        let mut applies_to = match &raw.strategy {
            None => strategies.to_vec(),
            Some(name) if name.get_ref() == "all" => strategies.to_vec(),
            Some(name) => {
                match Strategy::parse(name.get_ref()) {
                    Some(strategy) if strategies.contains(&strategy) => vec![strategy],
                    Some(_) => {
                        self.error(
                            span_of(name),
                            format!(
                                "strategy {:?} is not in this scenario's strategies",
                                name.get_ref()
                            ),
                        );
                        return None;
                    }
                    None => {
                        self.error(
                        span_of(name),
                        format!("unknown strategy {:?}; valid values: forward, individual, mixed, all", name.get_ref()),
                    );
                        return None;
                    }
                }
            }
        };
        let ratio_to = match &raw.ratio_to {
            None => None,
            Some(name) => match Strategy::parse(name.get_ref()) {
                Some(strategy) if strategies.contains(&strategy) => Some(strategy),
                _ => {
                    let listed: Vec<&str> = strategies.iter().map(|s| s.name()).collect();
                    self.error(
                        span_of(name),
                        format!(
                            "ratio_to {:?} is not one of this scenario's strategies ({})",
                            name.get_ref(),
                            listed.join(", ")
                        ),
                    );
                    return None;
                }
            },
        };
        if let (Some(base), Some(name)) = (ratio_to, &raw.ratio_to) {
            // A strategy divided by itself is always 1: compare the others.
            let named = raw.strategy.as_ref().filter(|s| s.get_ref() != "all");
            if named.is_some() && applies_to == [base] {
                self.error(
                    span_of(name),
                    format!(
                        "ratio_to {:?} is the expectation's own strategy, so the ratio is always 1; name another strategy",
                        name.get_ref()
                    ),
                );
                return None;
            }
            applies_to.retain(|strategy| *strategy != base);
            if applies_to.is_empty() {
                self.error(
                    span_of(name),
                    format!(
                        "ratio_to {:?} is the scenario's only strategy, so there is nothing to compare with it",
                        name.get_ref()
                    ),
                );
                return None;
            }
        }
        // A ratio is a plain number even for time metrics.
        let as_duration = metric.is_duration() && ratio_to.is_none();
        let mut bounds = Vec::new();
        for (value, make) in [
            (&raw.max, Bound::Max as fn(f64) -> Bound),
            (&raw.min, Bound::Min),
            (&raw.equals, Bound::Equals),
        ] {
            if let Some(value) = value {
                match bound_value(value.get_ref(), as_duration) {
                    Ok(number) => bounds.push(make(number)),
                    Err(message) => {
                        self.error(span_of(value), format!("{message} for metric {metric}"))
                    }
                }
            }
        }
        if raw.max.is_none() && raw.min.is_none() && raw.equals.is_none() {
            self.error(
                span_of(expect),
                "an expectation needs a bound: max, min or equals",
            );
            return None;
        }
        let min = bounds.iter().find_map(|bound| match bound {
            Bound::Min(min) => Some(*min),
            _ => None,
        });
        let max = bounds.iter().find_map(|bound| match bound {
            Bound::Max(max) => Some(*max),
            _ => None,
        });
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            self.error(
                span_of(expect),
                "min is above max, so the expectation can never hold",
            );
        }
        Some(Expectation {
            strategies: applies_to,
            metric,
            ratio_to,
            bounds,
        })
    }
}

fn bound_value(value: &BoundValue, as_duration: bool) -> Result<f64, String> {
    let number = match (value, as_duration) {
        (BoundValue::Text(text), true) => text.parse::<Span>().map(|span| span.0.as_secs_f64())?,
        (BoundValue::Text(text), false) => text
            .parse::<f64>()
            .map_err(|_| format!("invalid bound {text:?}: use a number"))?,
        (BoundValue::Integer(_) | BoundValue::Float(_), true) => {
            return Err("invalid bound: use a duration string such as \"15m\"".to_owned());
        }
        (BoundValue::Integer(number), false) => *number as f64,
        (BoundValue::Float(number), false) => *number,
    };
    if number.is_finite() {
        Ok(number)
    } else {
        Err(format!("invalid bound {number}: use a finite number"))
    }
}
