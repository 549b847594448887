//! Compute-device discovery and selection (`--device auto|cpu|wgpu|vulkan|metal|dx12`).
//!
//! - `auto`: the first real GPU adapter wgpu finds (discrete, then integrated, then
//!   virtual), else the CPU backend (Flex) with a one-line notice. A software adapter such
//!   as lavapipe/llvmpipe is never picked by `auto`: Flex is faster on the same CPU.
//! - `cpu`: Flex, Burn's pure-Rust CPU backend.
//! - `wgpu`: wgpu's default adapter on any graphics API (a software one included).
//! - `vulkan` / `metal` / `dx12`: wgpu pinned to that API (shaders stay WGSL).

use crate::error::CoreError;
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A real GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// Flex on the CPU.
    Cpu,
    /// wgpu's default adapter on any API.
    Wgpu,
    /// wgpu on Vulkan.
    Vulkan,
    /// wgpu on Metal.
    Metal,
    /// wgpu on DirectX 12.
    Dx12,
}

impl FromStr for DeviceChoice {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "cpu" | "flex" => Self::Cpu,
            "wgpu" | "gpu" => Self::Wgpu,
            "vulkan" => Self::Vulkan,
            "metal" => Self::Metal,
            "dx12" => Self::Dx12,
            other => {
                return Err(CoreError::Device(format!(
                    "unknown --device `{other}`: use auto, cpu, wgpu, vulkan, metal or dx12"
                )));
            }
        })
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Vulkan => "vulkan",
            Self::Metal => "metal",
            Self::Dx12 => "dx12",
        })
    }
}

/// A wgpu adapter as `petal info` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Adapter name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// Graphics API (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
}

impl AdapterInfo {
    /// Whether this is a real (hardware) GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(
            self.device_type.as_str(),
            "DiscreteGpu" | "IntegratedGpu" | "VirtualGpu"
        )
    }
}

fn backends_of(choice: DeviceChoice) -> wgpu::Backends {
    match choice {
        DeviceChoice::Vulkan => wgpu::Backends::VULKAN,
        DeviceChoice::Metal => wgpu::Backends::METAL,
        DeviceChoice::Dx12 => wgpu::Backends::DX12,
        _ => wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
    }
}

/// Every wgpu adapter on Vulkan, Metal and DX12 (OpenGL is not used by petal).
pub fn list_adapters() -> Vec<AdapterInfo> {
    list_adapters_on(backends_of(DeviceChoice::Wgpu))
}

fn list_adapters_on(backends: wgpu::Backends) -> Vec<AdapterInfo> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .map(|a| {
            let i = a.get_info();
            AdapterInfo {
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
            }
        })
        .collect()
}

/// A selected device and what it is.
#[derive(Clone, Debug)]
pub struct SelectedDevice {
    /// The Burn device (not autodiff; call `.autodiff()` to train).
    pub device: Device,
    /// One line describing it (`wgpu: NVIDIA H200 (Vulkan, DiscreteGpu)`, `cpu: Flex`).
    pub description: String,
    /// A notice for the user (e.g. why `auto` fell back to the CPU).
    pub notice: Option<String>,
    /// Whether it is a wgpu device.
    pub is_wgpu: bool,
}

impl SelectedDevice {
    fn flex(notice: Option<String>) -> Self {
        Self {
            device: Device::flex(),
            description: "cpu: Flex (Burn's CPU backend)".into(),
            notice,
            is_wgpu: false,
        }
    }
}

/// Resolves `choice` to a device, initialising wgpu where asked. A wgpu choice with no
/// adapter is an error, never a silent fall-back. The result is cached per process (a wgpu
/// runtime is initialised once).
pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice, CoreError> {
    static CACHE: Mutex<Vec<(DeviceChoice, SelectedDevice)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = cache.iter().find(|(c, _)| *c == choice) {
        return Ok(d.clone());
    }
    let selected = select_uncached(choice)?;
    cache.push((choice, selected.clone()));
    Ok(selected)
}

fn select_uncached(choice: DeviceChoice) -> Result<SelectedDevice, CoreError> {
    if choice == DeviceChoice::Cpu {
        return Ok(SelectedDevice::flex(None));
    }
    let adapters = list_adapters_on(backends_of(choice));
    let (kind, adapter) = if choice == DeviceChoice::Auto {
        let pick = |ty: &str| {
            adapters
                .iter()
                .filter(|a| a.device_type == ty)
                .enumerate()
                .next()
                .map(|(i, a)| (i, a.clone()))
        };
        if let Some((i, a)) = pick("DiscreteGpu") {
            (DeviceKind::DiscreteGpu(i), a)
        } else if let Some((i, a)) = pick("IntegratedGpu") {
            (DeviceKind::IntegratedGpu(i), a)
        } else if let Some((i, a)) = pick("VirtualGpu") {
            (DeviceKind::VirtualGpu(i), a)
        } else {
            let why = if adapters.is_empty() {
                "no GPU adapter found".to_string()
            } else {
                format!(
                    "only software adapters found ({})",
                    adapters
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Ok(SelectedDevice::flex(Some(format!(
                "notice: {why}; running on the CPU (Flex). Use --device wgpu to force wgpu."
            ))));
        }
    } else {
        let Some(a) = adapters.first().cloned() else {
            return Err(CoreError::Device(format!(
                "--device {choice}: no wgpu adapter found. Install a Vulkan driver (on Linux \
                 without a GPU: `apt-get install mesa-vulkan-drivers libvulkan1` for lavapipe) \
                 or use --device cpu"
            )));
        };
        (DeviceKind::DefaultDevice, a)
    };
    let api = match choice {
        DeviceChoice::Vulkan => WgpuBackend::Vulkan,
        DeviceChoice::Metal => WgpuBackend::Metal,
        DeviceChoice::Dx12 => WgpuBackend::Dx12,
        _ => WgpuBackend::Auto,
    };
    let device = match Device::wgpu_options()
        .device_kind(kind.clone())
        .graphics_api(api)
        .init()
    {
        Ok(d) => d,
        // Something asked for `Device::default()` first (Burn's optimizer-state loading
        // does): that runtime is up with the default options; use it.
        Err(e) if format!("{e:?}").contains("already initialized") => Device::wgpu(kind),
        Err(e) => {
            return Err(CoreError::Device(format!(
                "--device {choice}: wgpu initialisation failed: {e}"
            )));
        }
    };
    Ok(SelectedDevice {
        device,
        description: format!(
            "wgpu: {} ({}, {})",
            adapter.name, adapter.backend, adapter.device_type
        ),
        notice: None,
        is_wgpu: true,
    })
}
