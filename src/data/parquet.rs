//! Parquet files (what Hugging Face Hub datasets ship as), row by row with the `parquet` crate's
//! record reader: columns become fields, nested groups records, lists lists; compression by
//! Snappy, gzip, LZ4 and Zstandard.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};

use super::value::{Record, Value};

pub struct ParquetRows {
    path: String,
    rows: RowIter<'static>,
}

fn reader(path: &Path) -> Result<SerializedFileReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    SerializedFileReader::new(file).map_err(|e| anyhow!("{}: not a readable Parquet file: {e}", path.display()))
}

impl ParquetRows {
    pub fn open(path: &Path) -> Result<ParquetRows> {
        let r = reader(path)?;
        Ok(ParquetRows { path: path.display().to_string(), rows: RowIter::from_file_into(Box::new(r)) })
    }

    /// The row count from the file's metadata.
    pub fn count(path: &Path) -> Result<u64> {
        Ok(reader(path)?.metadata().file_metadata().num_rows().max(0) as u64)
    }

    pub fn next(&mut self) -> Result<Option<Value>> {
        match self.rows.next() {
            None => Ok(None),
            Some(Ok(row)) => Ok(Some(record(&row))),
            Some(Err(e)) => Err(anyhow!("{}: {e}", self.path)),
        }
    }
}

fn record(row: &Row) -> Value {
    Value::Record(Record(row.get_column_iter().map(|(k, f)| (k.clone(), value(f))).collect()))
}

fn value(f: &Field) -> Value {
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(i) => Value::Int(*i as i64),
        Field::Short(i) => Value::Int(*i as i64),
        Field::Int(i) => Value::Int(*i as i64),
        Field::Long(i) => Value::Int(*i),
        Field::UByte(i) => Value::Int(*i as i64),
        Field::UShort(i) => Value::Int(*i as i64),
        Field::UInt(i) => Value::Int(*i as i64),
        Field::ULong(i) => i64::try_from(*i).map(Value::Int).unwrap_or(Value::Float(*i as f64)),
        Field::Float16(x) => Value::Float(f64::from(*x)),
        Field::Float(x) => Value::Float(*x as f64),
        Field::Double(x) => Value::Float(*x),
        Field::Str(s) => Value::Str(s.clone()),
        Field::Group(row) => record(row),
        Field::ListInternal(list) => Value::List(list.elements().iter().map(value).collect()),
        Field::MapInternal(map) => Value::List(
            map.entries().iter().map(|(k, v)| Value::Record(Record(vec![("key".into(), value(k)), ("value".into(), value(v))]))).collect(),
        ),
        // Bytes, decimals, dates and times: their text form.
        other => Value::Str(other.to_string()),
    }
}
