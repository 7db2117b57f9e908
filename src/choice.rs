//! Closed sets of named options (schedules, recipes, freezing, export formats): the name a user
//! types and one sentence each. The command line builds its parsers and `--help` from these, so
//! the library's types need no command-line crate.

/// A small enum whose every value has a user-facing name and a description.
pub trait Choice: Copy + PartialEq + Send + Sync + 'static {
    /// Every value, in the order `--help` lists them.
    const ALL: &'static [Self];

    /// What users type (`onecycle`).
    fn name(self) -> &'static str;

    /// One sentence on what the value does.
    fn help(self) -> &'static str;

    /// The value called `name`, if there is one.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The names, for messages: "constant, cosine, onecycle".
    fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
        names.join(", ")
    }
}

/// Declares a [`Choice`] enum once: each value's name (what users type, what config.json
/// records, what `Display` prints) and its one-sentence help (also the variant's
/// documentation). The enum gets `Choice`, `Display`, and serde by name.
///
/// ```ignore
/// declare_choice! {
///     /// Learning-rate schedules.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
///     pub enum Schedule {
///         #[default]
///         Constant = "constant": "The base learning rate throughout",
///         Cosine = "cosine": "Cosine decay from the base rate to zero over the run",
///     }
/// }
/// ```
macro_rules! declare_choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal: $help:literal,)*
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(#[doc = $help] $(#[$variant_meta])* $variant,)*
        }

        impl $crate::choice::Choice for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),*];

            fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            fn help(self) -> &'static str {
                match self { $(Self::$variant => $help,)* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($crate::choice::Choice::name(*self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                <Self as $crate::choice::Choice>::from_name(&name).ok_or_else(|| {
                    serde::de::Error::unknown_variant(&name, &[$($text),*])
                })
            }
        }
    };
}

pub(crate) use declare_choice;

#[cfg(test)]
mod tests {
    use super::*;

    declare_choice! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour {
            Red = "red": "Warm",
            DeepBlue = "deep_blue": "Cold",
        }
    }

    #[test]
    fn a_declared_choice_is_named_once_for_every_use() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::DeepBlue]);
        assert_eq!(Colour::DeepBlue.name(), "deep_blue");
        assert_eq!(Colour::DeepBlue.help(), "Cold");
        assert_eq!(Colour::DeepBlue.to_string(), "deep_blue");
        assert_eq!(
            serde_json::to_string(&Colour::DeepBlue).unwrap(),
            "\"deep_blue\""
        );
        let parsed: Colour = serde_json::from_str("\"red\"").unwrap();
        assert_eq!(parsed, Colour::Red);
        let err = serde_json::from_str::<Colour>("\"green\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown variant `green`, expected `red` or `deep_blue`"),
            "{err}"
        );
        assert_eq!(Colour::names(), "red, deep_blue");
    }
}
