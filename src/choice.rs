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
