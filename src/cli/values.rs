//! Value parsers for the flags: numbers in a range, and the library's named choices. Each says
//! what it wants when a value does not fit ("--lr: must be a positive, finite number").

use crate::choice::Choice;
use crate::train::Epochs;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use std::str::FromStr;

/// A number type a flag takes, and how to say what it is.
pub trait Number: FromStr + Copy + Send + Sync + 'static {
    /// "a whole number", "a number".
    const WHAT: &'static str;
}

impl Number for usize {
    const WHAT: &'static str = "a whole number";
}

impl Number for f64 {
    const WHAT: &'static str = "a number";
}

/// A parser for numbers that `accept` takes; others are refused with "must be {rule}".
pub fn number<T: Number>(
    accept: fn(T) -> bool,
    rule: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.parse::<T>() {
        Ok(x) if accept(x) => Ok(x),
        Ok(_) => Err(format!("must be {rule}")),
        Err(_) => Err(format!("{s:?} is not {}", T::WHAT)),
    }
}

/// Batch sizes, epochs of patience, limits.
pub fn at_least_one() -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    number(|n: usize| n >= 1, "at least 1")
}

/// Learning rates.
pub fn positive_finite() -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    number(
        |x: f64| x.is_finite() && x > 0.0,
        "a positive, finite number",
    )
}

/// Label smoothing: 0 (none) up to, not including, 1.
pub fn fraction_below_one() -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static
{
    number(|x: f64| (0.0..1.0).contains(&x), "at least 0 and below 1")
}

/// A validation split: strictly between 0 and 1.
pub fn open_fraction() -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    number(|x: f64| x > 0.0 && x < 1.0, "above 0 and below 1")
}

/// A weight average's decay per step: above 0, at most 1.
pub fn decay() -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    number(|x: f64| x > 0.0 && x <= 1.0, "above 0 and at most 1")
}

/// Passes over the training data; a fraction ends with part of an epoch.
pub fn epochs() -> impl Fn(&str) -> Result<Epochs, String> + Clone + Send + Sync + 'static {
    let count = number(
        Epochs::is_valid,
        "a positive number of epochs (1.5 ends with half an epoch)",
    );
    move |s: &str| count(s).map(Epochs)
}

/// One of a [`Choice`]'s values by name; `--help` lists them with their descriptions.
pub fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    let values = T::ALL
        .iter()
        .map(|value| PossibleValue::new(value.name()).help(value.help()));
    PossibleValuesParser::new(values)
        .map(|name| T::from_name(&name).expect("clap accepts only the listed names"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    #[test]
    fn numbers_outside_their_range_say_what_is_wanted() {
        assert_eq!(at_least_one()("3"), Ok(3));
        assert_eq!(at_least_one()("0"), Err("must be at least 1".to_owned()));
        assert_eq!(
            at_least_one()("-1"),
            Err("\"-1\" is not a whole number".to_owned())
        );
        assert!(at_least_one()("x").is_err());
        assert_eq!(positive_finite()("1e-3"), Ok(1e-3));
        for bad in ["0", "-1e-3", "NaN", "inf", "fast"] {
            assert!(positive_finite()(bad).is_err(), "{bad}");
        }
        assert_eq!(fraction_below_one()("0"), Ok(0.0));
        assert!(fraction_below_one()("1").is_err() && fraction_below_one()("NaN").is_err());
        assert!(open_fraction()("0").is_err() && open_fraction()("1").is_err());
        assert_eq!(decay()("1"), Ok(1.0));
        assert!(decay()("0").is_err());
        assert_eq!(epochs()("1.3"), Ok(Epochs(1.3)));
        for bad in ["0", "-1", "nan", "inf", "ten"] {
            assert!(epochs()(bad).is_err(), "{bad} accepted");
        }
        assert!(epochs()("NaN")
            .unwrap_err()
            .contains("positive number of epochs"));
    }

    #[test]
    fn choices_parse_by_name_and_list_every_value() {
        let parser = choice::<Schedule>();
        let listed: Vec<String> = parser
            .possible_values()
            .unwrap()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(listed, ["constant", "cosine", "onecycle"]);
    }
}
