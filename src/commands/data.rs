//! `moontune data inspect FILE`: reads a dataset file as `mt.data.read` would and prints what is
//! in it (src/data/inspect.rs), or the same as JSON.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::output;
use crate::data::dataset::Dataset;
use crate::data::inspect::{inspect, render};
use crate::data::records::{CsvLayout, OnError};
use crate::data::source::{format_named, guess_format, FileSource, ReadOptions, FORMATS};
use crate::tokenizer::Tok;

pub struct InspectOptions<'a> {
    pub format: Option<&'a str>,
    pub tokenizer: Option<&'a Path>,
    /// Names for the columns of a CSV/TSV file without a header.
    pub columns: Option<Vec<String>>,
    pub examples: usize,
    pub json: bool,
}

pub fn inspect_file(path: &Path, o: &InspectOptions) -> Result<()> {
    if !path.exists() {
        return Err(anyhow!("{}: no such file or directory", path.display()));
    }
    let name = match o.format {
        Some(f) => f.to_string(),
        None if path.is_dir() => "text".into(),
        None => guess_format(path).ok_or_else(|| anyhow!("cannot tell the format of {} from its extension; give --format ({})", path.display(), FORMATS.join(", ")))?.to_string(),
    };
    let csv = matches!(name.as_str(), "csv" | "tsv").then(|| CsvLayout { delimiter: if name == "tsv" { b'\t' } else { b',' }, header: o.columns.is_none(), columns: o.columns.clone(), infer: true });
    let format = format_named(&name, csv, if path.is_dir() { Some("file") } else { None }, None)?;
    let source = FileSource::new(path, ReadOptions { format, on_error: OnError::Fail, schema: None })?;
    let tok = o.tokenizer.map(Tok::load).transpose()?;
    let found = inspect(&Dataset::from_file(source), tok.as_ref(), o.examples)?;
    if o.json {
        output::line(serde_json::to_string_pretty(&found)?)
    } else {
        output::text(&render(&path.display().to_string(), &found))
    }
}
