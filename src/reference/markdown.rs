//! Renders the API reference (read from types/moontune.lua) as markdown: docs/api.md.

use std::collections::BTreeSet;

use super::annotations::{Function, Item, Reference, Section, Typed};

/// The anchor of a class's section: `moontune.nn.Module` → `moontune-nn-Module` (case kept:
/// `moontune.tensor` and `moontune.Tensor` are different sections).
pub fn class_anchor(class: &str) -> String {
    class.replace('.', "-")
}

/// The anchor of a function: `Tensor:add` → `Tensor-add`, `mt.tensor.zeros` → `mt-tensor-zeros`.
pub fn function_anchor(f: &Function) -> String {
    format!("{}{}", f.owner.replace(['.', ':'], "-"), f.name)
}

/// A type in a code span, linked to its section when it is one of the reference's classes or
/// aliases (`moontune.Tensor`, `moontune.Tensor[]`, `moontune.Cache?`); `|` escaped in tables.
fn type_ref(ty: &str, known: &BTreeSet<String>, in_table: bool) -> String {
    let code = if in_table { format!("`{}`", ty.replace('|', "\\|")) } else { format!("`{ty}`") };
    let bare = ty.trim_end_matches('?').trim_end_matches("[]");
    if known.contains(bare) {
        format!("[{code}](#{})", class_anchor(bare))
    } else {
        code
    }
}

fn heading(section: &Section) -> String {
    section.variable.clone().unwrap_or_else(|| section.class.clone())
}

/// The whole reference as one markdown document.
pub fn render(r: &Reference) -> String {
    let known: BTreeSet<String> = r.sections.iter().map(|s| s.class.clone()).chain(r.aliases.iter().map(|a| a.name.clone())).collect();
    let mut out = Vec::new();
    out.push("<!-- Made by `moontune types --markdown docs/api.md` from types/moontune.lua: edit that file, not this one. -->".to_string());
    out.push(String::new());
    out.extend(r.intro.iter().cloned());
    out.push(String::new());
    out.push("## Contents".into());
    out.push(String::new());
    if !r.aliases.is_empty() {
        out.push("- [Types](#types)".into());
    }
    for s in &r.sections {
        out.push(format!("- [{}](#{})", heading(s), class_anchor(&s.class)));
    }
    if !r.aliases.is_empty() {
        out.push(String::new());
        out.push("<a id=\"types\"></a>".into());
        out.push(String::new());
        out.push("## Types".into());
        out.push(String::new());
        for a in &r.aliases {
            out.push(format!("<a id=\"{}\"></a>", class_anchor(&a.name)));
            out.push(format!("- **`{}`** = `{}`  ", a.name, a.ty));
            out.extend(a.doc.iter().map(|l| format!("  {l}")));
        }
    }
    for s in &r.sections {
        out.push(String::new());
        section(&mut out, s, &known);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

fn section(out: &mut Vec<String>, s: &Section, known: &BTreeSet<String>) {
    out.push(format!("<a id=\"{}\"></a>", class_anchor(&s.class)));
    out.push(String::new());
    out.push(format!("## {}", heading(s)));
    out.push(String::new());
    let mut line = format!("Class `{}`", s.class);
    if let Some(parent) = &s.parent {
        line.push_str(&format!(", extends [`{parent}`](#{})", class_anchor(parent)));
    }
    out.push(format!("{line}."));
    out.push(String::new());
    if !s.doc.is_empty() {
        out.extend(s.doc.iter().cloned());
        out.push(String::new());
    }
    if !s.overloads.is_empty() {
        out.push(format!("Called as: {}", s.overloads.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")));
        out.push(String::new());
    }
    if !s.operators.is_empty() {
        out.push(format!("Operators: {}", s.operators.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")));
        out.push(String::new());
    }
    if !s.tables.is_empty() {
        let prefix = s.variable.clone().unwrap_or_default();
        let links: Vec<String> = s.tables.iter().map(|(name, class)| format!("[`{prefix}.{name}`](#{})", class_anchor(class))).collect();
        out.push(format!("Tables: {}", links.join(", ")));
        out.push(String::new());
    }
    if !s.fields.is_empty() {
        fields(out, &s.fields, known);
    }
    for item in &s.items {
        match item {
            Item::Prose(lines) => {
                out.extend(lines.iter().cloned());
                out.push(String::new());
            }
            Item::Function(f) => function(out, f, known),
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
}

fn fields(out: &mut Vec<String>, fields: &[Typed], known: &BTreeSet<String>) {
    out.push("| Field | Type | Description |".into());
    out.push("|---|---|---|".into());
    for f in fields {
        let name = if f.optional { format!("{}?", f.name) } else { f.name.clone() };
        out.push(format!("| `{name}` | {} | {} |", type_ref(&f.ty, known, true), f.doc.replace('|', "\\|")));
    }
    out.push(String::new());
}

fn function(out: &mut Vec<String>, f: &Function, known: &BTreeSet<String>) {
    out.push(format!("<a id=\"{}\"></a>", function_anchor(f)));
    out.push(format!("### `{}`", f.signature()));
    out.push(String::new());
    out.extend(f.doc.iter().cloned());
    out.push(String::new());
    let mut list = Vec::new();
    for p in &f.params {
        let name = if p.optional { format!("{}?", p.name) } else { p.name.clone() };
        let doc = if p.doc.is_empty() { String::new() } else { format!(": {}", p.doc) };
        list.push(format!("- `{name}` {}{doc}", type_ref(&p.ty, known, false)));
    }
    for r in &f.returns {
        let name = r.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default();
        let doc = if r.doc.is_empty() { String::new() } else { format!(": {}", r.doc) };
        list.push(format!("- returns {}{name}{doc}", type_ref(&r.ty, known, false)));
    }
    if !list.is_empty() {
        out.extend(list);
        out.push(String::new());
    }
}
