//! Reads types/moontune.lua, the LuaLS annotations the API reference is made from, into
//! sections (one per `---@class`) holding their fields, operators and functions in file order.
//!
//! The file keeps to a subset of LuaLS that this reader understands, and anything else is an
//! error naming the line: a block of `---` lines is markdown text and tags (`@class`, `@field`,
//! `@param`, `@return`, `@operator`, `@overload`, `@alias`, `@generic`, `@meta`); the line after a
//! block is blank (the block is prose, a class of its own, or an alias), `local X = {}` or
//! `a.b = {}` (the variable that stands for the block's class), `function a.b(...) end` or
//! `function A:b(...) end` (a function of the class `a` or `A` stands for),
//! `A["b"] = function(self, ...) end` (a method whose name is a Lua keyword), or `return x`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

/// One `---@param` or `---@field`: a name (`?` stripped into `optional`), a type and a text.
#[derive(Debug, Clone)]
pub struct Typed {
    pub name: String,
    pub optional: bool,
    pub ty: String,
    pub doc: String,
}

/// One `---@return`.
#[derive(Debug, Clone)]
pub struct Return {
    pub ty: String,
    pub name: Option<String>,
    pub doc: String,
}

/// A function or method: how it is written (`mt.tensor.zeros`, `Tensor:add`) and documented.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// The variable and separator it is defined on: `mt.tensor.` or `Tensor:`.
    pub owner: String,
    pub args: Vec<String>,
    pub doc: Vec<String>,
    pub params: Vec<Typed>,
    pub returns: Vec<Return>,
}

impl Function {
    /// `Tensor:add(other, opts?)`, parameters marked optional as their `@param` says.
    pub fn signature(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| match self.params.iter().find(|p| &p.name == a) {
                Some(p) if p.optional => format!("{a}?"),
                _ => a.clone(),
            })
            .collect();
        format!("{}{}({})", self.owner, self.name, args.join(", "))
    }
}

/// What a section holds, in file order.
#[derive(Debug, Clone)]
pub enum Item {
    Prose(Vec<String>),
    Function(Function),
}

/// A `---@class`: its text, fields, operators, call forms and functions.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub class: String,
    pub parent: Option<String>,
    /// The Lua expression that stands for it (`mt.tensor`, `Tensor`), if any.
    pub variable: Option<String>,
    pub doc: Vec<String>,
    pub fields: Vec<Typed>,
    /// `---@operator` lines as written after the tag: `add(moontune.Number): moontune.Tensor`.
    pub operators: Vec<String>,
    /// `---@overload` types: calling the class (or object) this way.
    pub overloads: Vec<String>,
    /// The tables below it that are classes of their own, as (name, class): `("tensor",
    /// "moontune.tensor")` under `mt`.
    pub tables: Vec<(String, String)>,
    pub items: Vec<Item>,
}

/// A `---@alias`: a name for a type.
#[derive(Debug, Clone)]
pub struct Alias {
    pub name: String,
    pub ty: String,
    pub doc: Vec<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// The prose before the first section.
    pub intro: Vec<String>,
    pub aliases: Vec<Alias>,
    pub sections: Vec<Section>,
}

/// Lua's metamethods that LuaLS writes as `---@operator NAME`.
const OPERATORS: [&str; 17] =
    ["add", "sub", "mul", "div", "mod", "pow", "unm", "idiv", "band", "bor", "bxor", "shl", "shr", "bnot", "concat", "len", "call"];

impl Reference {
    pub fn section(&self, class: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.class == class)
    }

    /// Every name a class's objects answer by the reference, its ancestors' included: fields,
    /// functions, tables below it, `__NAME` for each operator (`__call` for an overload), and
    /// the metamethods its text names in backquotes (`` `__eq` ``).
    pub fn members(&self, class: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut next = Some(class.to_string());
        let mut seen = BTreeSet::new();
        while let Some(name) = next.take() {
            let Some(section) = self.section(&name) else { break };
            if !seen.insert(name) {
                break;
            }
            out.extend(section.fields.iter().map(|f| f.name.clone()));
            out.extend(section.tables.iter().map(|(name, _)| name.clone()));
            for item in &section.items {
                if let Item::Function(f) = item {
                    out.insert(f.name.clone());
                }
            }
            for op in &section.operators {
                let name: String = op.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                out.insert(format!("__{name}"));
            }
            if !section.overloads.is_empty() {
                out.insert("__call".into());
            }
            for line in &section.doc {
                for part in line.split('`').skip(1).step_by(2) {
                    if part.starts_with("__") && part.chars().skip(2).all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        out.insert(part.to_string());
                    }
                }
            }
            next = section.parent.clone();
        }
        out
    }
}

/// A doc block's lines, split into text and tags.
#[derive(Default)]
struct Block {
    text: Vec<String>,
    tags: Vec<(usize, String, String)>,
}

impl Block {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.tags.is_empty()
    }
    fn tag(&self, name: &str) -> Option<&(usize, String, String)> {
        self.tags.iter().find(|(_, t, _)| t == name)
    }
}

/// Reads the annotation file.
pub fn parse(source: &str) -> Result<Reference> {
    let mut reader = Reader::default();
    let lines: Vec<&str> = source.lines().collect();
    let mut block = Block::default();
    for (i, raw) in lines.iter().enumerate() {
        let number = i + 1;
        let line = raw.trim_end();
        if let Some(rest) = line.strip_prefix("---") {
            match rest.strip_prefix('@') {
                Some(tag) => {
                    let (name, body) = tag.split_once(' ').unwrap_or((tag, ""));
                    block.tags.push((number, name.to_string(), body.trim().to_string()));
                }
                None => block.text.push(rest.strip_prefix(' ').unwrap_or(rest).to_string()),
            }
            continue;
        }
        let taken = std::mem::take(&mut block);
        reader.code(number, line, taken).with_context(|| format!("types/moontune.lua:{number}: {line}"))?;
    }
    reader.code(lines.len() + 1, "", block)?;
    Ok(reader.reference)
}

#[derive(Default)]
struct Reader {
    reference: Reference,
    /// Lua expression → class (`mt.tensor` → `moontune.tensor`).
    variables: BTreeMap<String, String>,
    /// The section free prose belongs to.
    current: Option<usize>,
}

impl Reader {
    /// Handles the code line after a block (or a line with no block before it).
    fn code(&mut self, number: usize, line: &str, block: Block) -> Result<()> {
        let code = line.trim();
        if code.is_empty() {
            return self.free_block(block);
        }
        if code.starts_with("--") {
            if block.text.is_empty() && block.tags.iter().all(|(_, t, _)| t == "meta") {
                return Ok(());
            }
            bail!("a plain comment right after a doc block");
        }
        if let Some(rest) = code.strip_prefix("function ") {
            return self.function(rest, block);
        }
        if code.starts_with("return ") {
            return Ok(());
        }
        if let Some((lhs, rhs)) = code.split_once(" = ") {
            let lhs = lhs.trim_start_matches("local ").trim();
            if rhs.trim() == "{}" {
                return self.table(lhs, block);
            }
            if let Some(args) = rhs.strip_prefix("function(").and_then(|r| r.strip_suffix(") end")) {
                if let Some((owner, key)) = lhs.split_once("[\"").and_then(|(o, k)| Some((o, k.strip_suffix("\"]")?))) {
                    let args: Vec<String> = split_args(args).into_iter().skip(1).collect();
                    return self.add_function(owner, &format!("{owner}:"), key, args, block);
                }
            }
        }
        bail!("line {number} is not one this reader knows (see the header of src/reference/annotations.rs)")
    }

    /// A block followed by a blank line: a class without a variable, an alias, or prose.
    fn free_block(&mut self, block: Block) -> Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        if block.tag("class").is_some() {
            self.class(block, None)?;
            return Ok(());
        }
        if let Some((_, _, body)) = block.tag("alias") {
            let (name, ty) = body.split_once(' ').context("@alias needs a name and a type")?;
            self.reference.aliases.push(Alias { name: name.into(), ty: ty.trim().into(), doc: block.text });
            return Ok(());
        }
        if let Some((n, tag, _)) = block.tags.iter().find(|(_, t, _)| t != "meta") {
            bail!("line {n}: @{tag} in a block that belongs to no code");
        }
        if block.text.is_empty() {
            return Ok(());
        }
        match self.current {
            Some(i) => self.reference.sections[i].items.push(Item::Prose(block.text)),
            None => {
                if !self.reference.intro.is_empty() {
                    self.reference.intro.push(String::new());
                }
                self.reference.intro.extend(block.text);
            }
        }
        Ok(())
    }

    /// `local X = {}` or `a.b = {}` after a class block.
    fn table(&mut self, variable: &str, block: Block) -> Result<()> {
        if block.tag("class").is_none() {
            bail!("a table without a ---@class block");
        }
        let class = self.class(block, Some(variable.to_string()))?;
        if let Some((owner, name)) = variable.rsplit_once('.') {
            let owner_class = self.variables.get(owner).with_context(|| format!("'{owner}' is not a class's variable"))?.clone();
            let i = self.section_index(&owner_class);
            self.reference.sections[i].tables.push((name.to_string(), class.clone()));
        }
        self.variables.insert(variable.to_string(), class);
        Ok(())
    }

    /// Starts (or reopens) the section of the block's class and takes its tags.
    fn class(&mut self, block: Block, variable: Option<String>) -> Result<String> {
        let (_, _, body) = block.tag("class").expect("checked by the caller");
        let (class, parent) = match body.split_once(':') {
            Some((c, p)) => (c.trim().to_string(), Some(p.trim().to_string())),
            None => (body.trim().to_string(), None),
        };
        let i = self.section_index(&class);
        let section = &mut self.reference.sections[i];
        section.parent = section.parent.take().or(parent);
        section.variable = section.variable.take().or(variable);
        section.doc.extend(block.text);
        for (n, tag, body) in block.tags.iter().filter(|(_, t, _)| t != "class") {
            match tag.as_str() {
                "field" => section.fields.push(typed(body).with_context(|| format!("line {n}"))?),
                "operator" => {
                    let name: String = body.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                    if !OPERATORS.contains(&name.as_str()) {
                        bail!("line {n}: unknown operator '{name}'");
                    }
                    section.operators.push(body.clone());
                }
                "overload" => section.overloads.push(body.clone()),
                other => bail!("line {n}: @{other} does not belong in a class block"),
            }
        }
        self.current = Some(i);
        Ok(class)
    }

    fn section_index(&mut self, class: &str) -> usize {
        match self.reference.sections.iter().position(|s| s.class == class) {
            Some(i) => i,
            None => {
                self.reference.sections.push(Section { class: class.to_string(), ..Default::default() });
                self.reference.sections.len() - 1
            }
        }
    }

    /// `function a.b(x, y) end` or `function A:b(x) end`.
    fn function(&mut self, rest: &str, block: Block) -> Result<()> {
        let (head, args) = rest.split_once('(').context("a function without arguments")?;
        let args = args.strip_suffix(") end").context("a function whose body is not `end` on the same line")?;
        let (owner, sep, name) = match head.rsplit_once(':') {
            Some((owner, name)) => (owner, ':', name),
            None => {
                let (owner, name) = head.rsplit_once('.').context("a function that belongs to no table")?;
                (owner, '.', name)
            }
        };
        self.add_function(owner, &format!("{owner}{sep}"), name, split_args(args), block)
    }

    fn add_function(&mut self, variable: &str, owner: &str, name: &str, args: Vec<String>, block: Block) -> Result<()> {
        let class = self.variables.get(variable).with_context(|| format!("'{variable}' is not a class's variable"))?.clone();
        let mut f = Function { name: name.to_string(), owner: owner.to_string(), args, doc: block.text, params: Vec::new(), returns: Vec::new() };
        for (n, tag, body) in &block.tags {
            match tag.as_str() {
                "param" => f.params.push(typed(body).with_context(|| format!("line {n}"))?),
                "return" => f.returns.push(returned(body)),
                "generic" | "nodiscard" => {}
                other => bail!("line {n}: @{other} does not belong in a function's block"),
            }
        }
        for p in &f.params {
            if !f.args.contains(&p.name) {
                bail!("@param {} names no argument of {}", p.name, f.signature());
            }
        }
        if f.doc.is_empty() {
            bail!("{} has no description", f.signature());
        }
        let i = self.section_index(&class);
        self.reference.sections[i].items.push(Item::Function(f));
        Ok(())
    }
}

fn split_args(args: &str) -> Vec<String> {
    args.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect()
}

/// Splits a type off the front of `s`: a run of characters up to whitespace outside brackets,
/// continuing past whitespace after `:`, `,` or `|` (as in `fun(x: integer): boolean`).
fn take_type(s: &str) -> (String, &str) {
    let mut depth = 0i32;
    let mut end = s.len();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth -= 1,
            c if c.is_whitespace() && depth <= 0 => {
                let before = s[..i].trim_end();
                let after = s[i..].trim_start();
                if before.ends_with([':', ',', '|']) || after.starts_with('|') {
                    continue;
                }
                end = i;
                break;
            }
            _ => {}
        }
    }
    (s[..end].to_string(), s[end..].trim_start())
}

/// `name type text` (`@param`, `@field`).
fn typed(body: &str) -> Result<Typed> {
    let (name, rest) = body.split_once(' ').context("expected a name and a type")?;
    let (ty, doc) = take_type(rest.trim_start());
    if ty.is_empty() {
        bail!("'{name}' has no type");
    }
    let optional = name.ends_with('?');
    Ok(Typed { name: name.trim_end_matches('?').to_string(), optional, ty, doc: doc.trim_start_matches("# ").to_string() })
}

/// `type [name] [text]` (`@return`): a first word that is an identifier (or `...`) is the name.
fn returned(body: &str) -> Return {
    let (ty, rest) = take_type(body);
    let (word, doc) = rest.split_once(' ').unwrap_or((rest, ""));
    let is_name = word == "..." || (!word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !word.starts_with(|c: char| c.is_ascii_digit()));
    if is_name {
        Return { ty, name: Some(word.to_string()), doc: doc.trim().to_string() }
    } else {
        Return { ty, name: None, doc: rest.trim_start_matches("# ").to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"---@meta sample
---# Title
---Intro.

---@class s
---The root.
---@field version string the version
local s = {}

---@class s.sub
s.sub = {}

---Adds.
---@param a integer the first
---@param b? fun(x: integer): boolean a test
---@return integer sum the total
---@return string? (maybe)
function s.sub.add(a, b) end

---@class s.Thing: s.Base
---An object (`__eq` compares).
---@operator add(s.Thing): s.Thing
---@overload fun(): s.Thing
local Thing = {}

---Repeats.
---@param n integer
---@return s.Thing
Thing["repeat"] = function(self, n) end

---@class s.Base
local Base = {}

---Base method.
function Base:hello() end

return s
"#;

    #[test]
    fn reads_classes_functions_and_types() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.intro, vec!["# Title", "Intro."]);
        let sub = r.section("s.sub").unwrap();
        let Item::Function(add) = &sub.items[0] else { panic!() };
        assert_eq!(add.signature(), "s.sub.add(a, b?)");
        assert_eq!(add.params[1].ty, "fun(x: integer): boolean");
        assert_eq!(add.params[1].doc, "a test");
        assert_eq!(add.returns[0].name.as_deref(), Some("sum"));
        assert_eq!(add.returns[1].name, None);
        assert_eq!(add.returns[1].doc, "(maybe)");
        let members = r.members("s.Thing");
        for m in ["__add", "__call", "__eq", "repeat", "hello"] {
            assert!(members.contains(m), "{m} in {members:?}");
        }
        assert!(r.members("s").contains("sub") && r.members("s").contains("version"));
    }

    #[test]
    fn lines_outside_the_subset_are_errors_naming_them() {
        let err = parse("---@class a\nlocal a = {}\n\n---Doc.\na.f = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("types/moontune.lua:5"), "{err:#}");
        let err = parse("---@class a\nlocal a = {}\n\n---@param x integer\nfunction a.f(y) end\n").unwrap_err();
        assert!(format!("{err:#}").contains("names no argument"), "{err:#}");
        let err = parse("---@class a\nlocal a = {}\n\nfunction a.f() end\n").unwrap_err();
        assert!(format!("{err:#}").contains("no description"), "{err:#}");
    }
}
