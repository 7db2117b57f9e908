//! `report.html`: one self-contained page (pictures embedded as data URIs, styles inline, no
//! scripts, no network) with the run's configuration, tables and pictures.

use crate::eval::{ClassificationReport, Scores};
use crate::io::figure::Figure;
use crate::io::RunConfig;
use crate::train::EpochRecord;
use anyhow::Result;
use base64::Engine;
use std::fmt::Write;
use std::path::Path;

pub struct PageInputs<'a> {
    pub run_dir: &'a Path,
    pub config: &'a RunConfig,
    pub records: &'a [EpochRecord],
    pub report: &'a ClassificationReport,
    pub data_description: &'a str,
    pub figures: &'a [Figure],
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;\
margin:2em auto;max-width:1700px;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;\
text-align:right}th{background:#f3f3f3}td.key,th.key{text-align:left}\
code{background:#f3f3f3;padding:0 .2em}figure{margin:1em 0}img{max-width:100%;height:auto}\
figcaption{color:#555;font-size:.9em}.headline{font-size:1.15em}";

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |v| format!("{:.2}%", 100.0 * v))
}

fn number(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.4}"))
}

pub fn page(inputs: &PageInputs<'_>) -> Result<String> {
    let mut html = String::new();
    let run = escape(&inputs.run_dir.display().to_string());
    let config = inputs.config;
    writeln!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>mnist-cnn report: {run}</title>\n<style>{STYLE}</style>\n</head>\n<body>"
    )?;
    writeln!(html, "<h1>mnist-cnn run <code>{run}</code></h1>")?;
    headline(&mut html, inputs)?;
    if let Some(parent) = &config.parent {
        fine_tuning(&mut html, parent, config)?;
    }
    writeln!(html, "<h2>Training</h2>")?;
    figure(&mut html, &inputs.figures[0])?;
    epoch_table(&mut html, inputs.records)?;
    writeln!(
        html,
        "<h2>Evaluation on {}</h2>",
        escape(inputs.data_description)
    )?;
    class_table(&mut html, inputs.report)?;
    for picture in &inputs.figures[1..3] {
        figure(&mut html, picture)?;
    }
    writeln!(html, "<h2>What the first layer learned</h2>")?;
    figure(&mut html, &inputs.figures[3])?;
    writeln!(html, "<h2>Configuration</h2>")?;
    config_table(&mut html, config)?;
    writeln!(
        html,
        "<p>Written by mnist-cnn {} (tch {}, libtorch {}).</p>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION"),
        config.tch_version,
        config.libtorch_version
    )?;
    Ok(html)
}

fn headline(html: &mut String, inputs: &PageInputs<'_>) -> Result<()> {
    let config = inputs.config;
    let status = match &config.final_metrics {
        Some(m) => format!(
            "kept epoch {} of {}{}, {:.1} s of training",
            m.chosen_epoch,
            m.epochs_completed,
            if m.stopped_early {
                " (stopped early)"
            } else {
                ""
            },
            m.train_seconds
        ),
        None => "still running or interrupted".to_owned(),
    };
    writeln!(
        html,
        "<p class=\"headline\"><b>{}</b> on {}: accuracy <b>{:.2}%</b> and loss {:.4} on {}; {}.</p>",
        escape(&config.command.to_string()),
        escape(&config.device.to_string()),
        100.0 * inputs.report.accuracy,
        inputs.report.loss,
        escape(inputs.data_description),
        status
    )?;
    Ok(())
}

/// Picks one figure out of the scores.
type ScoreOf = fn(&Scores) -> Option<f64>;

fn fine_tuning(html: &mut String, parent: &Path, config: &RunConfig) -> Result<()> {
    writeln!(html, "<h2>Fine-tuning</h2>")?;
    writeln!(
        html,
        "<p>Started from <code>{}</code>.</p>",
        escape(&parent.display().to_string())
    )?;
    let after: Option<Scores> = config.final_metrics.as_ref().map(|m| m.scores);
    let before = config.before;
    writeln!(
        html,
        "<table><tr><th class=\"key\"></th><th>before</th><th>after</th></tr>"
    )?;
    let rows: [(&str, ScoreOf, bool); 4] = [
        ("validation accuracy", |s| s.validation_accuracy, true),
        ("validation loss", |s| s.validation_loss, false),
        ("test accuracy", |s| s.test_accuracy, true),
        ("test loss", |s| s.test_loss, false),
    ];
    for (name, get, is_accuracy) in rows {
        let (b, a) = (before.as_ref().and_then(get), after.as_ref().and_then(get));
        if b.is_none() && a.is_none() {
            continue;
        }
        let show = |v| if is_accuracy { percent(v) } else { number(v) };
        writeln!(
            html,
            "<tr><td class=\"key\">{name}</td><td>{}</td><td>{}</td></tr>",
            show(b),
            show(a)
        )?;
    }
    writeln!(html, "</table>")?;
    Ok(())
}

fn figure(html: &mut String, picture: &Figure) -> Result<()> {
    let data = base64::engine::general_purpose::STANDARD.encode(&picture.png);
    writeln!(
        html,
        "<figure><img alt=\"{}\" src=\"data:image/png;base64,{data}\">\
         <figcaption>{} (<code>{}</code>)</figcaption></figure>",
        escape(&picture.caption),
        escape(&picture.caption),
        picture.file
    )?;
    Ok(())
}

fn epoch_table(html: &mut String, records: &[EpochRecord]) -> Result<()> {
    writeln!(
        html,
        "<table><tr><th>epoch</th><th>train loss</th><th>validation loss</th>\
         <th>validation accuracy</th><th>test loss</th><th>test accuracy</th>\
         <th>learning rate</th><th>seconds</th><th>images/s</th></tr>"
    )?;
    for r in records {
        let s = &r.scores;
        // Epoch 0 is the starting checkpoint of a fine-tuning run: scored, not trained.
        let trained = |text: String| if r.epoch == 0 { "–".to_owned() } else { text };
        writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            r.epoch,
            number(r.train_loss),
            number(s.validation_loss),
            percent(s.validation_accuracy),
            number(s.test_loss),
            percent(s.test_accuracy),
            trained(format!("{:.2e}", r.learning_rate)),
            trained(format!("{:.1}", r.seconds)),
            trained(format!("{:.0}", r.images_per_second))
        )?;
    }
    writeln!(html, "</table>")?;
    Ok(())
}

fn class_table(html: &mut String, report: &ClassificationReport) -> Result<()> {
    writeln!(
        html,
        "<table><tr><th>digit</th><th>precision</th><th>recall</th><th>F1</th>\
         <th>support</th></tr>"
    )?;
    for c in &report.per_class {
        writeln!(
            html,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            c.class, c.precision, c.recall, c.f1, c.support
        )?;
    }
    let m = &report.macro_avg;
    writeln!(
        html,
        "<tr><th>macro</th><th>{:.4}</th><th>{:.4}</th><th>{:.4}</th><th>{}</th></tr></table>",
        m.precision,
        m.recall,
        m.f1,
        report.confusion_matrix.total()
    )?;
    Ok(())
}

/// Every top-level entry of config.json, nested values as compact JSON.
fn config_table(html: &mut String, config: &RunConfig) -> Result<()> {
    let value = serde_json::to_value(config)?;
    writeln!(html, "<table>")?;
    if let Some(entries) = value.as_object() {
        for (key, value) in entries {
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            writeln!(
                html,
                "<tr><td class=\"key\">{}</td><td class=\"key\"><code>{}</code></td></tr>",
                escape(key),
                escape(&shown)
            )?;
        }
    }
    writeln!(html, "</table>")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape("runs/<a & \"b\">"),
            "runs/&lt;a &amp; &quot;b&quot;&gt;"
        );
    }
}
