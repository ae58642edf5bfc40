//! `mt.data`: datasets read from files (`read`) or Lua lists (`from`), their steps (`map`,
//! `filter`, `shuffle`, `take`, `skip`, `batch`, `template`, `tokenize`, `pack`, and
//! `mt.data.concat` / `mt.data.interleave`), and iterators with a position that can be saved and
//! restored (`it:state()`, `it:load_state(s)`). The core is src/data.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use mlua::{Lua, MetaMethod, MultiValue, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;

use super::args::{describe, failure, integer, misuse, options, required_options, OrMisuse};
use super::callbacks::{function, method, method_mut};
use super::example::{from_lua, to_lua, LuaCallback};
use super::tokenizer::LuaTokenizer;
use crate::data::batch::{BatchOptions, Batcher};
use crate::data::clean::{Dedup, Deduplicate, Form, LengthFilter, Normalize, Redact, Unit};
use crate::data::minhash::MinHasher;
use crate::data::pii;
use crate::data::tally::Tally;
use crate::data::dataset::Dataset;
use crate::data::iter::{DataIter, Position};
use crate::data::pack::{PackOptions, Packer};
use crate::data::records::{CsvLayout, OnError};
use crate::data::schema::{FieldType, Schema};
use crate::data::source::{format_named, guess_format, FileSource, ReadOptions, FORMATS};
use crate::data::template::Template;
use crate::data::tokenize::{TokenizeOptions, Tokenize};

/// The most examples a batch, a bucket window or a shuffle buffer holds at once.
const MAX_ROWS: usize = 1 << 24;
/// The longest packed row or padded length, in tokens.
const MAX_LENGTH: usize = 1 << 24;

pub struct LuaDataset(pub Dataset);
pub struct LuaDataIter(pub DataIter);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// jsonl, json, csv, tsv, text or parquet (default: from the extension).
    format: Option<String>,
    /// "fail" (default) or "skip" malformed records.
    on_error: Option<String>,
    /// Required fields and their types.
    schema: Option<BTreeMap<String, String>>,
    /// CSV/TSV: the first row names the columns (default true, false when `columns` is given).
    header: Option<bool>,
    columns: Option<Vec<String>>,
    delimiter: Option<String>,
    /// CSV/TSV: cells that are numbers become numbers (default true).
    infer: Option<bool>,
    /// text: "line" (default), "paragraph" or "file".
    by: Option<String>,
    /// json: the array under this field of the top-level object.
    field: Option<String>,
}

fn read_options(call: &str, path: &Path, a: ReadArgs) -> mlua::Result<ReadOptions> {
    let name = match a.format.as_deref() {
        Some(f) => f.to_string(),
        None if path.is_dir() => "text".to_string(),
        None => guess_format(path)
            .ok_or_else(|| misuse(call, format!("cannot tell the format of {} from its extension; give {{ format = ... }} ({})", path.display(), FORMATS.join(", "))))?
            .to_string(),
    };
    let by = a.by.as_deref().or(if path.is_dir() { Some("file") } else { None });
    let csv = match name.as_str() {
        "csv" | "tsv" => {
            let delimiter = match a.delimiter.as_deref() {
                None => if name == "tsv" { b'\t' } else { b',' },
                Some(d) if d.len() == 1 => d.as_bytes()[0],
                Some(d) => return Err(misuse(call, format!("delimiter must be one character, got \"{d}\""))),
            };
            Some(CsvLayout { delimiter, header: a.header.unwrap_or(a.columns.is_none()), columns: a.columns, infer: a.infer.unwrap_or(true) })
        }
        _ => {
            for (key, given) in [("header", a.header.is_some()), ("columns", a.columns.is_some()), ("delimiter", a.delimiter.is_some()), ("infer", a.infer.is_some())] {
                if given {
                    return Err(misuse(call, format!("{key} is an option of csv and tsv files, not {name}")));
                }
            }
            None
        }
    };
    let format = format_named(&name, csv, by, a.field).or_misuse(call)?;
    let on_error = match a.on_error.as_deref() {
        None | Some("fail") => OnError::Fail,
        Some("skip") => OnError::Skip,
        Some(other) => return Err(misuse(call, format!("on_error must be \"fail\" or \"skip\", got \"{other}\""))),
    };
    let schema = match a.schema {
        None => None,
        Some(s) => Some(Schema(s.into_iter().map(|(k, t)| FieldType::named(&t).map(|t| (k, t))).collect::<anyhow::Result<_>>().or_misuse(call)?)),
    };
    Ok(ReadOptions { format, on_error, schema })
}

fn read(lua: &Lua, (path, opts): (String, Option<Table>)) -> mlua::Result<MultiValue> {
    let call = "data.read";
    let a: ReadArgs = options(lua, call, opts)?;
    let p = Path::new(&path);
    if !p.exists() {
        return failure(lua, format!("{call}: {path}: no such file or directory"));
    }
    let o = read_options(call, p, a)?;
    let source = FileSource::new(p, o).or_misuse(call)?;
    Ok(MultiValue::from_iter([Value::UserData(lua.create_userdata(LuaDataset(Dataset::from_file(source)))?)]))
}

fn from(_: &Lua, list: Value) -> mlua::Result<LuaDataset> {
    let call = "data.from";
    let Value::Table(t) = &list else { return Err(misuse(call, format!("expected a list of examples, got {}", describe(&list)))) };
    let n = t.raw_len();
    if n != t.pairs::<Value, Value>().count() {
        return Err(misuse(call, "expected a list of examples (keys 1..n), got a table with other keys"));
    }
    let items = (1..=n).map(|i| from_lua(call, &format!("example {i}"), &t.raw_get::<Value>(i)?)).collect::<mlua::Result<_>>()?;
    Ok(LuaDataset(Dataset::from_values(items)))
}

/// Datasets given as a list (`concat`, `interleave`).
fn datasets(call: &str, list: &Table) -> mlua::Result<Vec<Dataset>> {
    (1..=list.raw_len())
        .map(|i| match list.raw_get::<Value>(i)? {
            Value::UserData(ud) => ud.borrow::<LuaDataset>().map(|d| d.0.clone()).map_err(|_| misuse(call, format!("element {i} is not a dataset"))),
            other => Err(misuse(call, format!("element {i} must be a dataset, got {}", describe(&other)))),
        })
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InterleaveArgs {
    weights: Option<Vec<f64>>,
    seed: Option<u64>,
    /// "first" (default: stop when a dataset runs out) or "all".
    stop: Option<String>,
}

fn interleave(lua: &Lua, (list, opts): (Table, Option<Table>)) -> mlua::Result<LuaDataset> {
    let call = "data.interleave";
    let o: InterleaveArgs = options(lua, call, opts)?;
    let until_all = match o.stop.as_deref() {
        None | Some("first") => false,
        Some("all") => true,
        Some(other) => return Err(misuse(call, format!("stop must be \"first\" or \"all\", got \"{other}\""))),
    };
    Dataset::interleave(datasets(call, &list)?, o.weights, o.seed.unwrap_or(0), until_all).map(LuaDataset).or_misuse(call)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShuffleArgs {
    seed: Option<u64>,
    buffer: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchArgs {
    size: usize,
    drop_last: Option<bool>,
    pad_id: Option<i64>,
    pad: Option<BTreeMap<String, f64>>,
    padding_side: Option<String>,
    pad_to_multiple_of: Option<usize>,
    bucket: Option<usize>,
    by: Option<String>,
    seed: Option<u64>,
}

fn batch_options(call: &str, v: Value) -> mlua::Result<BatchOptions> {
    let a: BatchArgs = match v {
        Value::Table(t) => required_options(call, t, &[])?,
        Value::Integer(_) | Value::Number(_) => BatchArgs {
            size: usize::try_from(integer(call, &v)?).map_err(|_| misuse(call, "size must be at least 1"))?,
            drop_last: None, pad_id: None, pad: None, padding_side: None, pad_to_multiple_of: None, bucket: None, by: None, seed: None,
        },
        other => return Err(misuse(call, format!("expected a size or {{ size = ..., ... }}, got {}", describe(&other)))),
    };
    if a.size == 0 || a.size > MAX_ROWS {
        return Err(misuse(call, format!("size must be between 1 and {MAX_ROWS}, got {}", a.size)));
    }
    if a.bucket.is_some_and(|b| b == 0 || b.saturating_mul(a.size) > MAX_ROWS) {
        return Err(misuse(call, format!("bucket must be at least 1 (batches per sorted window), and bucket × size at most {MAX_ROWS}")));
    }
    if a.pad_to_multiple_of.is_some_and(|m| m == 0 || m > MAX_LENGTH) {
        return Err(misuse(call, format!("pad_to_multiple_of must be between 1 and {MAX_LENGTH}")));
    }
    let left = match a.padding_side.as_deref() {
        None | Some("right") => false,
        Some("left") => true,
        Some(other) => return Err(misuse(call, format!("padding_side must be \"left\" or \"right\", got \"{other}\""))),
    };
    Ok(BatchOptions {
        size: a.size,
        drop_last: a.drop_last.unwrap_or(false),
        pad_id: a.pad_id.unwrap_or(0),
        pad: a.pad.unwrap_or_default().into_iter().collect(),
        left,
        multiple_of: a.pad_to_multiple_of,
        bucket: a.bucket,
        by: a.by.unwrap_or_else(|| "input_ids".into()),
        seed: a.seed.unwrap_or(0),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenizeArgs {
    field: Option<String>,
    response_only: Option<bool>,
    add_eos: Option<bool>,
    max_length: Option<usize>,
    /// "right" (default: keep the start) or "left".
    truncation: Option<String>,
    keep: Option<Vec<String>>,
    chat_template: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackArgs {
    length: usize,
    pad_id: Option<i64>,
    split: Option<bool>,
    drop_last: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateArgs {
    prompt: String,
    response: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NormalizeArgs {
    field: Option<String>,
    fields: Option<Vec<String>>,
    /// NFC (default), NFKC, NFD, NFKD, or false for none.
    form: Option<serde_json::Value>,
    whitespace: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LengthArgs {
    field: Option<String>,
    min: Option<usize>,
    max: Option<usize>,
    /// "chars" (default) or "words".
    unit: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RedactArgs {
    field: Option<String>,
    fields: Option<Vec<String>>,
    kinds: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DedupArgs {
    field: Option<String>,
    fields: Option<Vec<String>>,
    near: Option<bool>,
    threshold: Option<f64>,
    num_perm: Option<usize>,
    shingle: Option<usize>,
    seed: Option<u64>,
}

/// `field = "x"` or `fields = { ... }`, else `default`.
fn field_list(call: &str, field: Option<String>, fields: Option<Vec<String>>, default: &[&str]) -> mlua::Result<Vec<String>> {
    match (field, fields) {
        (Some(_), Some(_)) => Err(misuse(call, "give field or fields, not both")),
        (Some(f), None) => Ok(vec![f]),
        (None, Some(f)) if f.is_empty() && !default.is_empty() => Err(misuse(call, "fields is empty")),
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(default.iter().map(|s| s.to_string()).collect()),
    }
}

fn split(lua: &Lua, data: &Dataset, opts: Table) -> mlua::Result<Table> {
    let call = "data.split";
    let mut parts = Vec::new();
    let mut seed = 0;
    let mut stratify = None;
    for pair in opts.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(k) = k else { return Err(misuse(call, "expected named parts ({ train = 0.8, test = 0.2, seed = 0, stratify = \"label\" })")) };
        let k = k.to_str()?.to_string();
        match (k.as_str(), &v) {
            ("seed", v) => seed = count(call, "seed", v)?,
            ("stratify", Value::String(f)) => stratify = Some(f.to_str()?.to_string()),
            ("stratify", other) => return Err(misuse(call, format!("stratify must name a field, got {}", describe(other)))),
            (_, Value::Integer(i)) => parts.push((k.clone(), *i as f64)),
            (_, Value::Number(x)) => parts.push((k.clone(), *x)),
            (_, other) => return Err(misuse(call, format!("part '{k}' must be a fraction, got {}", describe(other)))),
        }
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let out = lua.create_table()?;
    for (name, positions) in crate::data::split::split(data, &parts, seed, stratify.as_deref()).or_misuse(call)? {
        out.set(name, new(lua, data.pick(positions))?)?;
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IterArgs {
    /// How many passes (default 1); math.huge for no end.
    epochs: Option<f64>,
    /// In a data-parallel run, give this rank its share (default true).
    shard: Option<bool>,
}

fn count(call: &str, what: &str, v: &Value) -> mlua::Result<u64> {
    let n = integer(call, v).map_err(|_| misuse(call, format!("{what} must be an integer, got {}", describe(v))))?;
    u64::try_from(n).map_err(|_| misuse(call, format!("{what} must not be negative, got {n}")))
}

fn callback(lua: &Lua, call: &'static str, f: Value) -> mlua::Result<Rc<LuaCallback>> {
    match f {
        Value::Function(f) => Ok(Rc::new(LuaCallback { f, lua: lua.weak(), call })),
        other => Err(misuse(call, format!("expected a function, got {}", describe(&other)))),
    }
}

fn new(lua: &Lua, d: Dataset) -> mlua::Result<Value> {
    Ok(Value::UserData(lua.create_userdata(LuaDataset(d))?))
}

impl UserData for LuaDataset {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "dataset");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method(methods, "map", "data.map", |lua, this, f: Value| new(lua, this.0.map(callback(lua, "data.map", f)?)));
        method(methods, "filter", "data.filter", |lua, this, f: Value| new(lua, this.0.filter(callback(lua, "data.filter", f)?)));
        method(methods, "shuffle", "data.shuffle", |lua, this, opts: Option<Table>| {
            let o: ShuffleArgs = options(lua, "data.shuffle", opts)?;
            if o.buffer.is_some_and(|b| b > MAX_ROWS) {
                return Err(misuse("data.shuffle", format!("buffer must be at most {MAX_ROWS} examples")));
            }
            new(lua, this.0.shuffle(o.seed.unwrap_or(0), o.buffer).or_misuse("data.shuffle")?)
        });
        method(methods, "take", "data.take", |lua, this, n: Value| new(lua, this.0.take(count("data.take", "n", &n)?)));
        method(methods, "skip", "data.skip", |lua, this, n: Value| new(lua, this.0.skip(count("data.skip", "n", &n)?)));
        method(methods, "shard", "data.shard", |lua, this, (rank, world): (Option<Value>, Option<Value>)| {
            let call = "data.shard";
            let place = crate::dist::world::place().or_misuse(call)?;
            let rank = rank.map(|v| count(call, "rank", &v)).transpose()?.unwrap_or(place.rank as u64);
            let world = world.map(|v| count(call, "world", &v)).transpose()?.unwrap_or(place.size as u64);
            new(lua, this.0.shard(rank, world).or_misuse(call)?)
        });
        method(methods, "batch", "data.batch", |lua, this, o: Value| new(lua, this.0.regroup(Rc::new(Batcher(batch_options("data.batch", o)?)))));
        method(methods, "template", "data.template", |lua, this, t: Value| {
            let call = "data.template";
            let template = match t {
                Value::String(s) => Template::named(&s.to_str()?).or_misuse(call)?,
                Value::Table(t) => {
                    let a: TemplateArgs = required_options(call, t, &[])?;
                    Template::format(a.prompt, a.response).or_misuse(call)?
                }
                Value::Function(_) => return new(lua, this.0.map(callback(lua, call, t)?)),
                other => return Err(misuse(call, format!("expected a template name, {{ prompt = ..., response = ... }} or a function, got {}", describe(&other)))),
            };
            new(lua, this.0.map(Rc::new(template)))
        });
        method(methods, "tokenize", "data.tokenize", |lua, this, (tok, opts): (Value, Option<Table>)| {
            let call = "data.tokenize";
            let tok = match &tok {
                Value::UserData(ud) => ud.borrow::<LuaTokenizer>().map_err(|_| misuse(call, "argument 1 must be a tokenizer (mt.tokenizer.load)"))?.0.clone(),
                other => return Err(misuse(call, format!("argument 1 must be a tokenizer, got {}", describe(other)))),
            };
            let a: TokenizeArgs = options(lua, call, opts)?;
            let truncate_left = match a.truncation.as_deref() {
                None | Some("right") => false,
                Some("left") => true,
                Some(other) => return Err(misuse(call, format!("truncation must be \"right\" or \"left\", got \"{other}\""))),
            };
            if a.max_length == Some(0) {
                return Err(misuse(call, "max_length must be at least 1"));
            }
            let o = TokenizeOptions {
                field: a.field,
                response_only: a.response_only.unwrap_or(true),
                add_eos: a.add_eos,
                max_length: a.max_length,
                truncate_left,
                keep: a.keep.unwrap_or_default(),
                chat_template: a.chat_template,
            };
            new(lua, this.0.map(Rc::new(Tokenize { tok, o })))
        });
        method(methods, "pack", "data.pack", |lua, this, opts: Table| {
            let a: PackArgs = required_options("data.pack", opts, &[])?;
            if a.length == 0 || a.length > MAX_LENGTH {
                return Err(misuse("data.pack", format!("length must be between 1 and {MAX_LENGTH} tokens, got {}", a.length)));
            }
            let o = PackOptions { length: a.length, pad_id: a.pad_id.unwrap_or(0), split: a.split.unwrap_or(false), drop_last: a.drop_last.unwrap_or(false) };
            new(lua, this.0.regroup(Rc::new(Packer(o))))
        });
        method(methods, "normalize", "data.normalize", |lua, this, opts: Option<Table>| {
            let call = "data.normalize";
            let a: NormalizeArgs = options(lua, call, opts)?;
            let form = match a.form {
                None => Some(Form::Nfc),
                Some(serde_json::Value::Bool(false)) => None,
                Some(serde_json::Value::String(f)) => Some(Form::named(&f).or_misuse(call)?),
                Some(other) => return Err(misuse(call, format!("form must be \"NFC\", \"NFKC\", \"NFD\", \"NFKD\" or false, got {other}"))),
            };
            let fields = field_list(call, a.field, a.fields, &["text"])?;
            new(lua, this.0.map(Rc::new(Normalize { fields, form, whitespace: a.whitespace.unwrap_or(true), tally: Tally::with(&["examples", "changed"]) })))
        });
        method(methods, "length_filter", "data.length_filter", |lua, this, opts: Table| {
            let call = "data.length_filter";
            let a: LengthArgs = required_options(call, opts, &[])?;
            let unit = match a.unit.as_deref() {
                None | Some("chars") => Unit::Chars,
                Some("words") => Unit::Words,
                Some(other) => return Err(misuse(call, format!("unit must be \"chars\" or \"words\", got \"{other}\""))),
            };
            if a.min.is_none() && a.max.is_none() {
                return Err(misuse(call, "give min, max or both"));
            }
            let tally = Tally::with(&["examples", "too_short", "too_long"]);
            new(lua, this.0.filter(Rc::new(LengthFilter { field: a.field.unwrap_or_else(|| "text".into()), unit, min: a.min, max: a.max, tally })))
        });
        method(methods, "redact", "data.redact", |lua, this, opts: Option<Table>| {
            let call = "data.redact";
            let a: RedactArgs = options(lua, call, opts)?;
            let kinds = match a.kinds {
                None => pii::ALL.to_vec(),
                Some(k) => k.iter().map(|n| pii::Kind::named(n)).collect::<anyhow::Result<_>>().or_misuse(call)?,
            };
            let mut names = vec!["examples", "changed"];
            names.extend(kinds.iter().map(|k| k.name()));
            let fields = field_list(call, a.field, a.fields, &["text"])?;
            new(lua, this.0.map(Rc::new(Redact { fields, kinds, tally: Tally::with(&names) })))
        });
        method(methods, "dedup", "data.dedup", |lua, this, opts: Option<Table>| {
            let call = "data.dedup";
            let a: DedupArgs = options(lua, call, opts)?;
            let fields = field_list(call, a.field, a.fields, &[])?;
            let how = if a.near.unwrap_or(false) {
                let threshold = a.threshold.unwrap_or(0.8);
                if !(threshold > 0.0 && threshold <= 1.0) {
                    return Err(misuse(call, format!("threshold must be in (0, 1], got {threshold}")));
                }
                let num_perm = a.num_perm.unwrap_or(128);
                if !(2..=1024).contains(&num_perm) {
                    return Err(misuse(call, format!("num_perm must be between 2 and 1024, got {num_perm}")));
                }
                Dedup::Near { hasher: MinHasher::new(num_perm, a.shingle.unwrap_or(3), a.seed.unwrap_or(1)), threshold, num_perm }
            } else {
                for (key, given) in [("threshold", a.threshold.is_some()), ("num_perm", a.num_perm.is_some()), ("shingle", a.shingle.is_some())] {
                    if given {
                        return Err(misuse(call, format!("{key} is an option of near-duplicate removal: add near = true")));
                    }
                }
                Dedup::Exact
            };
            new(lua, this.0.filter(Rc::new(Deduplicate::new(fields, how))))
        });
        method(methods, "split", "data.split", |lua, this, opts: Table| split(lua, &this.0, opts));
        method(methods, "report", "data.report", |lua, this, ()| {
            let t = lua.create_table()?;
            for (k, n) in this.0.report() {
                t.set(k, n)?;
            }
            Ok(t)
        });
        method(methods, "iter", "data.iter", |lua, this, opts: Option<Table>| {
            let call = "data.iter";
            let o: IterArgs = options(lua, call, opts)?;
            let epochs = match o.epochs {
                None => Some(1),
                Some(x) if x.is_infinite() && x > 0.0 => None,
                Some(x) if x >= 0.0 && x.fract() == 0.0 => Some(x as u64),
                Some(x) => return Err(misuse(call, format!("epochs must be a whole number or math.huge, got {x}"))),
            };
            let data = if o.shard.unwrap_or(true) { crate::data::shard::for_this_rank(&this.0).or_misuse(call)? } else { this.0.clone() };
            Ok(LuaDataIter(DataIter::new(data, epochs)))
        });
        method(methods, "len", "data.len", |_, this, ()| this.0.len().or_misuse("data.len"));
        methods.add_meta_function(MetaMethod::Len, |_, ud: mlua::AnyUserData| ud.borrow::<LuaDataset>()?.0.len().or_misuse("#dataset"));
        method(methods, "head", "data.head", |lua, this, n: Option<Value>| {
            let call = "data.head";
            let n = match n {
                Some(v) => count(call, "n", &v)?,
                None => 5,
            };
            let mut stream = this.0.open(0).or_misuse(call)?;
            let out = lua.create_table()?;
            for i in 1..=n {
                match stream.next().or_misuse(call)? {
                    Some(ex) => out.raw_set(i, to_lua(lua, &ex)?)?,
                    None => break,
                }
            }
            Ok(out)
        });
        method(methods, "skipped", "data.skipped", |_, this, ()| {
            Ok(match &*this.0 .0 {
                crate::data::dataset::Node::Source(crate::data::source::Source::File(f)) => f.skipped.get(),
                _ => 0,
            })
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(match this.0.len() {
                Ok(Some(n)) => format!("dataset({n} examples)"),
                _ => "dataset(length unknown)".to_string(),
            })
        });
    }
}

fn position_table(lua: &Lua, at: Position) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("epoch", at.epoch)?;
    t.set("index", at.index)?;
    Ok(t)
}

fn next_example(lua: &Lua, it: &mut LuaDataIter) -> mlua::Result<Value> {
    match it.0.next().or_misuse("data.next")? {
        Some(ex) => to_lua(lua, &ex),
        None => Ok(Value::Nil),
    }
}

impl UserData for LuaDataIter {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "data iterator");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method_mut(methods, "next", "data.next", |lua, this, ()| next_example(lua, this));
        methods.add_meta_function(MetaMethod::Call, |lua, (ud, _): (mlua::AnyUserData, MultiValue)| next_example(lua, &mut *ud.borrow_mut::<LuaDataIter>()?));
        method(methods, "state", "data.state", |lua, this, ()| position_table(lua, this.0.position()));
        method(methods, "epoch", "data.epoch", |_, this, ()| Ok(this.0.position().epoch + 1));
        method_mut(methods, "load_state", "data.load_state", |_, this, s: Value| {
            let call = "data.load_state";
            let Value::Table(t) = &s else { return Err(misuse(call, format!("expected a state from it:state(), got {}", describe(&s)))) };
            let field = |k: &str| -> mlua::Result<u64> { count(call, &format!("state.{k}"), &t.get::<Value>(k)?) };
            let at = Position { epoch: field("epoch")?, index: field("index")? };
            this.0.seek(at).or_misuse(call)
        });
    }
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("read", function(lua, "data.read", read)?)?;
    t.set("from", function(lua, "data.from", from)?)?;
    t.set("concat", function(lua, "data.concat", |lua, list: Table| new(lua, Dataset::concat(datasets("data.concat", &list)?).or_misuse("data.concat")?))?)?;
    t.set("interleave", function(lua, "data.interleave", interleave)?)?;
    Ok(t)
}

