//! What the front ends show of each method: its card (a stable id, title,
//! paper, one line on when to choose it), the `[method]` table the card
//! selects, and the fields a user may change, each with its doc, default and
//! range. The wizard and `tunesmith methods` read this list; nothing outside
//! the engine restates it. A method adds its entries in its own file and one
//! line to [`catalog`].

use serde::Serialize;
use serde_json::Value;

use super::{
    AdaloraConfig, FullConfig, HftConfig, KasaConfig, LoraConfig, MethodConfig, MissConfig,
    adalora, full, hft, kasa, lora, miss,
};

/// One method card.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSpec {
    /// Stable id (`lora`, `rslora`, `full`): the card's name in the app and
    /// the CLI, never a Rust type name.
    pub id: &'static str,
    pub title: &'static str,
    /// The paper the method comes from, as a short citation (none for full
    /// fine-tuning).
    pub paper: Option<&'static str>,
    /// One line on when to choose it.
    pub when: &'static str,
    /// The `[method]` table the card selects (its `kind` and every key).
    pub config: Value,
    /// Whether the base may be held quantized (`model.quantize`): its
    /// weights stay frozen and the method works on quantized ones.
    pub frozen_base: bool,
    /// The keys of that table a user may change, in display order.
    pub fields: Vec<FieldSpec>,
}

/// One `[method]` key as the wizard edits it.
#[derive(Debug, Clone, Serialize)]
pub struct FieldSpec {
    /// The key in the `[method]` table.
    pub key: &'static str,
    /// Short label for a form.
    pub label: &'static str,
    /// What it does, for a hint under the field and docs/config.md.
    pub doc: &'static str,
    /// The card's value of the key (filled in from its config).
    pub default: Value,
    /// The values it accepts.
    #[serde(flatten)]
    pub kind: FieldKind,
}

/// The values a field accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldKind {
    /// A whole number in `min..=max` (no upper bound when `max` is absent;
    /// the model's shapes may bound it further, see `Method::validate`).
    Int { min: i64, max: Option<i64> },
    /// A number in the range; `*_open` excludes that end.
    Float {
        min: f64,
        min_open: bool,
        max: Option<f64>,
        max_open: bool,
    },
    /// On or off.
    Bool,
    /// A list of some of `options` (at least one).
    Subset { options: Vec<&'static str> },
    /// A list of decoder layer indices (0-based); empty means all.
    Layers,
    /// One of `options`.
    Choice { options: Vec<&'static str> },
    /// A file path, or none.
    File,
}

impl FieldSpec {
    /// A field whose default is filled in by [`MethodSpec::new`].
    pub const fn new(
        key: &'static str,
        label: &'static str,
        doc: &'static str,
        kind: FieldKind,
    ) -> Self {
        Self {
            key,
            label,
            doc,
            default: Value::Null,
            kind,
        }
    }

    /// Whether `value` is one this field accepts (the model's shapes aside).
    pub fn accepts(&self, value: &Value) -> bool {
        match &self.kind {
            FieldKind::Int { min, max } => value
                .as_i64()
                .is_some_and(|v| v >= *min && max.is_none_or(|m| v <= m)),
            FieldKind::Float {
                min,
                min_open,
                max,
                max_open,
            } => value.as_f64().is_some_and(|v| {
                let above = if *min_open { v > *min } else { v >= *min };
                let below = max.is_none_or(|m| if *max_open { v < m } else { v <= m });
                v.is_finite() && above && below
            }),
            FieldKind::Bool => value.is_boolean(),
            FieldKind::Subset { options } => value.as_array().is_some_and(|items| {
                !items.is_empty()
                    && items
                        .iter()
                        .all(|i| i.as_str().is_some_and(|s| options.contains(&s)))
            }),
            FieldKind::Layers => value
                .as_array()
                .is_some_and(|items| items.iter().all(|i| i.as_u64().is_some())),
            FieldKind::Choice { options } => value.as_str().is_some_and(|v| options.contains(&v)),
            FieldKind::File => value.is_null() || value.as_str().is_some_and(|v| !v.is_empty()),
        }
    }
}

/// The `dropout` field of adapter methods: a probability in [0, 1).
pub fn dropout_field(doc: &'static str) -> FieldSpec {
    FieldSpec::new(
        "dropout",
        "Dropout",
        doc,
        FieldKind::Float {
            min: 0.0,
            min_open: false,
            max: Some(1.0),
            max_open: true,
        },
    )
}

/// The `target_modules` field of adapter methods: some of the decoder's
/// linear layers.
pub fn target_modules_field(doc: &'static str) -> FieldSpec {
    FieldSpec::new(
        "target_modules",
        "Target modules",
        doc,
        FieldKind::Subset {
            options: super::LINEAR_MODULES.to_vec(),
        },
    )
}

impl MethodSpec {
    /// A card selecting `config`, with each field's default read from it.
    pub fn new(
        id: &'static str,
        title: &'static str,
        paper: Option<&'static str>,
        when: &'static str,
        config: MethodConfig,
        fields: Vec<FieldSpec>,
    ) -> Self {
        let frozen_base = config.method().quantized_base_refusal().is_none();
        let config = serde_json::to_value(config).unwrap_or(Value::Null);
        let fields = fields
            .into_iter()
            .map(|mut f| {
                f.default = config.get(f.key).cloned().unwrap_or(Value::Null);
                f
            })
            .collect();
        Self {
            id,
            title,
            paper,
            when,
            config,
            frozen_base,
            fields,
        }
    }

    /// The `[method]` kind the card selects.
    pub fn kind(&self) -> &str {
        self.config
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Every method card, in the order the wizard offers them (the first is the
/// default).
pub fn catalog() -> Vec<MethodSpec> {
    vec![
        lora::spec(LoraConfig::default()),
        lora::rslora_spec(),
        lora::dora_spec(),
        lora::pissa_spec(),
        lora::corda_spec(),
        miss::spec(MissConfig::default()),
        miss::bone_spec(),
        adalora::spec(AdaloraConfig::default()),
        kasa::spec(KasaConfig::default()),
        hft::spec(HftConfig::default()),
        full::spec(FullConfig::default()),
    ]
}

/// The card with this id.
pub fn find(id: &str) -> Option<MethodSpec> {
    catalog().into_iter().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_default_is_accepted_by_its_field() {
        let cards = catalog();
        let mut ids: Vec<_> = cards.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), cards.len(), "duplicate card ids");
        for card in &cards {
            assert!(!card.kind().is_empty(), "{} has no kind", card.id);
            for f in &card.fields {
                assert!(
                    f.accepts(&f.default),
                    "{}: method.{} = {} is outside its own range {:?}",
                    card.id,
                    f.key,
                    f.default,
                    f.kind
                );
            }
        }
    }

    #[test]
    fn every_key_of_a_cards_table_is_a_field_and_the_table_parses_back() {
        for card in catalog() {
            let table = card.config.as_object().expect("a table");
            for key in table.keys().filter(|k| *k != "kind") {
                assert!(
                    card.fields.iter().any(|f| f.key == key),
                    "{}: method.{key} has no field spec",
                    card.id
                );
            }
            let back: MethodConfig = serde_json::from_value(card.config.clone()).unwrap();
            assert_eq!(serde_json::to_value(back).unwrap(), card.config);
        }
    }

    /// The `| key | default | meaning |` rows of docs/config.md's section
    /// on `kind = "{kind}"`: key and the default cell's first code span.
    fn documented(kind: &str) -> Vec<(String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md");
        let text = std::fs::read_to_string(path).unwrap();
        let header = format!("### `kind = \"{kind}\"`");
        let start = text
            .find(&header)
            .unwrap_or_else(|| panic!("docs/config.md has no section {header}"));
        let section = &text[start + header.len()..];
        let end = section.find("\n#").unwrap_or(section.len());
        section[..end]
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
                let default = cells.get(1)?.split('`').nth(1)?;
                Some((key.to_string(), default.to_string()))
            })
            .collect()
    }

    #[test]
    fn docs_config_md_documents_every_field_with_its_default() {
        for card in catalog().iter().filter(|c| c.id == c.kind()) {
            let rows = documented(card.kind());
            for f in &card.fields {
                let Some((_, cell)) = rows.iter().find(|(k, _)| k == f.key) else {
                    panic!(
                        "docs/config.md does not document method.{} ({})",
                        f.key, card.id
                    );
                };
                let documented: Value = serde_json::from_str(cell).unwrap_or_else(|e| {
                    panic!(
                        "method.{}: default `{cell}` is not a JSON value: {e}",
                        f.key
                    )
                });
                let same = match (documented.as_f64(), f.default.as_f64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => documented == f.default,
                };
                assert!(
                    same,
                    "method.{}: docs/config.md says {cell}, the engine {}",
                    f.key, f.default
                );
            }
            for (key, _) in &rows {
                assert!(
                    card.fields.iter().any(|f| f.key == key),
                    "docs/config.md documents method.{key}, which {} does not have",
                    card.id
                );
            }
        }
    }

    #[test]
    fn fields_reject_values_outside_their_range() {
        let lora = find("lora").unwrap();
        let field = |k: &str| lora.fields.iter().find(|f| f.key == k).unwrap().clone();
        assert!(!field("rank").accepts(&serde_json::json!(0)));
        assert!(field("rank").accepts(&serde_json::json!(8)));
        assert!(!field("alpha").accepts(&serde_json::json!(0.0)));
        assert!(!field("dropout").accepts(&serde_json::json!(1.0)));
        assert!(field("dropout").accepts(&serde_json::json!(0.0)));
        assert!(!field("target_modules").accepts(&serde_json::json!([])));
        assert!(!field("target_modules").accepts(&serde_json::json!(["qproj"])));
        assert!(field("target_modules").accepts(&serde_json::json!(["q_proj"])));
    }
}
