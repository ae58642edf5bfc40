//! Readers of record-per-line files — JSON Lines, CSV/TSV and plain text by line or paragraph —
//! that stream from any byte offset and report where each record starts, so a file source can
//! index its records for random access (shuffling) without holding them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::value::{Record, Value};

/// What to do with a record that cannot be parsed.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum OnError {
    Fail,
    Skip,
}

/// How a CSV/TSV file is read.
#[derive(Clone, Debug)]
pub struct CsvLayout {
    pub delimiter: u8,
    /// The first row names the columns.
    pub header: bool,
    /// Column names given by the caller (they replace the header's, or name a headerless file).
    pub columns: Option<Vec<String>>,
    /// Cells that read back as the same integer or float become numbers.
    pub infer: bool,
}

/// How plain text becomes records `{ text = ... }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TextUnit {
    Line,
    /// Runs of non-blank lines separated by blank lines.
    Paragraph,
}

#[derive(Clone, Debug)]
pub enum LineFormat {
    Jsonl,
    Csv(CsvLayout),
    Text(TextUnit),
}

/// A record and where it starts in the file.
pub struct Located {
    pub offset: u64,
    pub value: Value,
}

/// A stream of records from one file, starting at a record boundary.
pub struct RecordReader {
    path: PathBuf,
    format: LineFormat,
    on_error: OnError,
    reader: BufReader<File>,
    /// Byte offset of the next unread line.
    offset: u64,
    /// 1-based number of the next line (exact when the reader started at the top of the file).
    line: u64,
    /// Column names (CSV), from the header or the caller.
    columns: Option<Vec<String>>,
    pub skipped: u64,
    buf: Vec<u8>,
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

impl RecordReader {
    /// A reader at the start of the file (reading a CSV header where there is one).
    pub fn start(path: &Path, format: &LineFormat, on_error: OnError) -> Result<RecordReader> {
        let mut r = RecordReader {
            path: path.to_path_buf(),
            format: format.clone(),
            on_error,
            reader: BufReader::with_capacity(1 << 16, open(path)?),
            offset: 0,
            line: 1,
            columns: None,
            skipped: 0,
            buf: Vec::new(),
        };
        r.skip_bom()?;
        if let LineFormat::Csv(layout) = format {
            r.columns = layout.columns.clone();
            if layout.header {
                let Some((_, _, header)) = r.csv_row()? else { bail!("{}: the file is empty (expected a header row)", path.display()) };
                if r.columns.is_none() {
                    check_header(path, &header)?;
                    r.columns = Some(header);
                }
            }
        }
        Ok(r)
    }

    /// A reader at `offset` (a record start found by an earlier pass), with the columns that pass
    /// read.
    pub fn at(path: &Path, format: &LineFormat, offset: u64, columns: Option<Vec<String>>) -> Result<RecordReader> {
        let mut file = open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            format: format.clone(),
            on_error: OnError::Fail,
            reader: BufReader::with_capacity(1 << 14, file),
            offset,
            line: 0,
            columns,
            skipped: 0,
            buf: Vec::new(),
        })
    }

    pub fn columns(&self) -> Option<&Vec<String>> {
        self.columns.as_ref()
    }

    fn skip_bom(&mut self) -> Result<()> {
        let head = self.reader.fill_buf()?;
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.reader.consume(3);
            self.offset = 3;
        }
        Ok(())
    }

    /// The next raw line (without its line break), with its offset and 1-based number.
    fn raw_line(&mut self) -> Result<Option<(u64, u64)>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf).with_context(|| format!("reading {}", self.path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        let at = (self.offset, self.line);
        self.offset += n as u64;
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some(at))
    }

    fn where_(&self, line: u64) -> String {
        if self.line == 0 {
            format!("{} (at byte {})", self.path.display(), self.offset)
        } else {
            format!("{}:{line}", self.path.display())
        }
    }

    fn line_text(&self, line: u64) -> Result<String> {
        String::from_utf8(self.buf.clone()).map_err(|_| anyhow!("{}: the line is not valid UTF-8", self.where_(line)))
    }

    pub fn next(&mut self) -> Result<Option<Located>> {
        loop {
            let item = match &self.format {
                LineFormat::Jsonl => self.jsonl(),
                LineFormat::Csv(_) => self.csv_record(),
                LineFormat::Text(TextUnit::Line) => self.text_line(),
                LineFormat::Text(TextUnit::Paragraph) => self.paragraph(),
            };
            match item {
                Err(e) if self.on_error == OnError::Skip && e.downcast_ref::<Malformed>().is_some() => self.skipped += 1,
                other => return other,
            }
        }
    }

    fn jsonl(&mut self) -> Result<Option<Located>> {
        loop {
            let Some((offset, line)) = self.raw_line()? else { return Ok(None) };
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return match serde_json::from_slice::<serde_json::Value>(&self.buf) {
                Ok(v) => Ok(Some(Located { offset, value: Value::from_json(v) })),
                Err(e) => Err(Malformed(format!(
                    "{}: not valid JSON ({e}); each line of a JSON Lines file must be one JSON value (read with {{ on_error = \"skip\" }} to skip broken lines)",
                    self.where_(line)
                ))
                .into()),
            };
        }
    }

    fn text_line(&mut self) -> Result<Option<Located>> {
        let Some((offset, line)) = self.raw_line()? else { return Ok(None) };
        Ok(Some(Located { offset, value: text_record(self.line_text(line)?) }))
    }

    fn paragraph(&mut self) -> Result<Option<Located>> {
        let mut lines: Vec<String> = Vec::new();
        let mut start = None;
        while let Some((offset, line)) = self.raw_line()? {
            let blank = self.buf.iter().all(u8::is_ascii_whitespace);
            if blank && start.is_some() {
                break;
            }
            if !blank {
                start.get_or_insert(offset);
                lines.push(self.line_text(line)?);
            }
        }
        Ok(start.map(|offset| Located { offset, value: text_record(lines.join("\n")) }))
    }

    /// The next CSV row's cells (a quoted cell may span lines), with its offset.
    fn csv_row(&mut self) -> Result<Option<(u64, u64, Vec<String>)>> {
        let LineFormat::Csv(layout) = &self.format else { unreachable!("csv_row on a CSV reader") };
        let delimiter = layout.delimiter;
        let Some((offset, line)) = self.raw_line()? else { return Ok(None) };
        let mut row = std::mem::take(&mut self.buf);
        // A row continues while a quote is open.
        while open_quote(&row, delimiter) {
            row.push(b'\n');
            let mut more = Vec::new();
            let n = self.reader.read_until(b'\n', &mut more)?;
            if n == 0 {
                return Err(Malformed(format!("{}: a quoted cell is not closed before the end of the file", self.where_(line))).into());
            }
            self.offset += n as u64;
            self.line += 1;
            while matches!(more.last(), Some(b'\n' | b'\r')) {
                more.pop();
            }
            row.extend_from_slice(&more);
        }
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).quoting(delimiter != b'\t').from_reader(row.as_slice());
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(_) => Ok(Some((offset, line, record.iter().map(str::to_string).collect()))),
            Err(e) => Err(Malformed(format!("{}: {e}", self.where_(line))).into()),
        }
    }

    fn csv_record(&mut self) -> Result<Option<Located>> {
        let LineFormat::Csv(layout) = &self.format else { unreachable!("csv_record on a CSV reader") };
        let infer = layout.infer;
        loop {
            let Some((offset, line, cells)) = self.csv_row()? else { return Ok(None) };
            if cells.len() == 1 && cells[0].is_empty() {
                continue;
            }
            let names = match &self.columns {
                Some(c) => c.clone(),
                None => (1..=cells.len()).map(|i| format!("column{i}")).collect(),
            };
            if self.columns.is_none() {
                self.columns = Some(names.clone());
            }
            if cells.len() != names.len() {
                return Err(Malformed(format!(
                    "{}: the row has {} fields, expected {} ({})",
                    self.where_(line),
                    cells.len(),
                    names.len(),
                    names.join(", ")
                ))
                .into());
            }
            let fields = names.into_iter().zip(cells).map(|(k, c)| (k, if infer { infer_cell(c) } else { Value::Str(c) })).collect();
            return Ok(Some(Located { offset, value: Value::Record(Record(fields)) }));
        }
    }
}

/// A record that could not be parsed: skippable with `on_error = "skip"`.
#[derive(Debug)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

fn text_record(text: String) -> Value {
    Value::Record(Record(vec![("text".into(), Value::Str(text))]))
}

fn check_header(path: &Path, header: &[String]) -> Result<()> {
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            bail!("{}: the header names the column '{name}' twice", path.display());
        }
    }
    Ok(())
}

/// Whether a quote opened in `row` is still open at its end (RFC 4180: quotes are doubled inside
/// a quoted cell, and a cell is quoted only when its first character is a quote).
fn open_quote(row: &[u8], delimiter: u8) -> bool {
    if delimiter == b'\t' {
        return false;
    }
    let mut quoted = false;
    let mut at_cell_start = true;
    let mut i = 0;
    while i < row.len() {
        let c = row[i];
        if quoted {
            if c == b'"' {
                if row.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else if c == b'"' && at_cell_start {
            quoted = true;
        }
        at_cell_start = c == delimiter && !quoted;
        i += 1;
    }
    quoted
}

/// A cell as a number when it reads back as exactly the same text, else the text.
fn infer_cell(cell: String) -> Value {
    if let Ok(i) = cell.parse::<i64>() {
        if i.to_string() == cell {
            return Value::Int(i);
        }
    }
    if cell.contains('.') {
        if let Ok(x) = cell.parse::<f64>() {
            if x.is_finite() && x.to_string() == cell {
                return Value::Float(x);
            }
        }
    }
    Value::Str(cell)
}

/// Whole files as records `{ text = ..., path = ... }`: one file, or each file of a directory in
/// name order.
pub fn whole_files(path: &Path) -> Result<Vec<Value>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        f.sort();
        f
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|p| {
            let mut text = String::new();
            open(&p)?.read_to_string(&mut text).map_err(|_| anyhow!("{}: not valid UTF-8 text", p.display()))?;
            Ok(Value::Record(Record(vec![("text".into(), Value::Str(text)), ("path".into(), Value::Str(p.display().to_string()))])))
        })
        .collect()
}
