//! Checks of loaded tensors that every weights reader shares.

use candle_core::Tensor;

/// The first NaN/Inf value of a float tensor, if any.
pub fn first_non_finite(t: &Tensor) -> Option<f32> {
    if !t.dtype().is_float() {
        return None;
    }
    let v = t
        .flatten_all()
        .ok()?
        .to_dtype(candle_core::DType::F32)
        .ok()?
        .to_vec1::<f32>()
        .ok()?;
    v.into_iter().find(|x| !x.is_finite())
}
