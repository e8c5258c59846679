//! `--set section.key=value` on top of a TOML table.

use std::path::Path;

use super::{ConfigError, is_path_key, normalize};

/// Sets `section.key` in `table` from `arg` (`section.key=value`). The value
/// is read as a TOML value when it parses as one (`20`, `true`, `1e-4`,
/// `["q_proj", "v_proj"]`) and as a string otherwise; relative paths are
/// taken relative to `cwd`.
pub fn apply_override(table: &mut toml::Table, arg: &str, cwd: &Path) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::Override {
        arg: arg.to_string(),
        reason,
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value, e.g. train.max_steps=20".into()))?;
    let (section, field) = key
        .trim()
        .split_once('.')
        .ok_or_else(|| err("the key needs a section, e.g. train.learning_rate".into()))?;
    if section.is_empty() || field.is_empty() || field.contains('.') {
        return Err(err("the key must be section.key, e.g. method.rank".into()));
    }
    let raw = raw.trim();
    let mut value = parse_value(raw);
    if is_path_key(section, field) {
        let p = Path::new(raw);
        value = toml::Value::String(if p.is_relative() {
            normalize(&cwd.join(p)).display().to_string()
        } else {
            raw.to_string()
        });
    }
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(sec) = entry else {
        return Err(err(format!("`{section}` is not a section")));
    };
    // Another method kind has other keys: switching starts from its
    // defaults, and later overrides set its own keys.
    if section == "method" && field == "kind" {
        let default = serde_json::to_value(crate::methods::MethodConfig::default())
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string));
        let current = match sec.get("kind") {
            Some(k) => k.as_str().map(str::to_string),
            None => default,
        };
        if current.as_deref() != value.as_str() {
            sec.clear();
        }
    }
    sec.insert(field.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_the_method_kind_drops_the_old_kinds_keys() {
        let mut t: toml::Table = "[method]\nkind = \"lora\"\nrank = 8\nalpha = 16.0\n"
            .parse()
            .unwrap();
        let cwd = Path::new("/");
        apply_override(&mut t, "method.kind=lora", cwd).unwrap();
        assert_eq!(t["method"]["rank"].as_integer(), Some(8));
        apply_override(&mut t, "method.kind=miss", cwd).unwrap();
        apply_override(&mut t, "method.rank=4", cwd).unwrap();
        let method = t["method"].as_table().unwrap();
        assert_eq!(method.len(), 2, "{method:?}");
        assert_eq!(method["rank"].as_integer(), Some(4));
    }

    #[test]
    fn values_are_typed_and_paths_anchored() {
        let mut t = toml::Table::new();
        let cwd = Path::new("/work");
        apply_override(&mut t, "train.max_steps=20", cwd).unwrap();
        apply_override(&mut t, "method.target_modules=[\"q_proj\"]", cwd).unwrap();
        apply_override(&mut t, "model.path=models/x", cwd).unwrap();
        apply_override(&mut t, "method.kind=lora", cwd).unwrap();
        assert_eq!(t["train"]["max_steps"].as_integer(), Some(20));
        assert_eq!(t["method"]["target_modules"][0].as_str(), Some("q_proj"));
        assert_eq!(t["model"]["path"].as_str(), Some("/work/models/x"));
        assert_eq!(t["method"]["kind"].as_str(), Some("lora"));
        assert!(apply_override(&mut t, "max_steps=3", cwd).is_err());
        assert!(apply_override(&mut t, "train.max_steps", cwd).is_err());
    }
}
