//! The one way modules and parameters are picked by name, shared by `freeze`/`unfreeze`, forward
//! hooks and (later) adapter targets. A module is picked when its name matches; a parameter when
//! its name or the name of a module holding it matches. A list of names matches by suffix at a
//! dot boundary
//! (`{"q_proj"}` picks `model.layers.0.self_attn.q_proj`, as PEFT's `target_modules` list
//! does), a string is a Lua pattern that must match the whole name
//! (`"model%.layers%.[0-3]%..*"`; a leading `^` and trailing `$` are allowed and change nothing).

use anyhow::{bail, Result};

use super::lua_pattern::LuaPattern;

#[derive(Clone, Debug)]
pub enum NameMatcher {
    /// Every name.
    All,
    /// Names equal to one of these or ending in `.` + one of these.
    Suffixes(Vec<String>),
    /// A Lua pattern over the whole name.
    Pattern(String, LuaPattern),
}

impl NameMatcher {
    pub fn suffixes(list: Vec<String>) -> Result<NameMatcher> {
        if list.is_empty() {
            bail!("an empty list of names matches nothing; pass nil to mean every name");
        }
        if let Some(bad) = list.iter().find(|s| s.is_empty() || s.starts_with('.') || s.ends_with('.')) {
            bail!("'{bad}' is not a module name (names are dot-separated, like 'self_attn.q_proj')");
        }
        Ok(NameMatcher::Suffixes(list))
    }

    pub fn pattern(pattern: &str) -> Result<NameMatcher> {
        let body = pattern.strip_prefix('^').unwrap_or(pattern);
        let escaped_dollar = body.ends_with("%$") && !body.ends_with("%%$");
        let body = if escaped_dollar { body } else { body.strip_suffix('$').unwrap_or(body) };
        Ok(NameMatcher::Pattern(pattern.to_string(), LuaPattern::new(body)?))
    }

    pub fn matches(&self, name: &str) -> Result<bool> {
        Ok(match self {
            NameMatcher::All => true,
            NameMatcher::Suffixes(list) => list.iter().any(|s| name == s || (name.len() > s.len() && name.ends_with(s.as_str()) && name.as_bytes()[name.len() - s.len() - 1] == b'.')),
            NameMatcher::Pattern(_, p) => p.matches_whole(name)?,
        })
    }

    /// Whether a parameter is picked: its own name matches, or the name of a module that holds
    /// it (`{"mlp"}` picks every parameter under each `…mlp` module).
    pub fn matches_parameter(&self, name: &str) -> Result<bool> {
        if self.matches(name)? {
            return Ok(true);
        }
        for (i, c) in name.char_indices() {
            if c == '.' && self.matches(&name[..i])? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The matcher as the user wrote it, for messages.
    pub fn describe(&self) -> String {
        match self {
            NameMatcher::All => "every name".to_string(),
            NameMatcher::Suffixes(list) => format!("names ending in {}", list.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")),
            NameMatcher::Pattern(p, _) => format!("the pattern '{p}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_match_at_dot_boundaries_and_patterns_the_whole_name() {
        let m = NameMatcher::suffixes(vec!["q_proj".into(), "mlp.down_proj".into()]).unwrap();
        assert!(m.matches("model.layers.0.self_attn.q_proj").unwrap());
        assert!(m.matches("q_proj").unwrap());
        assert!(!m.matches("model.layers.0.self_attn.xq_proj").unwrap());
        assert!(m.matches("model.layers.1.mlp.down_proj").unwrap());
        let p = NameMatcher::pattern("model%.layers%.[01]%..*").unwrap();
        assert!(p.matches("model.layers.1.mlp.up_proj").unwrap());
        assert!(!p.matches("model.layers.2.mlp.up_proj").unwrap());
        assert!(!NameMatcher::pattern("q_proj").unwrap().matches("model.q_proj").unwrap());
        assert!(NameMatcher::pattern("^.*q_proj$").unwrap().matches("model.q_proj").unwrap());
        assert!(NameMatcher::pattern("a%$").unwrap().matches("a$").unwrap());
        assert!(NameMatcher::pattern("[unclosed").is_err());
        assert!(NameMatcher::suffixes(vec![]).is_err());
        let mlp = NameMatcher::suffixes(vec!["mlp".into()]).unwrap();
        assert!(mlp.matches_parameter("model.layers.0.mlp.up_proj.weight").unwrap());
        assert!(!mlp.matches("model.layers.0.mlp.up_proj.weight").unwrap());
        assert!(!mlp.matches_parameter("model.layers.0.self_attn.q_proj.weight").unwrap());
    }
}
