//! Moving f32 data between Flex tensors and petal's CPU kernels (shared by the
//! convolution and BatchNorm backends).

use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};

/// The values of a contiguous f32 tensor (`to_contiguous` first: it returns the same
/// buffer unless the tensor is a strided view).
pub(crate) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (made contiguous by the caller)")
}

/// A new f32 tensor owning `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}
