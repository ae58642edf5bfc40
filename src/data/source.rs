//! Where a dataset's examples come from: a Lua list or other in-memory examples, or a file read
//! as JSON Lines, a JSON array, CSV/TSV, plain text (by line, paragraph or whole file) or Parquet,
//! its format guessed from the extension. Record-per-line files stream and index their records'
//! offsets on first random access; JSON arrays and whole-file text are read at once.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};

use super::parquet::ParquetRows;
use super::records::{whole_files, CsvLayout, LineFormat, OnError, RecordReader, TextUnit};
use super::schema::Schema;
use super::stream::Stream;
use super::value::Value;

#[derive(Clone, Debug)]
pub enum Format {
    Lines(LineFormat),
    /// A JSON array, or the array under `field` of a JSON object.
    Json { field: Option<String> },
    /// Each file (of a directory, or the one file) is one record.
    TextFiles,
    Parquet,
}

/// `mt.data.read`'s options, checked.
pub struct ReadOptions {
    pub format: Format,
    pub on_error: OnError,
    pub schema: Option<Schema>,
}

/// The format names `read` accepts.
pub const FORMATS: [&str; 6] = ["jsonl", "json", "csv", "tsv", "text", "parquet"];

/// The format a file's extension suggests.
pub fn guess_format(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = Path::new(name).extension()?.to_str()?;
    Some(match ext {
        "jsonl" | "ndjson" => "jsonl",
        "json" => "json",
        "csv" => "csv",
        "tsv" | "tab" => "tsv",
        "txt" | "text" | "md" => "text",
        "parquet" | "pq" => "parquet",
        _ => return None,
    })
}

/// The `Format` for a format name and the CSV/text/JSON details.
pub fn format_named(name: &str, csv: Option<CsvLayout>, text_by: Option<&str>, field: Option<String>) -> Result<Format> {
    Ok(match name {
        "jsonl" => Format::Lines(LineFormat::Jsonl),
        "json" => Format::Json { field },
        "csv" | "tsv" => {
            let mut layout = csv.unwrap_or(CsvLayout { delimiter: b',', header: true, columns: None, infer: true });
            if name == "tsv" && layout.delimiter == b',' {
                layout.delimiter = b'\t';
            }
            Format::Lines(LineFormat::Csv(layout))
        }
        "text" => match text_by.unwrap_or("line") {
            "line" => Format::Lines(LineFormat::Text(TextUnit::Line)),
            "paragraph" => Format::Lines(LineFormat::Text(TextUnit::Paragraph)),
            "file" => Format::TextFiles,
            other => bail!("by must be \"line\", \"paragraph\" or \"file\", got \"{other}\""),
        },
        "parquet" => Format::Parquet,
        other => bail!("unknown format \"{other}\" (known: {})", FORMATS.join(", ")),
    })
}

/// Record offsets of a record-per-line file, found by one pass.
struct Index {
    offsets: Vec<u64>,
    columns: Option<Vec<String>>,
}

pub struct FileSource {
    pub path: PathBuf,
    pub options: ReadOptions,
    index: RefCell<Option<Rc<Index>>>,
    /// Examples of formats read at once (JSON, whole files) or materialised for random access
    /// (Parquet).
    loaded: RefCell<Option<Rc<Vec<Value>>>>,
    /// Records skipped as malformed in the last complete pass (`on_error = "skip"`).
    pub skipped: Cell<u64>,
}

pub enum Source {
    Memory(Rc<Vec<Value>>),
    File(Rc<FileSource>),
}

impl FileSource {
    pub fn new(path: &Path, options: ReadOptions) -> Result<FileSource> {
        if !path.exists() {
            bail!("{}: no such file or directory", path.display());
        }
        if path.is_dir() && !matches!(options.format, Format::TextFiles) {
            bail!("{} is a directory (a directory reads as text with {{ by = \"file\" }}: one example per file)", path.display());
        }
        Ok(FileSource { path: path.to_path_buf(), options, index: RefCell::new(None), loaded: RefCell::new(None), skipped: Cell::new(0) })
    }

    fn check(&self, v: Value, n: u64) -> Result<Value> {
        match &self.options.schema {
            Some(s) => s.check(&v).map(|()| v).map_err(|e| anyhow!("{}: example {}: {e}", self.path.display(), n + 1)),
            None => Ok(v),
        }
    }

    fn whole(&self) -> Result<Rc<Vec<Value>>> {
        if let Some(v) = self.loaded.borrow().as_ref() {
            return Ok(v.clone());
        }
        let items = match &self.options.format {
            Format::Json { field } => read_json(&self.path, field.as_deref())?,
            Format::TextFiles => whole_files(&self.path)?,
            Format::Parquet => {
                let mut rows = ParquetRows::open(&self.path)?;
                let mut all = Vec::new();
                while let Some(v) = rows.next()? {
                    all.push(v);
                }
                all
            }
            Format::Lines(_) => unreachable!("line formats stream"),
        };
        let items: Vec<Value> = items.into_iter().enumerate().map(|(i, v)| self.check(v, i as u64)).collect::<Result<_>>()?;
        let items = Rc::new(items);
        *self.loaded.borrow_mut() = Some(items.clone());
        Ok(items)
    }

    fn index(&self, format: &LineFormat) -> Result<Rc<Index>> {
        if let Some(i) = self.index.borrow().as_ref() {
            return Ok(i.clone());
        }
        let mut reader = RecordReader::start(&self.path, format, self.options.on_error)?;
        let mut offsets = Vec::new();
        while let Some(r) = reader.next()? {
            self.check(r.value, offsets.len() as u64)?;
            offsets.push(r.offset);
        }
        self.skipped.set(reader.skipped);
        let index = Rc::new(Index { offsets, columns: reader.columns().cloned() });
        *self.index.borrow_mut() = Some(index.clone());
        Ok(index)
    }

    pub fn len(&self) -> Result<u64> {
        match &self.options.format {
            Format::Lines(f) => Ok(self.index(f)?.offsets.len() as u64),
            Format::Parquet if self.loaded.borrow().is_none() => ParquetRows::count(&self.path),
            _ => Ok(self.whole()?.len() as u64),
        }
    }

    pub fn get(&self, i: u64) -> Result<Value> {
        match &self.options.format {
            Format::Lines(f) => {
                let index = self.index(f)?;
                let offset = *index.offsets.get(i as usize).ok_or_else(|| anyhow!("{}: no example {} (it has {})", self.path.display(), i + 1, index.offsets.len()))?;
                let mut reader = RecordReader::at(&self.path, f, offset, index.columns.clone())?;
                let record = reader.next()?.ok_or_else(|| anyhow!("{}: the file changed while it was being read (record {} is gone)", self.path.display(), i + 1))?;
                Ok(record.value)
            }
            _ => self.whole()?.get(i as usize).cloned().ok_or_else(|| anyhow!("{}: no example {}", self.path.display(), i + 1)),
        }
    }

    pub fn open(self: &Rc<Self>) -> Result<Box<dyn Stream>> {
        Ok(match &self.options.format {
            Format::Lines(f) => Box::new(FileStream { source: self.clone(), rows: Rows::Lines(RecordReader::start(&self.path, f, self.options.on_error)?), count: 0 }),
            Format::Parquet if self.loaded.borrow().is_none() => Box::new(FileStream { source: self.clone(), rows: Rows::Parquet(ParquetRows::open(&self.path)?), count: 0 }),
            _ => Box::new(MemoryStream { items: self.whole()?, at: 0 }),
        })
    }
}

fn read_json(path: &Path, field: Option<&str>) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}:{}: not valid JSON: {e}", path.display(), e.line()))?;
    let list = match (value, field) {
        (serde_json::Value::Array(a), None) => a,
        (serde_json::Value::Object(mut o), Some(f)) => match o.remove(f) {
            Some(serde_json::Value::Array(a)) => a,
            Some(_) => bail!("{}: the field '{f}' is not an array", path.display()),
            None => bail!("{}: the top-level object has no field '{f}' (it has: {})", path.display(), o.keys().cloned().collect::<Vec<_>>().join(", ")),
        },
        (serde_json::Value::Object(o), None) => bail!(
            "{}: the file holds an object, not an array of examples; name the array with {{ field = ... }} (its fields: {})",
            path.display(),
            o.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        (_, _) => bail!("{}: expected a JSON array of examples", path.display()),
    };
    Ok(list.into_iter().map(Value::from_json).collect())
}

pub struct MemoryStream {
    pub items: Rc<Vec<Value>>,
    pub at: usize,
}

impl Stream for MemoryStream {
    fn next(&mut self) -> Result<Option<Value>> {
        let v = self.items.get(self.at).cloned();
        self.at += v.is_some() as usize;
        Ok(v)
    }

    fn skip(&mut self, n: u64) -> Result<u64> {
        let left = (self.items.len() - self.at.min(self.items.len())) as u64;
        let k = n.min(left);
        self.at += k as usize;
        Ok(k)
    }
}

/// Rows of a streamed file, of either kind.
enum Rows {
    Lines(RecordReader),
    Parquet(ParquetRows),
}

struct FileStream {
    source: Rc<FileSource>,
    rows: Rows,
    count: u64,
}

impl Stream for FileStream {
    fn next(&mut self) -> Result<Option<Value>> {
        let row = match &mut self.rows {
            Rows::Lines(r) => r.next()?.map(|located| located.value),
            Rows::Parquet(p) => p.next()?,
        };
        match row {
            Some(v) => {
                self.count += 1;
                self.source.check(v, self.count - 1).map(Some)
            }
            None => {
                if let Rows::Lines(r) = &self.rows {
                    self.source.skipped.set(r.skipped);
                }
                Ok(None)
            }
        }
    }
}
