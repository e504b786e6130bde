//! Choosing where the model runs: a GPU through burn-wgpu (Vulkan, Metal, DX12) or the CPU
//! through burn's flex backend, always with the reason for the choice.

use std::sync::OnceLock;

use burn::tensor::Device;

use crate::{EngineError, Result};

/// What the user asked for (`--device auto|gpu|cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl DeviceChoice {
    /// The name `FromStr` reads (`auto`, `gpu`, `cpu`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Gpu => "gpu",
            DeviceChoice::Cpu => "cpu",
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => Err(format!("unknown device `{other}` (auto, gpu or cpu)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Gpu,
    Cpu,
}

/// The device chosen, what it is, and why it was chosen.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub kind: DeviceKind,
    /// e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, software)" or "CPU (flex, 2 threads)"
    pub name: String,
    pub reason: String,
}

/// The GPU adapter wgpu found.
#[derive(Debug, Clone)]
pub struct GpuAdapter {
    pub name: String,
    pub backend: String,
    /// A software rasterizer (lavapipe/llvmpipe, WARP): works, but slower than the CPU backend.
    pub software: bool,
}

static WGPU: OnceLock<std::result::Result<(Device, GpuAdapter), String>> = OnceLock::new();

fn init_wgpu() -> &'static std::result::Result<(Device, GpuAdapter), String> {
    WGPU.get_or_init(|| {
        let attempt = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
        match attempt {
            Ok(Ok((device, setup))) => {
                let info = setup.adapter.get_info();
                let software = info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu;
                Ok((
                    device,
                    GpuAdapter {
                        name: info.name.clone(),
                        backend: format!("{:?}", info.backend),
                        software,
                    },
                ))
            }
            Ok(Err(e)) => Err(format!("no usable GPU adapter: {e}")),
            Err(_) => Err("no usable GPU adapter (wgpu initialisation panicked)".to_string()),
        }
    })
}

/// The GPU adapter, if wgpu finds one.
pub fn gpu_adapter() -> std::result::Result<GpuAdapter, String> {
    init_wgpu()
        .as_ref()
        .map(|(_, a)| a.clone())
        .map_err(Clone::clone)
}

fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn cpu_device(reason: impl Into<String>) -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        kind: DeviceKind::Cpu,
        name: format!("CPU (flex, {} threads)", cpu_threads()),
        reason: reason.into(),
    }
}

/// The wgpu device, whatever kind of adapter it is.
pub fn wgpu_device() -> Result<SelectedDevice> {
    match init_wgpu() {
        Ok((device, adapter)) => Ok(SelectedDevice {
            device: device.clone(),
            kind: DeviceKind::Gpu,
            name: format!(
                "{} ({}{})",
                adapter.name,
                adapter.backend,
                if adapter.software { ", software" } else { "" }
            ),
            reason: "GPU requested".into(),
        }),
        Err(e) => Err(EngineError::Device(e.clone())),
    }
}

/// Resolves a device choice. `auto` takes a hardware GPU when wgpu finds one, else the CPU.
pub fn select(choice: DeviceChoice) -> Result<SelectedDevice> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu_device("CPU requested")),
        DeviceChoice::Gpu => wgpu_device(),
        DeviceChoice::Auto => match init_wgpu() {
            Ok((_, adapter)) if !adapter.software => {
                let mut d = wgpu_device()?;
                d.reason = format!("auto: hardware GPU adapter `{}` found", adapter.name);
                Ok(d)
            }
            Ok((_, adapter)) => Ok(cpu_device(format!(
                "auto: the only GPU adapter is `{}`, a software rasterizer slower than the CPU backend",
                adapter.name
            ))),
            Err(e) => Ok(cpu_device(format!("auto: {e}"))),
        },
    }
}
