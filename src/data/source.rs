//! Dataset files -> JSON-object records, streamed one at a time: JSONL, JSON
//! arrays, CSV/TSV, Parquet and plain text. Nothing here holds more than
//! one record (plus the reader's buffer) in memory.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::DataError;

/// One record as the file gave it, or why it could not be read.
pub type Record = Result<Map<String, Value>, String>;

/// How a file's records are numbered in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// 1-based line of a text file (JSONL, CSV, TSV, plain text).
    Line,
    /// 1-based row of a JSON array or Parquet file.
    Row,
}

/// The container formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Jsonl,
    JsonArray,
    Csv,
    Tsv,
    Parquet,
    /// Paragraphs separated by blank lines, each a `text` record.
    Text,
}

impl FileKind {
    /// Decided by the extension; `.json` and unknown extensions are sniffed
    /// (a leading `[` is a JSON array, a leading `{` JSON lines).
    pub fn of(path: &Path) -> Result<Self, DataError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "jsonl" | "ndjson" => Self::Jsonl,
            "csv" => Self::Csv,
            "tsv" | "tab" => Self::Tsv,
            "parquet" | "pq" => Self::Parquet,
            "txt" | "text" | "md" => Self::Text,
            _ => match first_byte(path)? {
                Some(b'[') => Self::JsonArray,
                Some(b'{') => Self::Jsonl,
                None if ext == "json" => Self::Jsonl,
                _ => {
                    return Err(DataError::UnsupportedFile {
                        path: path.to_path_buf(),
                    });
                }
            },
        })
    }

    /// How this kind's records are numbered.
    pub fn unit(self) -> Unit {
        match self {
            Self::JsonArray | Self::Parquet => Unit::Row,
            _ => Unit::Line,
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The first byte that is not whitespace (or a UTF-8 BOM).
fn first_byte(path: &Path) -> Result<Option<u8>, DataError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    loop {
        let buf = reader.fill_buf().map_err(io_error(path))?;
        if buf.is_empty() {
            return Ok(None);
        }
        let skip = buf
            .iter()
            .position(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF));
        match skip {
            Some(i) => return Ok(Some(buf[i])),
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// Calls `f` with the number (line or row, 1-based) and content of every
/// record of `path`, in file order, until it returns `Break`. A problem
/// that ends the file (a JSON array broken in the middle, an unreadable
/// Parquet page) is an error after the records before it were delivered.
pub fn for_each_record(
    path: &Path,
    kind: FileKind,
    mut f: impl FnMut(usize, Record) -> ControlFlow<()>,
) -> Result<(), DataError> {
    match kind {
        FileKind::Jsonl => jsonl(path, &mut f),
        FileKind::JsonArray => json_array(path, &mut f),
        FileKind::Csv => delimited(path, b',', &mut f),
        FileKind::Tsv => delimited(path, b'\t', &mut f),
        FileKind::Parquet => parquet(path, &mut f),
        FileKind::Text => text(path, &mut f),
    }
}

type Sink<'a> = &'a mut dyn FnMut(usize, Record) -> ControlFlow<()>;

fn jsonl(path: &Path, f: Sink) -> Result<(), DataError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_error(path))? == 0 {
            return Ok(());
        }
        line += 1;
        let Ok(text) = std::str::from_utf8(&buf) else {
            if f(line, Err("not valid UTF-8".into())).is_break() {
                return Ok(());
            }
            continue;
        };
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        let record = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(_) => Err("expected a JSON object".to_string()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
        if f(line, record).is_break() {
            return Ok(());
        }
    }
}

/// Streams the elements of a top-level JSON array through `f` without
/// building the array.
struct Elements<'a, 'b> {
    f: &'a mut Sink<'b>,
    stopped: bool,
}

impl<'de> Visitor<'de> for &mut Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut row = 0usize;
        while let Some(value) = seq.next_element::<Value>()? {
            row += 1;
            if self.stopped {
                continue;
            }
            let record = match value {
                Value::Object(o) => Ok(o),
                _ => Err("expected a JSON object".to_string()),
            };
            if (self.f)(row, record).is_break() {
                self.stopped = true;
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut Elements<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

fn json_array(path: &Path, mut f: Sink) -> Result<(), DataError> {
    let file = File::open(path).map_err(io_error(path))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut elements = Elements {
        f: &mut f,
        stopped: false,
    };
    let parsed = (&mut elements).deserialize(&mut de).and_then(|()| de.end());
    parsed.map_err(|e| DataError::BrokenFile {
        path: path.to_path_buf(),
        reason: format!(
            "invalid JSON at line {} column {}: {e}; rows before it were read, the rest cannot be",
            e.line(),
            e.column()
        ),
    })
}

/// CSV/TSV with a header row. Empty cells count as absent; a cell that
/// holds a JSON list (a `messages` column) is parsed.
fn delimited(path: &Path, delimiter: u8, f: Sink) -> Result<(), DataError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(BufReader::new(file));
    let headers = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(DataError::BrokenFile {
                path: path.to_path_buf(),
                reason: format!("cannot read the header row: {e}"),
            });
        }
    };
    let mut names = Vec::with_capacity(headers.len());
    for (i, h) in headers.iter().enumerate() {
        let name = std::str::from_utf8(h).map_err(|_| DataError::BrokenFile {
            path: path.to_path_buf(),
            reason: format!("header of column {} is not valid UTF-8", i + 1),
        })?;
        names.push(name.trim_start_matches('\u{feff}').trim().to_string());
    }
    let mut record = csv::ByteRecord::new();
    loop {
        let line_now = reader.position().line() as usize;
        let result = match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => Ok(record.position().map_or(line_now, |p| p.line() as usize)),
            Err(e) => Err(e),
        };
        let flow = match result {
            Ok(line) => f(line, cells(&names, &record)),
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => {
                    return Err(DataError::BrokenFile {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    });
                }
                _ => {
                    let line = e.position().map_or(line_now, |p| p.line() as usize).max(1);
                    f(line, Err(csv_reason(&e)))
                }
            },
        };
        if flow.is_break() {
            return Ok(());
        }
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} columns where the header has {expected_len}"),
        _ => e.to_string(),
    }
}

fn cells(names: &[String], record: &csv::ByteRecord) -> Record {
    let mut obj = Map::new();
    for (name, cell) in names.iter().zip(record.iter()) {
        let text =
            std::str::from_utf8(cell).map_err(|_| format!("column `{name}` is not valid UTF-8"))?;
        if text.is_empty() {
            continue;
        }
        let value = if text.trim_start().starts_with('[') {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        } else {
            Value::String(text.to_string())
        };
        obj.insert(name.clone(), value);
    }
    Ok(obj)
}

fn parquet(path: &Path, f: Sink) -> Result<(), DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let broken = |e: parquet::errors::ParquetError| DataError::BrokenFile {
        path: path.to_path_buf(),
        reason: format!("not a readable Parquet file: {e}"),
    };
    let file = File::open(path).map_err(io_error(path))?;
    let reader = SerializedFileReader::new(file).map_err(broken)?;
    let rows = reader.get_row_iter(None).map_err(broken)?;
    for (i, row) in rows.enumerate() {
        let record = match row.map_err(broken)?.to_json_value() {
            Value::Object(o) => Ok(o),
            _ => Err("expected a record".to_string()),
        };
        if f(i + 1, record).is_break() {
            break;
        }
    }
    Ok(())
}

/// Paragraphs (separated by blank lines), numbered by their first line.
fn text(path: &Path, f: Sink) -> Result<(), DataError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut buf = Vec::new();
    let mut paragraph = String::new();
    let mut start = 0usize;
    let mut line = 0usize;
    let mut bad_utf8 = false;
    let mut flush = |paragraph: &mut String, start: usize, bad: &mut bool| {
        let record = if std::mem::take(bad) {
            Err("not valid UTF-8".to_string())
        } else {
            let mut obj = Map::new();
            obj.insert(
                "text".into(),
                Value::String(paragraph.trim_end().to_string()),
            );
            Ok(obj)
        };
        paragraph.clear();
        f(start, record)
    };
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_error(path))?;
        let blank = n == 0 || buf.iter().all(u8::is_ascii_whitespace);
        if blank {
            if (!paragraph.is_empty() || bad_utf8)
                && flush(&mut paragraph, start, &mut bad_utf8).is_break()
            {
                return Ok(());
            }
            if n == 0 {
                return Ok(());
            }
            line += 1;
            continue;
        }
        line += 1;
        if paragraph.is_empty() && !bad_utf8 {
            start = line;
        }
        match std::str::from_utf8(&buf) {
            Ok(s) => paragraph.push_str(s.trim_start_matches('\u{feff}')),
            Err(_) => bad_utf8 = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(contents: &[u8], name: &str) -> (FileKind, Vec<(usize, Record)>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path).unwrap().write_all(contents).unwrap();
        let kind = FileKind::of(&path).unwrap();
        let mut out = Vec::new();
        for_each_record(&path, kind, |n, r| {
            out.push((n, r));
            ControlFlow::Continue(())
        })
        .unwrap();
        (kind, out)
    }

    #[test]
    fn json_arrays_stream_with_row_numbers() {
        let (kind, rows) = collect(b"  [{\"text\": \"a\"}, 3, {\"text\": \"b\"}]\n", "d.json");
        assert_eq!(kind, FileKind::JsonArray);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].0, 2);
        assert!(rows[1].1.is_err());
        assert_eq!(rows[2].1.as_ref().unwrap()["text"], "b");
    }

    #[test]
    fn csv_rows_carry_their_line_and_parse_list_cells() {
        let data = b"instruction,input,output\n\"multi\nline\",,yes\nbad,row\nq,,\"[1, 2]\"\n";
        let (_, rows) = collect(data, "d.csv");
        assert_eq!(rows.len(), 3);
        let first = rows[0].1.as_ref().unwrap();
        assert_eq!(rows[0].0, 2);
        assert_eq!(first["instruction"], "multi\nline");
        assert!(!first.contains_key("input"), "empty cells are absent");
        assert_eq!(rows[1].0, 4);
        assert!(rows[1].1.as_ref().unwrap_err().contains("2 columns"));
        assert!(rows[2].1.as_ref().unwrap()["output"].is_array());
    }

    #[test]
    fn text_files_split_into_paragraphs() {
        let (kind, rows) = collect(b"one\ntwo\n\n\n three\n", "notes.txt");
        assert_eq!(kind, FileKind::Text);
        let got: Vec<(usize, String)> = rows
            .into_iter()
            .map(|(n, r)| (n, r.unwrap()["text"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(got, vec![(1, "one\ntwo".into()), (5, " three".into())]);
    }
}
