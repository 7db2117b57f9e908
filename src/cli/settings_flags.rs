//! The training settings' flags, built from the settings' one declaration
//! ([`crate::train::SETTINGS`]): each flag's name, value, check, choices, help and default come
//! from there, and what the flags give is a [`TrainOverrides`], as a settings file's is.

use crate::choice::Choice;
use crate::train::{finetune_defaults, FlagOn, Recipe, TrainOptions, TrainOverrides, TrainSetting};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::marker::PhantomData;

/// The `--help` heading the settings are listed under.
const HEADING: &str = "Training settings (config.json's keys; flags override --config)";

/// Which command's flags: the ones it takes, and the defaults its `--help` shows.
pub trait Flags {
    /// Whether `setting` has a flag on this command.
    fn takes(setting: &TrainSetting) -> bool;
    /// The settings a run starts from when no flag is given.
    fn defaults() -> TrainOptions;
    /// Other starting points a flag's default may come from (`train --recipe`).
    fn alternatives() -> Vec<TrainOptions>;
}

/// `train`'s: every setting with a flag but `--freeze`, over the recipe.
#[derive(Debug, Clone)]
pub struct ForTrain;

impl Flags for ForTrain {
    fn takes(setting: &TrainSetting) -> bool {
        setting.flag.on == FlagOn::Both
    }

    fn defaults() -> TrainOptions {
        Recipe::Tutorial.options()
    }

    fn alternatives() -> Vec<TrainOptions> {
        Recipe::ALL.iter().map(|recipe| recipe.options()).collect()
    }
}

/// `finetune`'s: every setting with a flag, over a fine-tune's defaults.
#[derive(Debug, Clone)]
pub struct ForFinetune;

impl Flags for ForFinetune {
    fn takes(setting: &TrainSetting) -> bool {
        matches!(setting.flag.on, FlagOn::Both | FlagOn::Finetune)
    }

    fn defaults() -> TrainOptions {
        finetune_defaults()
    }

    fn alternatives() -> Vec<TrainOptions> {
        Vec::new()
    }
}

/// The settings given as flags on the command `C`.
#[derive(Debug, Clone)]
pub struct SettingFlags<C> {
    pub given: TrainOverrides,
    command: PhantomData<C>,
}

impl<C: Flags> SettingFlags<C> {
    fn taken() -> impl Iterator<Item = &'static TrainSetting> {
        crate::train::SETTINGS.iter().filter(|s| C::takes(s))
    }
}

/// The default of `setting` when a run starts from `options`, as `--help` and docs/settings.md show
/// it: the flag's note where the default depends on another setting.
fn default_shown(setting: &TrainSetting, options: &TrainOptions) -> Option<String> {
    match setting.flag.default_note {
        Some(note) => Some(note.to_owned()),
        None => (setting.shown)(options),
    }
}

/// `--help`'s sentence for `setting`, with the default the command starts from, and ", or the
/// recipe's" where a recipe may set another.
fn help_text<C: Flags>(setting: &TrainSetting) -> String {
    let defaults = C::defaults();
    let default = default_shown(setting, &defaults);
    let varies = C::alternatives()
        .iter()
        .any(|other| !(setting.same)(&defaults, other));
    match default {
        Some(value) if varies => format!("{} [default: {value}, or the recipe's]", setting.help),
        Some(value) => format!("{} [default: {value}]", setting.help),
        None => setting.help.to_owned(),
    }
}

/// What `--help` shows for the flag's value: the declared name, else the flag's in capitals
/// (`--batch-size <BATCH_SIZE>`, as clap's derive names it).
fn value_name(setting: &TrainSetting) -> String {
    let flag = &setting.flag;
    flag.value_name
        .map_or_else(|| flag.name.to_uppercase().replace('-', "_"), str::to_owned)
}

/// The flag of `setting`, whose value is checked as the setting's rule says.
fn arg<C: Flags>(setting: &'static TrainSetting) -> Arg {
    let name = setting.flag.name;
    let arg = Arg::new(name).long(name).help(help_text::<C>(setting));
    if setting.is_switch {
        return arg.action(ArgAction::SetTrue);
    }
    let arg = arg.action(ArgAction::Set).value_name(value_name(setting));
    let choices = (setting.choices)();
    if choices.is_empty() {
        let give = setting.give;
        let check =
            move |text: &str| give(&mut TrainOverrides::default(), text).map(|()| text.to_owned());
        arg.value_parser(check).allow_negative_numbers(true)
    } else {
        let values = choices
            .into_iter()
            .map(|(name, help)| PossibleValue::new(name).help(help));
        arg.value_parser(PossibleValuesParser::new(values))
    }
}

impl<C: Flags> clap::FromArgMatches for SettingFlags<C> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = TrainOverrides::default();
        for setting in Self::taken() {
            let id = setting.flag.name;
            let text = if setting.is_switch {
                matches.get_flag(id).then(|| "true".to_owned())
            } else {
                matches.get_one::<String>(id).cloned()
            };
            if let Some(text) = text {
                (setting.give)(&mut given, &text)
                    .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))?;
            }
        }
        Ok(Self {
            given,
            command: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<C: Flags> clap::Args for SettingFlags<C> {
    fn augment_args(command: Command) -> Command {
        // Each flag's help on the line below it, as in every other command's --help (clap
        // would otherwise lay the section above the heading out in two columns).
        let command = command.next_line_help(true).next_help_heading(HEADING);
        Self::taken().fold(command, |command, setting| command.arg(arg::<C>(setting)))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// The training settings as docs/settings.md's Markdown table (between its `settings table`
/// markers), made from the declaration as `--help` is: flag, config.json and TOML key, the
/// defaults of `train` (the tutorial recipe) and of `finetune`, and what each does.
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| flag | key | `train` default | `finetune` default | meaning |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    let (train, finetune) = (ForTrain::defaults(), ForFinetune::defaults());
    for setting in crate::train::SETTINGS {
        let flag = match setting.flag.on {
            FlagOn::Neither => "—".to_owned(),
            _ if setting.is_switch => format!("`--{}`", setting.flag.name),
            FlagOn::Both | FlagOn::Finetune | FlagOn::Elsewhere => {
                format!("`--{} {}`", setting.flag.name, value_name(setting))
            }
        };
        let default = |options: &TrainOptions| {
            default_shown(setting, options).map_or("—".to_owned(), |value| format!("`{value}`"))
        };
        let note = match setting.flag.on {
            FlagOn::Finetune => " (finetune only)",
            FlagOn::Elsewhere => " (`--precision` also takes `auto`: see the table above)",
            FlagOn::Both | FlagOn::Neither => "",
        };
        let choices: Vec<String> = (setting.choices)()
            .into_iter()
            .map(|(name, help)| format!("`{name}`: {help}"))
            .collect();
        let choices = match choices.is_empty() {
            true => String::new(),
            false => format!(" ({})", choices.join("; ")),
        };
        table.push_str(&format!(
            "| {flag} | `{}` | {} | {} | {}{note}{choices} |\n",
            setting.key,
            default(&train),
            default(&finetune),
            setting.help,
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Train {
        #[command(flatten)]
        settings: SettingFlags<ForTrain>,
    }

    #[derive(Debug, Parser)]
    struct Finetune {
        #[command(flatten)]
        settings: SettingFlags<ForFinetune>,
    }

    #[test]
    fn flags_fill_the_overrides_by_the_declaration() {
        let train = Train::try_parse_from([
            "train",
            "--lr",
            "2e-3",
            "--ema",
            "0.99",
            "--nesterov",
            "--betas",
            "0.8,0.9",
            "--schedule",
            "cosine",
            "--epochs",
            "1.5",
        ])
        .unwrap();
        let given = &train.settings.given;
        assert_eq!(given.learning_rate, Some(2e-3));
        assert_eq!(given.weight_averaging, Some(Some(0.99)));
        assert_eq!(given.nesterov, Some(true));
        assert_eq!(given.betas, Some([0.8, 0.9]));
        assert_eq!(
            given.keys(),
            [
                "epochs",
                "learning_rate",
                "schedule",
                "weight_averaging",
                "nesterov",
                "betas"
            ]
        );
        assert_eq!(
            Train::try_parse_from(["train"]).unwrap().settings.given,
            TrainOverrides::default()
        );
    }

    #[test]
    fn flags_are_refused_by_the_settings_rules_and_commands() {
        for (flag, value, wanted) in [
            ("--lr", "-1", "must be a positive, finite number"),
            ("--batch-size", "0", "must be at least 1 and at most 65536"),
            ("--epochs", "nan", "positive number of epochs"),
            ("--seed", "x", "is not a whole number"),
        ] {
            let err = Train::try_parse_from(["train", flag, value])
                .unwrap_err()
                .to_string();
            assert!(err.contains(wanted), "{flag} {value}: {err}");
        }
        assert!(Train::try_parse_from(["train", "--freeze", "conv"]).is_err());
        let finetune = Finetune::try_parse_from(["finetune", "--freeze", "conv"]).unwrap();
        assert_eq!(
            finetune.settings.given.freeze,
            Some(crate::train::Freeze::Conv)
        );
    }

    #[test]
    fn help_shows_each_commands_default() {
        let lr = crate::train::SETTINGS
            .iter()
            .find(|s| s.key == "learning_rate")
            .unwrap();
        assert_eq!(
            help_text::<ForTrain>(lr),
            "The optimizer's learning rate, the peak rate under a schedule [default: 1e-3, or \
             the recipe's]"
        );
        assert!(help_text::<ForFinetune>(lr).ends_with("[default: 1e-4]"));
    }

    /// docs/settings.md's table of settings is the declaration's, as `markdown_table` writes it.
    #[test]
    fn the_docs_list_the_settings_as_declared() {
        let readme = include_str!("../../docs/settings.md");
        let begin = "<!-- settings table: made by cli::settings_flags::markdown_table -->\n";
        let end = "<!-- end of settings table -->";
        let start = readme
            .find(begin)
            .expect("docs/settings.md's settings table")
            + begin.len();
        let stop = start + readme[start..].find(end).expect("its end");
        let expected = markdown_table();
        assert!(
            readme[start..stop] == expected,
            "docs/settings.md's settings table differs from the declaration; it should read:\n{expected}"
        );
    }
}
