//! A small GGUF v3 writer and reader (the container llama.cpp loads):
//! little-endian header, key/value metadata, tensor descriptors, then the
//! tensor data, each aligned to `general.alignment` (32).

use std::io::{Read, Write};

use tunesmith_kernels::QuantFormat;
use tunesmith_kernels::quant::{self, Quantized};

/// GGUF's magic, "GGUF" read as a little-endian u32.
const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// Default alignment of the data section and of each tensor in it.
pub const ALIGNMENT: usize = 32;

/// A metadata value. Only the kinds Tunesmith writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    ArrStr(Vec<String>),
    ArrI32(Vec<i32>),
    ArrF32(Vec<f32>),
}

// Type ids of the GGUF specification.
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STR: u32 = 8;
const T_ARR: u32 = 9;

/// ggml tensor types we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    /// Blocks of 32 values along the row: an f16 scale and 32 int8.
    Q8_0,
}

/// Values per Q8_0 block, and its bytes.
pub const Q8_BLOCK: usize = 32;
const Q8_BYTES: usize = 34;

impl TensorType {
    fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
        }
    }

    fn from_id(id: u32) -> Option<Self> {
        match id {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            8 => Some(Self::Q8_0),
            30 => Some(Self::BF16),
            _ => None,
        }
    }

    /// Bytes of `n` values (`n` a multiple of 32 for Q8_0).
    pub fn bytes(self, n: usize) -> usize {
        match self {
            Self::F32 => 4 * n,
            Self::F16 | Self::BF16 => 2 * n,
            Self::Q8_0 => n / Q8_BLOCK * Q8_BYTES,
        }
    }

    /// Encodes row-major values (rows a multiple of 32 long for Q8_0).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            Self::BF16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            // Blocks are independent runs of 32 values: quantizing the
            // values as rows of one block gives ggml's bytes for any row
            // length that is a multiple of 32.
            Self::Q8_0 => quant::quantize(values, Q8_BLOCK, QuantFormat::Q8_0)
                .ok()
                .and_then(|q| q.to_ggml())
                .expect("callers give Q8_0 rows a multiple of 32 long"),
        }
    }

    /// Decodes to f32, row-major.
    pub fn decode(self, data: &[u8]) -> Vec<f32> {
        use safetensors::Dtype;
        let plain = |dtype| crate::model::decode_f32(data, dtype).unwrap_or_default();
        match self {
            Self::F32 => plain(Dtype::F32),
            Self::F16 => plain(Dtype::F16),
            Self::BF16 => plain(Dtype::BF16),
            // Whole blocks only, as the reader sized them.
            Self::Q8_0 => Quantized::from_ggml(
                &data[..data.len() / Q8_BYTES * Q8_BYTES],
                Q8_BLOCK,
                QuantFormat::Q8_0,
            )
            .map(|q| q.dequantize())
            .expect("whole Q8_0 blocks always decode"),
        }
    }
}

/// One tensor: `dims` in ggml order (`dims[0]` varies fastest, i.e. the
/// reverse of the row-major shape), data as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor from row-major f32 values of `shape`, stored as `ty`.
    pub fn from_f32(
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
        ty: TensorType,
    ) -> Self {
        let data = ty.encode(values);
        Self {
            name: name.into(),
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
            ty,
            data,
        }
    }

    /// The values widened to f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        self.ty.decode(&self.data)
    }

    /// Row-major shape (the reverse of `dims`).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A whole GGUF file in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct File {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
}

impl File {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Serializes the file.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let headers: Vec<TensorHeader> = self
            .tensors
            .iter()
            .map(|t| TensorHeader {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
            })
            .collect();
        write_streaming(out, &self.metadata, &headers, |i| {
            Ok(self.tensors[i].data.clone())
        })
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write(&mut out);
        out
    }

    /// Parses a GGUF v3 file with the value and tensor types above.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err("not a GGUF file (bad magic)".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("GGUF version {version}, expected {VERSION}"));
        }
        let n_tensors = r.u64()? as usize;
        let n_kv = r.u64()? as usize;
        let mut metadata = Vec::with_capacity(n_kv.min(1 << 16));
        for _ in 0..n_kv {
            let key = r.string()?;
            let value = r.value()?;
            metadata.push((key, value));
        }
        let mut infos = Vec::with_capacity(n_tensors.min(1 << 16));
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ty_id = r.u32()?;
            let ty = TensorType::from_id(ty_id)
                .ok_or_else(|| format!("tensor {name}: ggml type {ty_id} is not read"))?;
            let offset = r.u64()? as usize;
            infos.push((name, dims, ty, offset));
        }
        let data_start = align(r.at);
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ty, offset) in infos {
            let n: u64 = dims.iter().product();
            let len = ty.bytes(n as usize);
            let start = data_start + offset;
            let data = bytes
                .get(start..start + len)
                .ok_or_else(|| format!("tensor {name} runs past the end of the file"))?
                .to_vec();
            tensors.push(Tensor {
                name,
                dims,
                ty,
                data,
            });
        }
        Ok(Self { metadata, tensors })
    }
}

/// A tensor's descriptor, its data produced later.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorHeader {
    pub name: String,
    /// ggml order.
    pub dims: Vec<u64>,
    pub ty: TensorType,
}

impl TensorHeader {
    fn bytes(&self) -> usize {
        self.ty.bytes(self.dims.iter().product::<u64>() as usize)
    }
}

/// Writes a GGUF file whose tensor data `data(i)` produces one tensor at a
/// time, so a multi-GB model never sits in memory whole.
pub fn write_streaming(
    out: &mut impl Write,
    metadata: &[(String, Value)],
    tensors: &[TensorHeader],
    mut data: impl FnMut(usize) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<()> {
    let mut w = Counting { inner: out, n: 0 };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_str(&mut w, key)?;
        write_value(&mut w, value)?;
    }
    let mut offset = 0usize;
    for t in tensors {
        write_str(&mut w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            w.write_all(&d.to_le_bytes())?;
        }
        w.write_all(&t.ty.id().to_le_bytes())?;
        w.write_all(&(offset as u64).to_le_bytes())?;
        offset = align(offset + t.bytes());
    }
    let pad = align(w.n) - w.n;
    w.write_all(&vec![0u8; pad])?;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = data(i)?;
        if bytes.len() != t.bytes() {
            return Err(std::io::Error::other(format!(
                "tensor {} has {} bytes, its header says {}",
                t.name,
                bytes.len(),
                t.bytes()
            )));
        }
        w.write_all(&bytes)?;
        let pad = align(bytes.len()) - bytes.len();
        w.write_all(&vec![0u8; pad])?;
    }
    Ok(())
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: usize,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    let array = |w: &mut dyn Write, ty: u32, n: usize| -> std::io::Result<()> {
        w.write_all(&T_ARR.to_le_bytes())?;
        w.write_all(&ty.to_le_bytes())?;
        w.write_all(&(n as u64).to_le_bytes())
    };
    match v {
        Value::U32(x) => {
            w.write_all(&T_U32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::I32(x) => {
            w.write_all(&T_I32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::F32(x) => {
            w.write_all(&T_F32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::Bool(x) => {
            w.write_all(&T_BOOL.to_le_bytes())?;
            w.write_all(&[u8::from(*x)])
        }
        Value::Str(s) => {
            w.write_all(&T_STR.to_le_bytes())?;
            write_str(w, s)
        }
        Value::ArrStr(items) => {
            array(w, T_STR, items.len())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        Value::ArrI32(items) => {
            array(w, T_I32, items.len())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        Value::ArrF32(items) => {
            array(w, T_F32, items.len())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let out = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or("the file ends early")?;
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.take(4)?
            .read_exact(&mut b)
            .map_err(|e| e.to_string())?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.take(8)?
            .read_exact(&mut b)
            .map_err(|e| e.to_string())?;
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn value(&mut self) -> Result<Value, String> {
        let ty = self.u32()?;
        self.typed(ty)
    }

    fn typed(&mut self, ty: u32) -> Result<Value, String> {
        Ok(match ty {
            T_U32 => Value::U32(self.u32()?),
            T_I32 => Value::I32(self.u32()? as i32),
            T_F32 => Value::F32(f32::from_bits(self.u32()?)),
            T_BOOL => Value::Bool(self.take(1)?[0] != 0),
            T_STR => Value::Str(self.string()?),
            T_ARR => {
                let inner = self.u32()?;
                let n = self.u64()? as usize;
                match inner {
                    T_STR => {
                        Value::ArrStr((0..n).map(|_| self.string()).collect::<Result<_, _>>()?)
                    }
                    T_I32 => Value::ArrI32(
                        (0..n)
                            .map(|_| self.u32().map(|x| x as i32))
                            .collect::<Result<_, _>>()?,
                    ),
                    T_F32 => Value::ArrF32(
                        (0..n)
                            .map(|_| self.u32().map(f32::from_bits))
                            .collect::<Result<_, _>>()?,
                    ),
                    other => return Err(format!("arrays of GGUF type {other} are not read")),
                }
            }
            other => return Err(format!("GGUF value type {other} is not read")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_with_aligned_data() {
        let file = File {
            metadata: vec![
                ("general.type".into(), Value::Str("adapter".into())),
                ("adapter.lora.alpha".into(), Value::F32(16.0)),
                (
                    "x.list".into(),
                    Value::ArrStr(vec!["a".into(), "bc".into()]),
                ),
                ("x.ids".into(), Value::ArrI32(vec![-1, 7])),
                ("x.flag".into(), Value::Bool(true)),
                ("x.n".into(), Value::U32(3)),
            ],
            tensors: vec![
                Tensor::from_f32(
                    "a",
                    &[2, 3],
                    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                    TensorType::F32,
                ),
                Tensor::from_f32("b", &[3], &[0.5, -1.0, 2.0], TensorType::F16),
            ],
        };
        let bytes = file.to_bytes();
        assert_eq!(&bytes[..4], b"GGUF");
        let back = File::parse(&bytes).unwrap();
        assert_eq!(back, file);
        assert_eq!(back.tensors[0].dims, [3, 2]);
        assert_eq!(back.tensors[0].shape(), [2, 3]);
        assert_eq!(back.tensors[1].to_f32(), [0.5, -1.0, 2.0]);
        assert!(File::parse(&bytes[..bytes.len() - 30]).is_err());
        assert!(File::parse(b"GGUF\x02\0\0\0").is_err());
    }

    #[test]
    fn q8_0_keeps_values_within_half_a_step() {
        let values: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        let bytes = TensorType::Q8_0.encode(&values);
        assert_eq!(bytes.len(), 68);
        let back = TensorType::Q8_0.decode(&bytes);
        for (block, got) in values.chunks(32).zip(back.chunks(32)) {
            let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in block.iter().zip(got) {
                assert!((a - b).abs() <= 0.57 * step, "{a} vs {b}");
            }
        }
    }
}
