//! Gradient clipping by the global L2 norm, as `torch.nn.utils.clip_grad_norm_` does: the norm
//! of all gradients together is the norm of their per-tensor norms, and when it exceeds the
//! limit every gradient is scaled by limit / (norm + 1e-6).

use tch::{Kind, Tensor};

/// Clips the gradients of `parameters` to a global norm of at most `max_norm`; returns the norm
/// before clipping (a scalar on the device, so that reading it does not wait for the device).
pub fn clip_grad_norm(parameters: &[&Tensor], max_norm: f64) -> Tensor {
    let grads: Vec<Tensor> = parameters
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect();
    if grads.is_empty() {
        return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
    }
    tch::no_grad(|| {
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.norm_scalaropt_dim(2, [0i64; 0].as_slice(), false))
            .collect();
        let total = Tensor::stack(&norms, 0).norm_scalaropt_dim(2, [0i64; 0].as_slice(), false);
        // The factor is clamped to 1, so gradients under the limit are multiplied by exactly 1.
        let factor = (max_norm / (&total + 1e-6)).clamp_max(1.0);
        for grad in &grads {
            let _ = grad.shallow_clone().g_mul_(&factor);
        }
        total
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_grad(values: &[f32]) -> Tensor {
        let p = Tensor::from_slice(values).set_requires_grad(true);
        (&p * &p).sum(Kind::Float).backward(); // gradient 2p
        p
    }

    #[test]
    fn the_global_norm_is_clipped_and_returned() {
        let (a, b) = (with_grad(&[3.0]), with_grad(&[4.0])); // gradients 6 and 8: norm 10
        let norm = clip_grad_norm(&[&a, &b], 5.0);
        assert!((norm.double_value(&[]) - 10.0).abs() < 1e-6);
        let clipped: Vec<f64> = [&a, &b]
            .iter()
            .map(|p| p.grad().double_value(&[0]))
            .collect();
        assert!((clipped[0] - 3.0).abs() < 1e-5 && (clipped[1] - 4.0).abs() < 1e-5);
        // Under the limit, nothing changes.
        let c = with_grad(&[1.0]);
        let _ = clip_grad_norm(&[&c], 5.0);
        assert_eq!(c.grad().double_value(&[0]), 2.0);
    }
}
