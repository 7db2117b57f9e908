//! Value parsers for the flags: numbers in a range, and the library's named choices. Each says
//! what it wants when a value does not fit ("--lr: must be a positive, finite number").

use crate::choice::Choice;
use crate::rule::{parse_number, Number, Rule};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// A parser for numbers that `rule` accepts; others are refused with "must be {wanted}", the
/// same words a config.json with that value gets.
pub fn number<T: Number>(
    rule: Rule<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| parse_number(s, Some(&rule))
}

/// Counts with no upper bound of their own (--limit, --benchmark iterations).
pub const AT_LEAST_ONE: Rule<usize> = Rule::new(|n| n >= 1, "at least 1");

/// Counts of at least 1.
pub fn at_least_one() -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    number(AT_LEAST_ONE)
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
    use crate::optim::schedule::Schedule;
    use crate::train::rules;

    #[test]
    fn numbers_outside_their_range_say_what_is_wanted() {
        assert_eq!(at_least_one()("3"), Ok(3));
        assert_eq!(at_least_one()("0"), Err("must be at least 1".to_owned()));
        assert_eq!(
            at_least_one()("-1"),
            Err("\"-1\" is not a whole number".to_owned())
        );
        assert!(at_least_one()("x").is_err());
        let lr = number(rules::LEARNING_RATE);
        assert_eq!(lr("1e-3"), Ok(1e-3));
        for bad in ["0", "-1e-3", "NaN", "inf", "fast"] {
            assert!(lr(bad).is_err(), "{bad}");
        }
        let smoothing = number(rules::LABEL_SMOOTHING);
        assert_eq!(smoothing("0"), Ok(0.0));
        assert!(smoothing("1").is_err() && smoothing("NaN").is_err());
        let decay = number(rules::AVERAGE_DECAY);
        assert_eq!(decay("0.999"), Ok(0.999));
        assert_eq!(decay("1"), Err("must be above 0 and below 1".to_owned()));
        assert!(decay("0").is_err());
        let batch = number(rules::BATCH_SIZE);
        assert!(batch("65536").is_ok() && batch("65537").is_err());
    }

    #[test]
    fn choices_parse_by_name_and_list_every_value() {
        let parser = choice::<Schedule>();
        let listed: Vec<String> = parser
            .possible_values()
            .unwrap()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(listed, ["constant", "cosine", "onecycle", "plateau"]);
    }
}
