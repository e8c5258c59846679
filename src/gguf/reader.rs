//! A memory-mapped GGUF reader (versions 2 and 3): the metadata, every
//! tensor's descriptor, and the tensor bytes as slices of the map, so a
//! multi-GB file opens in milliseconds and each tensor is touched only when
//! it is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::GgufError;
use super::dequant::GgmlType;

/// Metadata values (every kind of the GGUF specification).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer
    /// of any width (writers disagree on u32 vs i32 vs u64 for counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, from any numeric kind.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// A short description for `model inspect` (arrays by length only).
    pub fn brief(&self) -> String {
        match self {
            Self::Str(s) if s.chars().count() > 80 => {
                let head: String = s.chars().take(77).collect();
                format!("{head:?}...")
            }
            Self::Str(s) => format!("{s:?}"),
            Self::Array(items) => format!("[{} items]", items.len()),
            Self::Bool(b) => b.to_string(),
            Self::F32(v) => v.to_string(),
            Self::F64(v) => v.to_string(),
            other => other
                .as_u64()
                .map_or_else(|| format!("{other:?}"), |v| v.to_string()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Array(_) => "an array",
            Self::Bool(_) => "a bool",
            Self::F32(_) | Self::F64(_) => "a float",
            _ => "an integer",
        }
    }
}

/// One tensor's descriptor.
#[derive(Debug, Clone)]
pub struct GgufTensor {
    /// ggml order: `dims[0]` varies fastest (the reverse of a row-major shape).
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Absolute byte range inside the file.
    pub start: usize,
    pub end: usize,
}

impl GgufTensor {
    /// The row-major shape (torch's order).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: BTreeMap<String, GgufTensor>,
}

/// Value type ids of the GGUF specification.
mod kind {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STR: u32 = 8;
    pub const ARR: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

impl GgufFile {
    /// Maps `path` and parses its header, checking that every tensor's data
    /// lies inside the file and is a whole number of its type's blocks.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path).map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only; a file truncated underneath us by
        // another process is the one case mmap cannot guard against, and
        // llama.cpp's loader shares it.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut r = Cursor {
            bytes: &map,
            at: 0,
            path,
        };
        if r.take(4, "the magic")? != b"GGUF" {
            return Err(GgufError::NotGguf {
                path: path.to_path_buf(),
            });
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = r.string(&format!("metadata key {i}"))?;
            let ty = r.u32(&key)?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut descriptors = Vec::new();
        for i in 0..n_tensors {
            let name = r.string(&format!("the name of tensor {i}"))?;
            let n_dims = r.u32(&name)? as usize;
            if n_dims > 4 {
                return Err(GgufError::BadTensor {
                    path: path.to_path_buf(),
                    tensor: name,
                    reason: format!("{n_dims} dimensions (ggml has at most 4)"),
                });
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&name).map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let id = r.u32(&name)?;
            let ty = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownType {
                path: path.to_path_buf(),
                tensor: name.clone(),
                id,
            })?;
            let offset = r.u64(&name)? as usize;
            descriptors.push((name, dims, ty, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two())
                .ok_or_else(|| GgufError::BadKey {
                    path: path.to_path_buf(),
                    key: "general.alignment".into(),
                    reason: "must be a power of two".into(),
                })? as usize,
            None => 32,
        };
        let data_start = r.at.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, ty, offset) in descriptors {
            let numel = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .unwrap_or(usize::MAX);
            let row = dims.first().copied().unwrap_or(1);
            let bytes = row
                .is_multiple_of(ty.block_values())
                .then(|| ty.bytes_for(numel))
                .flatten()
                .ok_or_else(|| GgufError::BadTensor {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    reason: format!(
                        "rows of {row} values do not split into {} blocks of {}",
                        ty.name(),
                        ty.block_values()
                    ),
                })?;
            let start = data_start.saturating_add(offset);
            let end = start.saturating_add(bytes);
            if end > map.len() {
                return Err(GgufError::Truncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "tensor \"{name}\" (needs bytes {start}..{end}, the file has {})",
                        map.len()
                    ),
                });
            }
            tensors.insert(
                name,
                GgufTensor {
                    dims,
                    ty,
                    start,
                    end,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            version,
            metadata,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored bytes of a tensor.
    pub fn data(&self, tensor: &GgufTensor) -> &[u8] {
        &self.map[tensor.start..tensor.end]
    }

    /// The whole file's map (for callers that release pages after decoding).
    pub(crate) fn map(&self) -> &Mmap {
        &self.map
    }

    /// A metadata value, or an error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong(&self, key: &str, expected: &str, found: &MetaValue) -> GgufError {
        GgufError::BadKey {
            path: self.path.clone(),
            key: key.to_string(),
            reason: format!("expected {expected}, found {}", found.kind()),
        }
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key)? {
            MetaValue::Str(s) => Ok(s),
            other => Err(self.wrong(key, "a string", other)),
        }
    }

    /// An optional string value (absent is fine, another kind is not).
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(MetaValue::Str(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    /// A non-negative integer value.
    pub fn usize(&self, key: &str) -> Result<usize, GgufError> {
        let v = self.get(key)?;
        v.as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    /// An optional non-negative integer value.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    /// An optional numeric value as f64.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    /// An optional bool value.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "a bool", other)),
        }
    }

    /// An array of strings.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        match self.get(key)? {
            MetaValue::Array(items) => items
                .iter()
                .map(|v| match v {
                    MetaValue::Str(s) => Ok(s.as_str()),
                    other => Err(self.wrong(key, "an array of strings", other)),
                })
                .collect(),
            other => Err(self.wrong(key, "an array of strings", other)),
        }
    }

    /// An optional array of numbers as f64.
    pub fn opt_f64_array(&self, key: &str) -> Result<Option<Vec<f64>>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| self.wrong(key, "an array of numbers", v))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(key, "an array of numbers", other)),
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let out = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
            })?;
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)? as usize;
        let bytes = self.take(n, what)?;
        // Some converters wrote vocabularies with invalid UTF-8 pieces;
        // llama.cpp keeps the bytes, and a lossy string keeps the file usable.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            kind::U8 => MetaValue::U8(self.array::<1>(key)?[0]),
            kind::I8 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            kind::U16 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            kind::I16 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            kind::U32 => MetaValue::U32(self.u32(key)?),
            kind::I32 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            kind::F32 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            kind::BOOL => MetaValue::Bool(self.array::<1>(key)?[0] != 0),
            kind::STR => MetaValue::Str(self.string(key)?),
            kind::U64 => MetaValue::U64(self.u64(key)?),
            kind::I64 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            kind::F64 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            kind::ARR if depth < 4 => {
                let inner = self.u32(key)?;
                let n = self.u64(key)? as usize;
                // Every element takes at least one byte: a count beyond the
                // file is a corrupt header, not a reason to allocate.
                if n > self.bytes.len() - self.at.min(self.bytes.len()) {
                    return Err(GgufError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!("the array \"{key}\" ({n} items)"),
                    });
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(inner, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(GgufError::BadKey {
                    path: self.path.to_path_buf(),
                    key: key.to_string(),
                    reason: format!("unknown value type {other}"),
                });
            }
        })
    }
}
