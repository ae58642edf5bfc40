//! Devices: `"cpu"`, `"cuda"`, `"cuda:N"`, checked against what this machine has.

use anyhow::{bail, Result};
use tch::Device;

/// Parses a device name. CUDA names are errors when CUDA is unavailable or the index is out of
/// range, so that a recipe fails at the call that asked, not deep inside libtorch.
pub fn parse_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => index,
            _ => bail!("unknown device '{name}' (expected 'cpu', 'cuda' or 'cuda:N')"),
        },
    };
    if !tch::Cuda::is_available() {
        bail!("device '{name}' asked for, but CUDA is not available on this machine");
    }
    let count = tch::Cuda::device_count() as usize;
    if device >= count {
        bail!("device '{name}' asked for, but this machine has {count} CUDA device(s)");
    }
    Ok(Device::Cuda(device))
}

/// The name of a device as scripts write it (`"cpu"`, `"cuda:0"`).
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(index) => format!("cuda:{index}"),
        Device::Mps => "mps".to_string(),
        Device::Vulkan => "vulkan".to_string(),
    }
}
