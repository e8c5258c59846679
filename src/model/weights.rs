//! Memory-mapped weights: safetensors checkpoints, single-file or sharded,
//! and GGUF files, whose tensors appear under their Hugging Face names.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::ModelError;
use crate::gguf::{self, GgmlType, GgufFile};

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Where one tensor lives and what it looks like, read from the file header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// The dtype [`WeightSource::raw`] yields (F32 for a quantized GGUF
    /// tensor, which is decoded).
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    file: usize,
    /// Byte range inside the memory map.
    start: usize,
    end: usize,
    gguf: Option<GgufStored>,
}

/// How a GGUF tensor is stored.
#[derive(Debug, Clone)]
struct GgufStored {
    ty: GgmlType,
    /// Heads of llama.cpp's q/k row permutation to undo.
    permute_heads: Option<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes the tensor occupies on disk.
    pub fn bytes(&self) -> usize {
        self.end - self.start
    }

    /// Whether the tensor is stored in ggml blocks (and decoded to F32).
    pub fn is_quantized(&self) -> bool {
        self.gguf
            .as_ref()
            .is_some_and(|g| !matches!(g.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16))
    }

    /// The storage type's name: "F32", "BF16", or a ggml type ("Q4_K").
    pub fn stored_as(&self) -> String {
        match &self.gguf {
            Some(g) => g.ty.name().to_string(),
            None => format!("{:?}", self.dtype),
        }
    }
}

/// The weight files of a model folder, mapped into memory. Tensor data is
/// only touched when a tensor is read, so opening a multi-GB model is cheap.
pub struct WeightSource {
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, TensorInfo>,
    gguf: Option<GgufFile>,
}

impl WeightSource {
    /// Opens `model.safetensors` or the shards listed by
    /// `model.safetensors.index.json`, validating every header.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        if let Some(path) = gguf::locate(dir)? {
            return Self::open_gguf(&path);
        }
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        let paths = if index.is_file() {
            shard_paths(&index)?
        } else if single.is_file() {
            vec![single]
        } else {
            return Err(ModelError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut tensors = BTreeMap::new();
        for (i, path) in paths.into_iter().enumerate() {
            let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // SAFETY: the map is read-only; a file truncated underneath us by
            // another process is the one case mmap cannot guard against,
            // and every loader of safetensors shares it.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&mmap).map_err(|e| ModelError::CorruptSafetensors {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let base = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let (s, e) = info.data_offsets;
                tensors.insert(
                    name,
                    TensorInfo {
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        file: i,
                        start: base + s,
                        end: base + e,
                        gguf: None,
                    },
                );
            }
            files.push((path, mmap));
        }
        Ok(Self {
            files,
            tensors,
            gguf: None,
        })
    }

    /// Opens a GGUF file, naming its tensors as Hugging Face does.
    fn open_gguf(path: &Path) -> Result<Self, ModelError> {
        let file = GgufFile::open(path)?;
        let config = gguf::model_config(&file)?;
        let mut tensors = BTreeMap::new();
        for (name, source) in gguf::tensor_map(&file, &config) {
            let t = &file.tensors[&source.gguf];
            let dtype = match t.ty {
                GgmlType::F16 => Dtype::F16,
                GgmlType::BF16 => Dtype::BF16,
                _ => Dtype::F32,
            };
            if let Some(heads) = source.permute_heads {
                let rows = t.shape()[0];
                if heads == 0 || rows % (2 * heads) != 0 {
                    return Err(gguf::GgufError::BadTensor {
                        path: path.to_path_buf(),
                        tensor: source.gguf.clone(),
                        reason: format!("{rows} rows do not split into {heads} heads"),
                    }
                    .into());
                }
            }
            tensors.insert(
                name,
                TensorInfo {
                    dtype,
                    shape: t.shape(),
                    file: 0,
                    start: t.start,
                    end: t.end,
                    gguf: Some(GgufStored {
                        ty: t.ty,
                        permute_heads: source.permute_heads,
                    }),
                },
            );
        }
        Ok(Self {
            files: Vec::new(),
            tensors,
            gguf: Some(file),
        })
    }

    /// All tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The file that holds a tensor.
    pub fn path_of(&self, info: &TensorInfo) -> &Path {
        match &self.gguf {
            Some(file) => file.path(),
            None => &self.files[info.file].0,
        }
    }

    /// Whether the tensors come from a GGUF file.
    pub fn is_gguf(&self) -> bool {
        self.gguf.is_some()
    }

    /// The bytes of a tensor, little-endian in `info.dtype`, in Hugging
    /// Face's layout: borrowed from the map where the file stores exactly
    /// that, else decoded (GGUF blocks, llama.cpp's q/k row order).
    pub fn raw(&self, info: &TensorInfo) -> Cow<'_, [u8]> {
        match self.dequantized(info) {
            Some(values) => Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            None => self.stored_rows(info),
        }
    }

    /// The stored bytes in Hugging Face's row order (llama.cpp's q/k
    /// permutation undone; blocks left as they are).
    fn stored_rows(&self, info: &TensorInfo) -> Cow<'_, [u8]> {
        let (Some(file), Some(stored)) = (&self.gguf, &info.gguf) else {
            return Cow::Borrowed(&self.files[info.file].1[info.start..info.end]);
        };
        let bytes = &file.map()[info.start..info.end];
        match stored.permute_heads {
            Some(heads) => {
                let rows = info.shape.first().copied().unwrap_or(1).max(1);
                Cow::Owned(gguf::unpermute_rows(bytes, heads, bytes.len() / rows))
            }
            None => Cow::Borrowed(bytes),
        }
    }

    /// The values of a block-quantized GGUF tensor; `None` for plain types.
    fn dequantized(&self, info: &TensorInfo) -> Option<Vec<f32>> {
        let stored = info.gguf.as_ref().filter(|s| s.ty.is_quantized())?;
        let rows = self.stored_rows(info);
        Some(gguf::dequant::dequantize(stored.ty, &rows, info.numel()))
    }

    /// A description of where tensors are looked up, for messages.
    pub fn location(&self) -> String {
        match self.files.as_slice() {
            [(p, _)] => p.display().to_string(),
            [] => self
                .gguf
                .as_ref()
                .map_or_else(String::new, |f| f.path().display().to_string()),
            files => format!(
                "the {} shards of {}",
                files.len(),
                files[0].0.parent().unwrap_or(Path::new(".")).display()
            ),
        }
    }

    /// Reads a tensor as f32, checking its shape. F16 and BF16 are widened
    /// exactly.
    pub fn read_f32(
        &self,
        name: &str,
        expected: &[usize],
        model_type: &str,
    ) -> Result<Vec<f32>, ModelError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                location: self.location(),
                model_type: model_type.to_string(),
            })?;
        let path = self.path_of(info);
        if info.shape != expected {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                path: path.to_path_buf(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        // Quantized blocks decode straight to f32, not through raw()'s bytes.
        let decoded = self
            .dequantized(info)
            .or_else(|| decode_f32(&self.stored_rows(info), info.dtype));
        // The decoded copy is what the model keeps: let the kernel drop the
        // file's pages now rather than hold the checkpoint twice in memory
        // until the load ends (read-only file pages are re-read on access).
        #[cfg(unix)]
        {
            let map = match &self.gguf {
                Some(file) => file.map(),
                None => &self.files[info.file].1,
            };
            // SAFETY: the map is read-only and backed by the file, so
            // MADV_DONTNEED only drops clean pages; later reads fault them in
            // again with the same contents. No mutable view of it exists.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    info.start,
                    info.end - info.start,
                )
            };
        }
        decoded.ok_or_else(|| ModelError::TensorDtype {
            name: name.to_string(),
            path: path.to_path_buf(),
            dtype: format!("{:?}", info.dtype),
        })
    }
}

/// Little-endian F32, F16 or BF16 bytes widened to f32 (exactly); `None`
/// for other dtypes.
pub fn decode_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// The shard files named by an index, in a stable order, each checked to
/// exist.
fn shard_paths(index: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index.to_path_buf(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::BadIndex {
            path: index.to_path_buf(),
            reason: "no \"weight_map\" object".into(),
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut paths = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| ModelError::BadIndex {
            path: index.to_path_buf(),
            reason: format!("the entry for \"{tensor}\" is not a file name"),
        })?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::BadIndex {
                path: index.to_path_buf(),
                reason: format!(
                    "shard name \"{file}\" must be a plain file name in the model folder"
                ),
            });
        }
        if seen.insert(file, ()).is_none() {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(ModelError::BadIndex {
                    path: index.to_path_buf(),
                    reason: format!("shard {file} (holding \"{tensor}\") is missing"),
                });
            }
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
