//! A recipe's config: its defaults overridden by `key=value` arguments, each parsed to the type of
//! the default it replaces. Unknown keys are errors that list the known ones. The loop's own keys
//! (`steps`, `eval_every`, `eval_on_start`, `seed`, `log_every`, and the checkpoints' `save_every`,
//! `keep_last`, `keep_best`, `patience`, `restore_best`) may be given even when the recipe sets no
//! default.

use anyhow::{bail, Context, Result};
use mlua::{Lua, Table, Value};

/// Keys the run loop reads: integers, except `keep_best` (a string) and `restore_best` and
/// `eval_on_start` (booleans).
pub const LOOP_KEYS: &[&str] = &["steps", "eval_every", "eval_on_start", "seed", "log_every", "save_every", "keep_last", "keep_best", "patience", "restore_best"];

/// Splits `key=value` arguments.
pub fn parse_overrides(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("expected key=value, got '{a}'"),
        })
        .collect()
}

fn parse_like(lua: &Lua, key: &str, default: &Value, raw: &str) -> Result<Value> {
    let bad = |what: &str| anyhow::anyhow!("config key '{key}' expects {what}, got '{raw}'");
    Ok(match default {
        Value::Integer(_) => Value::Integer(raw.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
        Value::Number(_) => Value::Number(raw.trim().parse::<f64>().map_err(|_| bad("a number"))?),
        Value::Boolean(_) => Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(bad("true or false")),
        }),
        Value::String(_) => Value::String(lua.create_string(raw)?),
        Value::Nil if key == "keep_best" => Value::String(lua.create_string(raw)?),
        Value::Nil if key == "restore_best" || key == "eval_on_start" => parse_like(lua, key, &Value::Boolean(false), raw)?,
        Value::Nil => Value::Integer(raw.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
        other => bail!("config key '{key}' holds a {} and cannot be set from the command line", other.type_name()),
    })
}

/// A new table: a copy of `defaults` with `overrides` applied.
pub fn resolve(lua: &Lua, defaults: &Table, overrides: &[(String, String)]) -> Result<Table> {
    crate::lua::args::check_nesting("the recipe", "config", &Value::Table(defaults.clone()))?;
    let cfg = lua.create_table()?;
    for pair in defaults.pairs::<Value, Value>() {
        let (k, v) = pair?;
        cfg.raw_set(k, v)?;
    }
    for (key, raw) in overrides {
        let default: Value = cfg.raw_get(key.as_str())?;
        if default.is_nil() && !LOOP_KEYS.contains(&key.as_str()) {
            let mut known: Vec<String> = defaults.pairs::<String, Value>().filter_map(|p| p.ok().map(|(k, _)| k)).collect();
            known.extend(LOOP_KEYS.iter().map(|k| k.to_string()));
            known.sort();
            known.dedup();
            bail!("unknown config key '{key}' (known keys: {})", known.join(", "));
        }
        let value = parse_like(lua, key, &default, raw).context("in the command-line overrides")?;
        cfg.raw_set(key.as_str(), value)?;
    }
    Ok(cfg)
}

/// A config value as a message shows it (`-1`, `'ten'`, `a table`).
fn shown(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.to_string_lossy()),
        Value::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_name()),
    }
}

/// An optional non-negative integer loop setting.
pub fn loop_setting(cfg: &Table, key: &str) -> Result<Option<u64>> {
    match cfg.raw_get::<Value>(key)? {
        Value::Nil => Ok(None),
        Value::Integer(i) if i >= 0 => Ok(Some(i as u64)),
        Value::Number(n) if n >= 0.0 && n.fract() == 0.0 => Ok(Some(n as u64)),
        other => bail!("config key '{key}' must be a non-negative integer, got {}", shown(&other)),
    }
}

/// The seed, if set: any integer (libtorch takes negative seeds too).
pub fn seed_setting(cfg: &Table) -> Result<Option<i64>> {
    match cfg.raw_get::<Value>("seed")? {
        Value::Nil => Ok(None),
        Value::Integer(i) => Ok(Some(i)),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e18 => Ok(Some(n as i64)),
        other => bail!("config key 'seed' must be an integer, got {}", shown(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_take_the_type_of_the_default() {
        let lua = Lua::new();
        let defaults: Table = lua.load("return { lr = 1e-3, steps = 10, name = 'x', warm = false }").eval().unwrap();
        let o = parse_overrides(&["lr=0.5".into(), "steps=3".into(), "name=y".into(), "warm=true".into(), "seed=7".into()]).unwrap();
        let cfg = resolve(&lua, &defaults, &o).unwrap();
        assert_eq!(cfg.get::<f64>("lr").unwrap(), 0.5);
        assert_eq!(cfg.get::<Value>("steps").unwrap(), Value::Integer(3));
        assert_eq!(cfg.get::<String>("name").unwrap(), "y");
        assert!(cfg.get::<bool>("warm").unwrap());
        assert_eq!(cfg.get::<i64>("seed").unwrap(), 7);

        let err = resolve(&lua, &defaults, &parse_overrides(&["lrr=1".into()]).unwrap()).unwrap_err().to_string();
        assert!(err.contains("'lrr'") && err.contains("lr, name, patience, restore_best, save_every, seed, steps"), "{err}");
        let err = format!("{:#}", resolve(&lua, &defaults, &parse_overrides(&["steps=ten".into()]).unwrap()).unwrap_err());
        assert!(err.contains("expects an integer"), "{err}");
        assert!(parse_overrides(&["novalue".into()]).is_err());
        let cfg: Table = lua.load("return { seed = -1, steps = -2 }").eval().unwrap();
        assert_eq!(seed_setting(&cfg).unwrap(), Some(-1));
        assert_eq!(loop_setting(&cfg, "steps").unwrap_err().to_string(), "config key 'steps' must be a non-negative integer, got -2");
    }
}
