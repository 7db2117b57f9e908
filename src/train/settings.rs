//! How one declaration serves every use of a training setting. `declare_settings!` takes each
//! setting once (its config.json key, type, default, rule, flag and one-sentence help) and makes
//! from it the [`TrainOptions`](super::TrainOptions) field (so config.json's key), its default,
//! its check, the `KEYS` list, the all-`Option` [`TrainOverrides`](super::TrainOverrides) that
//! flags and settings files fill, and the [`Setting`] table the command line builds its flags
//! and `--help` from.

use crate::choice::Choice;
use crate::optim::schedule::Schedule;
use crate::optim::OptimizerKind;
use crate::precision::Precision;
use crate::rule::{parse_number, Rule};
use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;

/// A type a training setting can have: how a flag's text becomes one, how its rule checks it,
/// and how `--help` shows it as a default.
pub trait SettingValue: Clone + PartialEq + DeserializeOwned {
    /// What the setting's [`Rule`] judges: the number inside an `Option` or an [`Epochs`].
    type Checked: Copy + std::fmt::Debug + 'static;

    /// A switch (`--augment`) takes no value: given means true.
    const IS_SWITCH: bool = false;

    /// The value a flag's `text` names, checked by `rule`; else what is wanted instead.
    fn parse_text(text: &str, rule: Option<&Rule<Self::Checked>>) -> Result<Self, String>;

    /// Refuses the value unless `rule` accepts it, naming the setting by `key`.
    fn check(&self, key: &str, rule: &Rule<Self::Checked>) -> Result<()>;

    /// The value as `--help` shows a default; `None` where nothing is shown (absent, off).
    fn shown(&self) -> Option<String>;

    /// The names a user may type, with one sentence each (a [`Choice`]'s; empty otherwise).
    fn choices() -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}

/// A number as a person writes it: `1e-3` rather than `0.001`, `0.1` rather than `1e-1`.
fn shortest(x: f64) -> String {
    let plain = format!("{x}");
    let scientific = format!("{x:e}");
    if scientific.len() < plain.len() {
        scientific
    } else {
        plain
    }
}

macro_rules! number_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            type Checked = $ty;

            fn parse_text(text: &str, rule: Option<&Rule<$ty>>) -> Result<Self, String> {
                parse_number(text, rule)
            }

            fn check(&self, key: &str, rule: &Rule<$ty>) -> Result<()> {
                rule.check(key, *self)
            }

            fn shown(&self) -> Option<String> {
                Some(shortest(*self as f64))
            }
        }
    )*};
}

number_setting!(usize, u64, f64);

impl SettingValue for bool {
    type Checked = bool;
    const IS_SWITCH: bool = true;

    fn parse_text(text: &str, _: Option<&Rule<bool>>) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not true or false"))
    }

    fn check(&self, key: &str, rule: &Rule<bool>) -> Result<()> {
        rule.check(key, *self)
    }

    /// A switch is off unless given: there is no default to show.
    fn shown(&self) -> Option<String> {
        None
    }
}

/// Two numbers, as `--betas 0.9,0.999` and `"betas": [0.9, 0.999]`, each judged by the rule.
impl SettingValue for [f64; 2] {
    type Checked = f64;

    fn parse_text(text: &str, rule: Option<&Rule<f64>>) -> Result<Self, String> {
        let (a, b) = text
            .split_once(',')
            .ok_or_else(|| format!("{text:?} is not two numbers separated by a comma"))?;
        Ok([parse_number(a.trim(), rule)?, parse_number(b.trim(), rule)?])
    }

    fn check(&self, key: &str, rule: &Rule<f64>) -> Result<()> {
        for (i, x) in self.iter().enumerate() {
            rule.check(&format!("{key}[{i}]"), *x)?;
        }
        Ok(())
    }

    fn shown(&self) -> Option<String> {
        Some(format!("{},{}", shortest(self[0]), shortest(self[1])))
    }
}

/// A setting that may be absent (`--patience`): given means present.
impl<T: SettingValue> SettingValue for Option<T> {
    type Checked = T::Checked;

    fn parse_text(text: &str, rule: Option<&Rule<T::Checked>>) -> Result<Self, String> {
        T::parse_text(text, rule).map(Some)
    }

    fn check(&self, key: &str, rule: &Rule<T::Checked>) -> Result<()> {
        self.as_ref().map_or(Ok(()), |value| value.check(key, rule))
    }

    fn shown(&self) -> Option<String> {
        self.as_ref().and_then(T::shown)
    }
}

/// A [`Choice`] as a setting: typed by name, shown by name.
macro_rules! choice_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            type Checked = ();

            fn parse_text(text: &str, _: Option<&Rule<()>>) -> Result<Self, String> {
                Self::from_name(text)
                    .ok_or_else(|| format!("{text:?} is not one of {}", Self::names()))
            }

            fn check(&self, _: &str, _: &Rule<()>) -> Result<()> {
                Ok(())
            }

            fn shown(&self) -> Option<String> {
                Some(self.name().to_owned())
            }

            fn choices() -> Vec<(&'static str, &'static str)> {
                Self::ALL.iter().map(|c| (c.name(), c.help())).collect()
            }
        }
    )*};
}

pub(crate) use choice_setting;

choice_setting!(Schedule, OptimizerKind, Precision);

/// Where a setting has a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOn {
    /// `train` and `finetune`.
    Both,
    /// `finetune` only (`--freeze`: a network trained from scratch has nothing to keep).
    Finetune,
    /// No flag: set by the command itself; a settings file may still set it.
    Neither,
    /// A flag of its own kind, declared with the device flags (`--precision`, which also takes
    /// `auto`, decided on the machine).
    Elsewhere,
}

/// A setting's flag: its name (`lr` for `--lr`), the placeholder `--help` shows for its value,
/// and the commands that take it.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    /// `None`: the name in capitals (`--batch-size <BATCH_SIZE>`).
    pub value_name: Option<&'static str>,
    pub on: FlagOn,
    /// What `--help` says of the default when it is not a value of the options (a default
    /// that depends on another setting).
    pub default_note: Option<&'static str>,
}

impl Flag {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            value_name: None,
            on: FlagOn::Both,
            default_note: None,
        }
    }

    /// No flag of its own.
    pub const NONE: Self = Self {
        on: FlagOn::Neither,
        ..Self::new("")
    };

    /// A flag declared with another group of flags (see [`FlagOn::Elsewhere`]).
    pub const fn elsewhere(name: &'static str) -> Self {
        Self {
            on: FlagOn::Elsewhere,
            ..Self::new(name)
        }
    }

    pub const fn value_name(self, value_name: &'static str) -> Self {
        Self {
            value_name: Some(value_name),
            ..self
        }
    }

    pub const fn finetune_only(self) -> Self {
        Self {
            on: FlagOn::Finetune,
            ..self
        }
    }

    pub const fn default_note(self, note: &'static str) -> Self {
        Self {
            default_note: Some(note),
            ..self
        }
    }
}

/// One setting of the options `O` (whose overrides are `G`) as the command line sees it, made
/// by `declare_settings!`.
pub struct Setting<O: 'static, G: 'static> {
    /// The config.json and TOML key.
    pub key: &'static str,
    pub flag: Flag,
    /// One sentence (also the field's documentation).
    pub help: &'static str,
    pub is_switch: bool,
    /// The values by name, with a sentence each (empty but for choices).
    pub choices: fn() -> Vec<(&'static str, &'static str)>,
    /// Sets the setting in `overrides` from a flag's text, checked by the setting's rule.
    pub give: fn(&mut G, &str) -> Result<(), String>,
    /// The setting's value in `options`, as `--help` shows a default.
    pub shown: fn(&O) -> Option<String>,
    /// Whether two sets of options agree on it (do the recipes differ?).
    pub same: fn(&O, &O) -> bool,
}

/// A settings file's value of `key` as the setting's type, or an error naming the key.
pub fn typed<T: DeserializeOwned>(key: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| anyhow!("{key}: {e}"))
}

/// Declares the training settings; see the module's documentation. Each entry is
/// `key: Type = default, rule R (a [`Rule`] or `None`), flag F (a [`Flag`]), help "…";`, after
/// the serde attributes its config.json field needs (how runs recorded before it existed read).
macro_rules! declare_settings {
    ($(
        $(#[$field_attr:meta])*
        $key:ident: $ty:ty = $default:expr, rule $rule:expr, flag $flag:expr, help $help:literal;
    )*) => {
        /// The hyper-parameters of a training run, recorded in config.json under these names.
        /// The defaults are the Keras tutorial's recipe.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct TrainOptions {
            $(
                #[doc = $help]
                $(#[$field_attr])*
                pub $key: $ty,
            )*
        }

        /// Each setting's default, as a function for serde's `default = "defaults::key"`.
        mod defaults {
            #[allow(unused_imports)]
            use super::*;
            $(pub fn $key() -> $ty { $default })*
        }

        impl Default for TrainOptions {
            fn default() -> Self {
                Self { $($key: defaults::$key(),)* }
            }
        }

        /// The config.json keys of [`TrainOptions`]: what a settings file may set.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        /// Settings given over others (by flags, or by a settings file); `None` where not given.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct TrainOverrides {
            $(pub $key: Option<$ty>,)*
        }

        impl TrainOverrides {
            /// `base` with every setting given here put over it.
            pub fn over(&self, base: TrainOptions) -> TrainOptions {
                TrainOptions { $($key: self.$key.clone().unwrap_or(base.$key),)* }
            }

            /// The keys of the settings given, in declaration order.
            pub fn keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(if self.$key.is_some() { keys.push(stringify!($key)); })*
                keys
            }

            /// Sets `key` from a settings file's `value`; the error names the key.
            pub fn set(&mut self, key: &str, value: serde_json::Value) -> Result<()> {
                match key {
                    $(stringify!($key) => self.$key = Some($crate::train::settings::typed(key, value)?),)*
                    _ => anyhow::bail!("{key}: not a training setting"),
                }
                Ok(())
            }
        }

        impl TrainOptions {
            /// Checks each setting against its rule, naming it by its key.
            fn check_rules(&self) -> Result<()> {
                $(
                    if let Some(rule) = $rule {
                        SettingValue::check(&self.$key, stringify!($key), &rule)?;
                    }
                )*
                Ok(())
            }
        }

        /// Every setting, in declaration order (config.json's and `--help`'s).
        pub const SETTINGS: &[Setting<TrainOptions, TrainOverrides>] = &[$(
            Setting {
                key: stringify!($key),
                flag: $flag,
                help: $help,
                is_switch: <$ty as SettingValue>::IS_SWITCH,
                choices: <$ty as SettingValue>::choices,
                give: |overrides, text| {
                    let value = <$ty as SettingValue>::parse_text(text, ($rule).as_ref())?;
                    overrides.$key = Some(value);
                    Ok(())
                },
                shown: |options| SettingValue::shown(&options.$key),
                same: |a, b| a.$key == b.$key,
            },
        )*];
    };
}

pub(crate) use declare_settings;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_shown_as_a_person_writes_them() {
        assert_eq!(shortest(1e-3), "1e-3");
        assert_eq!(shortest(0.1), "0.1");
        assert_eq!(shortest(0.999), "0.999");
        assert_eq!(shortest(1e-8), "1e-8");
        assert_eq!(shortest(32.0), "32");
        assert_eq!(shortest(0.0), "0");
        assert_eq!([0.9, 0.999].shown().as_deref(), Some("0.9,0.999"));
        assert_eq!(Some(3usize).shown().as_deref(), Some("3"));
        assert_eq!(None::<usize>.shown(), None);
        assert_eq!(Schedule::Onecycle.shown().as_deref(), Some("onecycle"));
    }

    #[test]
    fn flag_text_is_parsed_and_checked_by_the_rule() {
        let positive = Rule::new(|x: f64| x > 0.0, "above 0");
        assert_eq!(f64::parse_text("1e-3", Some(&positive)), Ok(1e-3));
        assert_eq!(
            f64::parse_text("-1", Some(&positive)),
            Err("must be above 0".to_owned())
        );
        assert_eq!(
            <[f64; 2]>::parse_text("0.8, 0.99", Some(&positive)),
            Ok([0.8, 0.99])
        );
        assert!(<[f64; 2]>::parse_text("0.8", None).is_err());
        assert_eq!(Option::<usize>::parse_text("4", None), Ok(Some(4)));
        assert_eq!(
            u64::parse_text("x", None),
            Err("\"x\" is not a whole number".to_owned())
        );
        assert_eq!(Schedule::parse_text("cosine", None), Ok(Schedule::Cosine));
        assert!(Schedule::parse_text("linear", None)
            .unwrap_err()
            .contains("constant, cosine, onecycle, plateau"));
        assert!([0.9, 1.5].check("betas", &positive).is_ok());
        let below_one = Rule::new(|x: f64| x < 1.0, "below 1");
        let err = [0.9, 1.5].check("betas", &below_one).unwrap_err();
        assert_eq!(err.to_string(), "betas[1] is 1.5: must be below 1");
    }
}
