//! Host → device uploads, counted.
//!
//! Every tensor petal fills from host memory during training goes through [`upload`]: the
//! packed images and per-sample parameters of the augmentation, the labels, the mixed
//! targets. On a GPU (a CubeCL device) it adds the tensor's bytes to a process-wide
//! counter that `bench train-step` reads before and after a step
//! (`host_to_device_bytes_per_step`); on the CPU (Flex) nothing crosses a bus and nothing
//! is counted. Not counted: the few hundred bytes of shapes, strides and scalars CubeCL
//! writes per kernel launch.
//!
//! [`device_limits`] tells how big one device buffer may be (the device-resident image
//! cache must fit one binding).

use burn::backend::DispatchDevice;
use burn::tensor::kind::Basic;
use burn::tensor::{Device, Tensor, TensorCreationOptions, TensorData};
use std::sync::atomic::{AtomicU64, Ordering};

static UPLOADED: AtomicU64 = AtomicU64::new(0);

/// Whether `device` is a GPU device (CubeCL: petal compiles the wgpu runtime), where an
/// upload crosses to device memory.
pub fn is_gpu(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Cube(_)
    )
}

/// `Tensor::from_data(data, options)`, counting the created tensor's bytes on a GPU
/// device.
pub fn upload<const D: usize, K: Basic>(
    data: TensorData,
    options: impl Into<TensorCreationOptions>,
) -> Tensor<D, K> {
    let t = Tensor::<D, K>::from_data(data, options);
    if is_gpu(&t.device()) {
        let bytes = t.shape().num_elements() * t.dtype().size();
        UPLOADED.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    t
}

/// Bytes [`upload`] has sent to GPU devices since the process started (all threads).
pub fn uploaded_bytes() -> u64 {
    UPLOADED.load(Ordering::Relaxed)
}

/// Buffer limits of a GPU device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// The largest single buffer (binding) the adapter grants, in bytes
    /// (`min(max_storage_buffer_binding_size, max_buffer_size)` on wgpu).
    pub max_buffer: u64,
    /// The memory the runtime states the device may be asked to hold, where it states one.
    pub max_memory: Option<u64>,
}

/// The buffer limits of `device`; `None` off the GPU (Flex).
pub fn device_limits(device: &Device) -> Option<DeviceLimits> {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Cube(d) => {
            let props = d.client().properties_shared();
            Some(DeviceLimits {
                max_buffer: props.memory.max_page_size,
                max_memory: props.memory.max_memory(),
            })
        }
        _ => None,
    }
}
