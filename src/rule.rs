//! The accepted range of a number that a flag and a file can both set: one [`Rule`] per
//! setting, so that `--batch-size 0` and `"batch_size": 0` in a config.json are refused by the
//! same check, with the same words.

use anyhow::{bail, Result};
use std::fmt::Debug;
use std::str::FromStr;

/// A number type a setting takes, and how to say what it is.
pub trait Number: FromStr + Copy + Debug + Send + Sync + 'static {
    /// "a whole number", "a number".
    const WHAT: &'static str;
}

impl Number for usize {
    const WHAT: &'static str = "a whole number";
}

impl Number for u64 {
    const WHAT: &'static str = "a whole number";
}

impl Number for f64 {
    const WHAT: &'static str = "a number";
}

/// `text` as a number that `rule` accepts (any, without one), or what is wanted instead: "must
/// be {wanted}", the same words a file with that value gets, or "\"x\" is not a number".
pub fn parse_number<T: Number>(text: &str, rule: Option<&Rule<T>>) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(x) => match rule {
            Some(rule) if !rule.accepts(x) => Err(format!("must be {}", rule.wanted)),
            _ => Ok(x),
        },
        Err(_) => Err(format!("{text:?} is not {}", T::WHAT)),
    }
}

/// Which values of a setting are accepted, and how to say so ("at least 1").
#[derive(Clone, Copy)]
pub struct Rule<T: 'static> {
    accept: fn(T) -> bool,
    /// What the setting wants, to follow "must be".
    pub wanted: &'static str,
}

impl<T: Copy + Debug> Rule<T> {
    pub const fn new(accept: fn(T) -> bool, wanted: &'static str) -> Self {
        Self { accept, wanted }
    }

    pub fn accepts(&self, value: T) -> bool {
        (self.accept)(value)
    }

    /// Refuses `value` of the setting `key` unless the rule accepts it: "batch_size is 0: must
    /// be at least 1".
    pub fn check(&self, key: &str, value: T) -> Result<()> {
        if !self.accepts(value) {
            bail!("{key} is {value:?}: must be {}", self.wanted);
        }
        Ok(())
    }

    /// [`Rule::check`] for a setting that may be absent.
    pub fn check_optional(&self, key: &str, value: Option<T>) -> Result<()> {
        value.map_or(Ok(()), |value| self.check(key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_key_the_value_and_the_range() {
        let rule = Rule::new(|n: usize| n >= 1, "at least 1");
        assert!(rule.check("batch_size", 3).is_ok());
        assert_eq!(
            rule.check("batch_size", 0).unwrap_err().to_string(),
            "batch_size is 0: must be at least 1"
        );
        assert!(rule.check_optional("patience", None).is_ok());
        assert!(rule.check_optional("patience", Some(0)).is_err());
    }
}
