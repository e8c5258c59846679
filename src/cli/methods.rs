//! `tunesmith methods`: the fine-tuning methods this build trains, with the
//! `[method]` keys each takes (the list the wizard's method step shows).

use anyhow::Result;
use clap::Args;

use tunesmith::methods::catalog::{FieldKind, catalog};

/// Arguments of `tunesmith methods`.
#[derive(Args)]
pub struct MethodsArgs {
    /// Print the cards as one JSON object ({"methods": [...]}).
    #[arg(long)]
    pub json: bool,
}

pub fn methods(args: MethodsArgs) -> Result<()> {
    let cards = catalog();
    if args.json {
        println!("{}", serde_json::json!({ "methods": cards }));
        return Ok(());
    }
    for card in &cards {
        println!("{} ({}, kind = \"{}\")", card.id, card.title, card.kind());
        println!("  {}", card.when);
        if let Some(paper) = card.paper {
            println!("  paper: {paper}");
        }
        for f in &card.fields {
            println!("  method.{} = {}  ({})", f.key, f.default, range(&f.kind));
            println!("      {}", f.doc);
        }
        println!();
    }
    Ok(())
}

fn range(kind: &FieldKind) -> String {
    let bound = |v: Option<f64>| v.map_or("inf".to_string(), |v| v.to_string());
    match kind {
        FieldKind::Int { min, max } => {
            format!(
                "whole number, {min}..{}",
                max.map_or("".into(), |m| m.to_string())
            )
        }
        FieldKind::Float {
            min,
            min_open,
            max,
            max_open,
        } => format!(
            "number in {}{min}, {}{}",
            if *min_open { "(" } else { "[" },
            bound(*max),
            if *max_open || max.is_none() { ")" } else { "]" }
        ),
        FieldKind::Bool => "true/false".into(),
        FieldKind::Subset { options } => format!("some of: {}", options.join(", ")),
        FieldKind::Layers => "layer list".into(),
        FieldKind::Choice { options } => format!("one of: {}", options.join(", ")),
        FieldKind::File => "a file path (none by default)".into(),
    }
}
