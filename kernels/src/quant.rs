//! Block quantization of frozen weights: ggml's q8_0 and q4_0 (bit for bit
//! as ggml's reference quantizer and llama.cpp's `gguf` package) and
//! bitsandbytes' NF4 (QLoRA's 4-bit NormalFloat, blocks of 64 with an f32
//! absmax).
//!
//! A quantized matrix is row-major [rows, cols] with blocks running along
//! each row (`cols` a multiple of the block): HF's [out, in] weight layout,
//! which is also how ggml quantizes. Codes are packed into little-endian
//! u32 words so that every backend can hold them as an integer tensor;
//! scales are f32 (q8_0 and q4_0 keep ggml's f16 scale exactly, widened).

use rayon::prelude::*;

/// A block quantization format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// ggml Q8_0: 32 int8 codes and an f16 scale `max|x| / 127`.
    Q8_0,
    /// ggml Q4_0: 32 4-bit codes and an f16 scale `x_maxabs / -8`.
    Q4_0,
    /// bitsandbytes NF4: 64 4-bit indices into [`NF4_TABLE`] and an f32
    /// absmax.
    Nf4,
}

/// bitsandbytes' NF4 levels (QLoRA, Dettmers et al. 2023), as f32.
pub const NF4_TABLE: [f32; 16] = narrow([
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]);

/// bitsandbytes' decision points between neighbouring NF4 levels (the
/// midpoints, as f32): a value above `NF4_SPLITS[i]` maps to level `i + 1`
/// or higher, so a value exactly on a midpoint takes the lower level.
const NF4_SPLITS: [f32; 15] = narrow([
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
]);

/// bitsandbytes' constants are written to double precision and used as
/// f32.
const fn narrow<const N: usize>(values: [f64; N]) -> [f32; N] {
    let mut out = [0f32; N];
    let mut i = 0;
    while i < N {
        out[i] = values[i] as f32;
        i += 1;
    }
    out
}

impl QuantFormat {
    /// Values per block.
    pub fn block(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 => 32,
            Self::Nf4 => 64,
        }
    }

    /// Bits per code.
    pub fn bits(self) -> usize {
        match self {
            Self::Q8_0 => 8,
            Self::Q4_0 | Self::Nf4 => 4,
        }
    }

    /// u32 words of codes in a row of `cols` values.
    pub fn words(self, cols: usize) -> usize {
        cols * self.bits() / 32
    }

    /// Bytes one value takes as held here (codes plus its share of the
    /// f32 scale).
    pub fn bytes_per_value(self) -> f64 {
        self.bits() as f64 / 8.0 + 4.0 / self.block() as f64
    }

    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Nf4 => "nf4",
        }
    }
}

/// A quantized row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
    /// `rows * format.words(cols)` packed codes.
    pub codes: Vec<u32>,
    /// `rows * cols / format.block()` scales.
    pub scales: Vec<f32>,
}

/// Why a matrix cannot be quantized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub cols: usize,
    pub block: usize,
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rows of {} values do not split into blocks of {}",
            self.cols, self.block
        )
    }
}

impl std::error::Error for ShapeError {}

/// Quantizes row-major `values` with rows of `cols`, in parallel over rows.
pub fn quantize(values: &[f32], cols: usize, format: QuantFormat) -> Result<Quantized, ShapeError> {
    let block = format.block();
    if cols == 0 || !cols.is_multiple_of(block) || !values.len().is_multiple_of(cols) {
        return Err(ShapeError { cols, block });
    }
    let rows = values.len() / cols;
    let (words, blocks) = (format.words(cols), cols / block);
    let mut codes = vec![0u32; rows * words];
    let mut scales = vec![0f32; rows * blocks];
    codes
        .par_chunks_mut(words)
        .zip(scales.par_chunks_mut(blocks))
        .zip(values.par_chunks(cols))
        .for_each(|((codes, scales), row)| {
            let mut bytes = vec![0u8; words * 4];
            let per_block = block * format.bits() / 8;
            for ((x, out), scale) in row
                .chunks_exact(block)
                .zip(bytes.chunks_exact_mut(per_block))
                .zip(scales.iter_mut())
            {
                *scale = quantize_block(x, out, format);
            }
            pack(&bytes, codes);
        });
    Ok(Quantized {
        format,
        rows,
        cols,
        codes,
        scales,
    })
}

/// One block into its code bytes; returns the scale as held (f32).
fn quantize_block(x: &[f32], out: &mut [u8], format: QuantFormat) -> f32 {
    match format {
        QuantFormat::Q8_0 => {
            // ggml: d = max|x| / 127 in f32, codes round(x * (1/d)) half
            // away from zero, the scale stored as f16.
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d == 0.0 { 0.0 } else { 1.0 / d };
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v * id).round() as i8 as u8;
            }
            half::f16::from_f32(d).to_f32()
        }
        QuantFormat::Q4_0 => {
            // ggml: the value of largest magnitude (the first one on a tie),
            // sign kept, maps to code 0; codes trunc(x * (1/d) + 8.5) capped
            // at 15. Byte j holds value j (low nibble) and value j + 16.
            let max = x
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let id = if d == 0.0 { 0.0 } else { 1.0 / d };
            let code = |v: f32| ((v * id + 8.5).trunc() as u8).min(15);
            let half = x.len() / 2;
            for (j, o) in out.iter_mut().enumerate() {
                *o = code(x[j]) | (code(x[j + half]) << 4);
            }
            half::f16::from_f32(d).to_f32()
        }
        QuantFormat::Nf4 => {
            // bitsandbytes: x * (1/absmax) against the midpoints; byte j
            // holds value 2j (high nibble) and 2j + 1. An all-zero block
            // gives NaNs, which no split admits: code 0, dequantized to -0.
            let absmax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let inv = 1.0 / absmax;
            let code = |v: f32| {
                let n = v * inv;
                NF4_SPLITS.iter().take_while(|&&s| n > s).count() as u8
            };
            for (j, o) in out.iter_mut().enumerate() {
                *o = (code(x[2 * j]) << 4) | code(x[2 * j + 1]);
            }
            absmax
        }
    }
}

fn pack(bytes: &[u8], words: &mut [u32]) {
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// The code bytes of one row.
fn row_bytes(words: &[u32]) -> impl Iterator<Item = u8> + '_ {
    words.iter().flat_map(|w| w.to_le_bytes())
}

/// Dequantizes one row of `cols` values from its codes and scales.
pub fn dequantize_row(codes: &[u32], scales: &[f32], format: QuantFormat, out: &mut [f32]) {
    let block = format.block();
    let per_block = block * format.bits() / 8;
    let bytes: Vec<u8> = row_bytes(codes).collect();
    for ((out, b), &d) in out
        .chunks_exact_mut(block)
        .zip(bytes.chunks_exact(per_block))
        .zip(scales)
    {
        match format {
            QuantFormat::Q8_0 => {
                for (o, &q) in out.iter_mut().zip(b) {
                    *o = f32::from(q as i8) * d;
                }
            }
            QuantFormat::Q4_0 => {
                let half = block / 2;
                for (j, &q) in b.iter().enumerate() {
                    out[j] = f32::from((q & 0x0f) as i8 - 8) * d;
                    out[j + half] = f32::from((q >> 4) as i8 - 8) * d;
                }
            }
            QuantFormat::Nf4 => {
                for (j, &q) in b.iter().enumerate() {
                    out[2 * j] = NF4_TABLE[usize::from(q >> 4)] * d;
                    out[2 * j + 1] = NF4_TABLE[usize::from(q & 0x0f)] * d;
                }
            }
        }
    }
}

impl Quantized {
    /// The dense row-major matrix, in parallel over rows.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        dequantize_into(&self.codes, &self.scales, self.format, self.cols, &mut out);
        out
    }

    /// ggml's block bytes (f16 scale, then the codes) of a q8_0 or q4_0
    /// matrix, as a GGUF file stores them; `None` for NF4, which ggml has
    /// no type for.
    pub fn to_ggml(&self) -> Option<Vec<u8>> {
        if self.format == QuantFormat::Nf4 {
            return None;
        }
        let block = self.format.block();
        let per_block = block * self.format.bits() / 8;
        let words = self.format.words(self.cols);
        let mut out = Vec::with_capacity(self.scales.len() * (2 + per_block));
        for (codes, scales) in self
            .codes
            .chunks_exact(words)
            .zip(self.scales.chunks_exact(self.cols / block))
        {
            let bytes: Vec<u8> = row_bytes(codes).collect();
            for (b, &d) in bytes.chunks_exact(per_block).zip(scales) {
                out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
        Some(out)
    }

    /// A q8_0 or q4_0 matrix from ggml's block bytes (rows of `cols`).
    pub fn from_ggml(data: &[u8], cols: usize, format: QuantFormat) -> Result<Self, ShapeError> {
        let block = format.block();
        let per_block = block * format.bits() / 8;
        let shape_error = ShapeError { cols, block };
        if format == QuantFormat::Nf4 || cols == 0 || !cols.is_multiple_of(block) {
            return Err(shape_error);
        }
        let row_bytes = cols / block * (2 + per_block);
        if !data.len().is_multiple_of(row_bytes) {
            return Err(shape_error);
        }
        let rows = data.len() / row_bytes;
        let mut codes = Vec::with_capacity(rows * format.words(cols));
        let mut scales = Vec::with_capacity(rows * cols / block);
        let mut bytes = Vec::with_capacity(cols * format.bits() / 8);
        for row in data.chunks_exact(row_bytes) {
            bytes.clear();
            for b in row.chunks_exact(2 + per_block) {
                scales.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
                bytes.extend_from_slice(&b[2..]);
            }
            let start = codes.len();
            codes.resize(start + format.words(cols), 0);
            pack(&bytes, &mut codes[start..]);
        }
        Ok(Self {
            format,
            rows,
            cols,
            codes,
            scales,
        })
    }
}

/// Dequantizes whole rows of `cols` into `out` (row-major), in parallel.
pub fn dequantize_into(
    codes: &[u32],
    scales: &[f32],
    format: QuantFormat,
    cols: usize,
    out: &mut [f32],
) {
    let (words, blocks) = (format.words(cols), cols / format.block());
    out.par_chunks_mut(cols)
        .zip(codes.par_chunks(words))
        .zip(scales.par_chunks(blocks))
        .for_each(|((out, codes), scales)| dequantize_row(codes, scales, format, out));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_splits_are_the_midpoints_of_the_levels() {
        for (i, &s) in NF4_SPLITS.iter().enumerate() {
            let mid = (f64::from(NF4_TABLE[i]) + f64::from(NF4_TABLE[i + 1])) / 2.0;
            assert!((f64::from(s) - mid).abs() < 1e-7, "split {i}: {s} vs {mid}");
        }
    }

    #[test]
    fn every_format_stays_within_its_step() {
        let row: Vec<f32> = (0..64).map(|i| ((i % 15) as f32 - 7.0) / 7.0).collect();
        // The largest error each format allows with a max of 1: half a step
        // of 1/127 (q8_0); one step of 1/8 (q4_0 maps the max to -8 and
        // clips the opposite extreme to +7); half the widest NF4 gap.
        for (format, bound) in [
            (QuantFormat::Q8_0, 0.5 / 127.0),
            (QuantFormat::Q4_0, 0.125),
            (QuantFormat::Nf4, (NF4_TABLE[1] - NF4_TABLE[0]) / 2.0),
        ] {
            let q = quantize(&row, 64, format).unwrap();
            let back = q.dequantize();
            let worst = row
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= bound + 1e-6, "{format:?}: {worst} > {bound}");
        }
    }

    #[test]
    fn ggml_bytes_round_trip() {
        let row: Vec<f32> = (0..96).map(|i| (i as f32 * 0.37).sin()).collect();
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_0] {
            let q = quantize(&row, 32, format).unwrap();
            let bytes = q.to_ggml().unwrap();
            assert_eq!(Quantized::from_ggml(&bytes, 32, format).unwrap(), q);
        }
    }

    #[test]
    fn rows_off_the_block_are_refused() {
        let err = quantize(&[0.0; 48], 48, QuantFormat::Q4_0).unwrap_err();
        assert_eq!(
            err,
            ShapeError {
                cols: 48,
                block: 32
            }
        );
    }
}
