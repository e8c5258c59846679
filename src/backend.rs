//! The one place that turns a user's backend choice into a burn `Device`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

#[cfg(feature = "wgpu")]
use burn::tensor::DeviceKind;
use burn::tensor::{Device, Tensor};

/// Which compute backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// CUDA if compiled in and a GPU answers, then a hardware wgpu adapter,
    /// then the CPU.
    #[default]
    Auto,
    /// burn's pure-Rust `flex` CPU backend (always compiled in).
    Cpu,
    /// wgpu (Vulkan, Metal, DX12) through WGSL shaders.
    Wgpu,
    /// NVIDIA CUDA.
    Cuda,
}

impl BackendChoice {
    /// Names accepted on the command line.
    pub const NAMES: [&'static str; 4] = ["auto", "cpu", "wgpu", "cuda"];

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Result<Self, BackendError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "cpu" | "flex" => Self::Cpu,
            "wgpu" | "vulkan" => Self::Wgpu,
            "cuda" => Self::Cuda,
            _ => {
                return Err(BackendError::Unknown {
                    name: s.to_string(),
                });
            }
        })
    }

    /// Whether this binary was built with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Auto | Self::Cpu => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        })
    }
}

/// Why a backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend \"{name}\"; choose one of auto, cpu, wgpu, cuda")]
    Unknown { name: String },

    #[error(
        "this build of Tunesmith has no {backend} backend; rebuild with `cargo build --release --features {backend}` or choose --backend cpu"
    )]
    NotCompiled { backend: BackendChoice },

    #[error("the {backend} backend is compiled in but unusable here: {reason}")]
    Unavailable {
        backend: BackendChoice,
        reason: String,
    },
}

/// A usable device and the backend it belongs to.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub backend: BackendChoice,
    /// Human-readable description, e.g. "wgpu (default adapter)".
    pub description: String,
}

/// Resolves a choice to a working device, checking that it can run a
/// trivial kernel so failures surface here and not mid-run.
pub fn select(choice: BackendChoice) -> Result<SelectedDevice, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
        BackendChoice::Auto => {
            // Why a compiled-in CUDA was passed over travels with the choice,
            // so a user with an NVIDIA GPU sees it instead of a silent CPU run.
            let mut skipped = String::new();
            if BackendChoice::Cuda.is_compiled() {
                match select(BackendChoice::Cuda) {
                    Ok(d) => return Ok(d),
                    Err(e) => skipped = format!("; cuda skipped: {e}"),
                }
            }
            #[cfg(feature = "wgpu")]
            for (kind, label) in [
                (DeviceKind::DiscreteGpu(0), "discrete GPU"),
                (DeviceKind::IntegratedGpu(0), "integrated GPU"),
            ] {
                // Software adapters (lavapipe) are slower than the CPU backend,
                // so Auto only takes real GPUs.
                if let Ok(device) = wgpu_device(kind) {
                    return Ok(SelectedDevice {
                        device,
                        backend: BackendChoice::Wgpu,
                        description: format!("wgpu ({label}){skipped}"),
                    });
                }
            }
            let mut chosen = cpu();
            chosen.description.push_str(&skipped);
            Ok(chosen)
        }
        BackendChoice::Wgpu => wgpu(),
        BackendChoice::Cuda => cuda(),
    }
}

fn cpu() -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        backend: BackendChoice::Cpu,
        description: "cpu (burn flex)".into(),
    }
}

/// Initialises (once per process and adapter kind) and self-tests a wgpu
/// device. burn refuses to initialise the same runtime twice, so the
/// outcome is remembered.
#[cfg(feature = "wgpu")]
fn wgpu_device(kind: DeviceKind) -> Result<Device, String> {
    use std::sync::Mutex;
    type Cache = Vec<(DeviceKind, Result<Device, String>)>;
    static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, result)) = cache.iter().find(|(k, _)| *k == kind) {
        return result.clone();
    }
    let mut options = Device::wgpu_options().device_kind(kind.clone());
    // On Linux, Vulkan is the only API worth computing on; without the pin,
    // a machine with just a software Vulkan driver goes on to probe OpenGL.
    if cfg!(target_os = "linux") {
        options = options.graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan);
    }
    let result = options
        .init()
        .map_err(|e| e.to_string())
        .and_then(|device| self_test(&device).map(|()| device));
    cache.push((kind, result.clone()));
    result
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<SelectedDevice, BackendError> {
    let device =
        wgpu_device(DeviceKind::DefaultDevice).map_err(|reason| BackendError::Unavailable {
            backend: BackendChoice::Wgpu,
            reason: format!("no usable Vulkan/Metal/DX12 adapter ({reason})"),
        })?;
    Ok(SelectedDevice {
        device,
        backend: BackendChoice::Wgpu,
        description: "wgpu (default adapter)".into(),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<SelectedDevice, BackendError> {
    Err(BackendError::NotCompiled {
        backend: BackendChoice::Wgpu,
    })
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<SelectedDevice, BackendError> {
    let device = Device::cuda(0);
    self_test(&device).map_err(|reason| BackendError::Unavailable {
        backend: BackendChoice::Cuda,
        reason: format!(
            "no usable NVIDIA GPU, driver or NVRTC ({reason}); CUDA needs the driver, \
             libnvrtc.so.12 and CUDA's headers (README, \"NVIDIA GPUs\")"
        ),
    })?;
    Ok(SelectedDevice {
        device,
        backend: BackendChoice::Cuda,
        description: "cuda (GPU 0)".into(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<SelectedDevice, BackendError> {
    Err(BackendError::NotCompiled {
        backend: BackendChoice::Cuda,
    })
}

/// Runs one tiny computation on a device. Some GPU runtimes report a
/// missing driver by panicking, so the panic is caught (and kept off the
/// terminal) and turned into a reason.
#[allow(dead_code)] // unused in CPU-only builds
fn self_test(device: &Device) -> Result<(), String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let t = Tensor::<1>::from_floats([1.0, 2.0], device);
        t.sum().into_scalar::<f32>()
    }));
    std::panic::set_hook(previous);
    match result {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(()),
        Ok(v) => Err(format!("self-test computed {v} instead of 3")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the runtime panicked".into())),
    }
}

/// Whether `device` runs kernels it compiles per tensor shape (wgpu, CUDA):
/// such backends want few distinct shapes. The CPU backend does not.
pub fn compiles_per_shape(device: &Device) -> bool {
    !tunesmith_kernels::on_cpu(device)
}

/// The sequence length a micro-batch whose longest row has `len` tokens is
/// padded to. Backends that compile per shape get a handful of buckets
/// (powers of two up to 64, then multiples of 64), so a run compiles each
/// kernel a bounded number of times instead of once per distinct length;
/// the CPU pads to the longest row only.
pub fn padded_len(len: usize, device: &Device) -> usize {
    if compiles_per_shape(device) {
        shape_bucket(len)
    } else {
        len
    }
}

fn shape_bucket(len: usize) -> usize {
    match len {
        0 => 0,
        1..=64 => len.next_power_of_two().max(8),
        _ => len.div_ceil(64) * 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_fall_into_few_buckets_that_hold_them() {
        let buckets: std::collections::BTreeSet<usize> = (1..=2048).map(shape_bucket).collect();
        // 8, 16, 32, 64, then 128..=2048 by 64.
        assert_eq!(buckets.len(), 4 + 31);
        for len in 1..=2048 {
            let b = shape_bucket(len);
            assert!(b >= len && (b - len < 64 || b == 8), "{len} -> {b}");
        }
        assert_eq!(padded_len(37, &Device::flex()), 37);
    }
}
