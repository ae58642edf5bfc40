//! Devices: `"cpu"`, `"cuda"` (this rank's GPU: `cuda:LOCAL_RANK`, the first in a run of one),
//! `"cuda:N"`, checked against what this machine has.

use anyhow::{bail, Result};
use tch::{Device, Kind};

use super::dtype::{dtype_names, parse_dtype};

/// Parses a device name. CUDA names are errors when CUDA is unavailable or the index is out of
/// range, so that a recipe fails at the call that asked, not deep inside libtorch.
pub fn parse_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => return Ok(Device::Cpu),
        // This rank's GPU, as torchrun's ranks take `cuda:LOCAL_RANK`: the first in a run of one.
        "cuda" => crate::dist::world::place().map(|p| p.local_rank).unwrap_or(0),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => index,
            _ => bail!("unknown device '{name}' (expected 'cpu', 'cuda' or 'cuda:N')"),
        },
    };
    if !tch::Cuda::is_available() {
        bail!("device '{name}' asked for, but CUDA is not available on this machine");
    }
    let count = tch::Cuda::device_count() as usize;
    if device >= count && name == "cuda" {
        bail!("device 'cuda' is local rank {device}'s GPU, but this machine has {count} CUDA device(s): start at most {count} ranks per machine, or name a device ('cuda:N')");
    }
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

/// A dtype or a device, as `to("bf16")` or `to("cuda")` take one name for either.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Placement {
    Dtype(Kind),
    Device(Device),
}

/// Parses a name that is a dtype or a device; an unknown one is an error listing both.
pub fn parse_placement(name: &str) -> Result<Placement> {
    if let Ok(kind) = parse_dtype(name) {
        return Ok(Placement::Dtype(kind));
    }
    if name == "cpu" || name == "cuda" || name.starts_with("cuda:") {
        return Ok(Placement::Device(parse_device(name)?));
    }
    bail!("unknown dtype or device '{name}' (dtypes: {}; devices: cpu, cuda, cuda:N)", dtype_names().join(", "))
}
