//! The optimizers' step count and learning rate as tensors on the training device
//! ([`DeviceScalars`]), for updates that read nothing back to the host: what a training step
//! captured in a CUDA graph needs, where a schedule changes the rate by writing into its
//! tensor rather than by re-capturing. [`Optimizer::update_on_device`] gives the same updates as
//! [`Optimizer::update`] (within rounding; tested below).

use super::Optimizer;
use tch::{Device, Kind, Tensor};

/// The step count and the learning rate, as 0-dimensional float64 tensors on the device.
pub struct DeviceScalars {
    /// Updates taken so far (counted on the device: a replayed graph runs no host code).
    pub step: Tensor,
    pub learning_rate: Tensor,
}

impl DeviceScalars {
    pub fn new(device: Device, learning_rate: f64, steps_taken: i64) -> Self {
        Self {
            step: Tensor::full([], steps_taken as f64, (Kind::Double, device)),
            learning_rate: Tensor::full([], learning_rate, (Kind::Double, device)),
        }
    }

    /// Writes the rate into its tensor (no new tensor: a captured graph keeps reading it).
    pub fn set_lr(&mut self, learning_rate: f64) {
        let _ = self.learning_rate.fill_(learning_rate);
    }
}

/// A number an update scales by: an `f64` on the host (the eager updates, whose results stay
/// bit for bit those of earlier versions), or a 0-dimensional tensor on the device.
pub trait Factor {
    /// `tensor /= self`, in place.
    fn divide(&self, tensor: &mut Tensor);
    /// `tensor *= self`, in place.
    fn scale(&self, tensor: &mut Tensor);
    /// `tensor × self`, a new tensor.
    fn times(&self, tensor: &Tensor) -> Tensor;
}

impl Factor for f64 {
    fn divide(&self, tensor: &mut Tensor) {
        let _ = tensor.g_div_scalar_(*self);
    }

    fn scale(&self, tensor: &mut Tensor) {
        let _ = tensor.g_mul_scalar_(*self);
    }

    fn times(&self, tensor: &Tensor) -> Tensor {
        tensor * *self
    }
}

impl Factor for Tensor {
    fn divide(&self, tensor: &mut Tensor) {
        let _ = tensor.g_div_(self);
    }

    fn scale(&self, tensor: &mut Tensor) {
        let _ = tensor.g_mul_(self);
    }

    fn times(&self, tensor: &Tensor) -> Tensor {
        tensor * self
    }
}

/// `1 − baseᵗ` for the step count `t` held in `step`, computed on its device.
pub fn one_minus_power(base: f64, step: &Tensor) -> Tensor {
    -(step * base.ln()).exp() + 1.0
}

impl Optimizer {
    /// [`Optimizer::update`] with the step count and the learning rate taken from `scalars`,
    /// whose step it advances: nothing is read back to the host.
    pub fn update_on_device(&mut self, scalars: &mut DeviceScalars) {
        tch::no_grad(|| {
            let _ = scalars.step.g_add_scalar_(1.0);
            match self {
                Self::Adam(adam) => adam.update_on_device(scalars),
                Self::Sgd(sgd) => sgd.update_on_device(scalars),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OptimizerKind, Parameter, Settings};
    use super::*;

    fn parameters(seed: i64) -> Vec<Parameter> {
        tch::manual_seed(seed);
        ["conv1.weight", "conv1.bias", "fc.weight"]
            .iter()
            .map(|name| Parameter {
                name: (*name).to_owned(),
                tensor: Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true),
                decays: name.ends_with("weight"),
            })
            .collect()
    }

    /// Six steps of a loss whose gradients change every step, with the rate changed halfway
    /// (as a schedule does): the parameters after each way of updating.
    fn trained(settings: Settings, on_device: bool) -> Vec<Tensor> {
        let parameters = parameters(7);
        let tensors: Vec<Tensor> = parameters
            .iter()
            .map(|p| p.tensor.shallow_clone())
            .collect();
        let mut optimizer = Optimizer::new(parameters, settings, 1e-2);
        let mut scalars = DeviceScalars::new(Device::Cpu, 1e-2, 0);
        for step in 0..6 {
            if step == 3 {
                optimizer.set_lr(3e-3);
                scalars.set_lr(3e-3);
            }
            optimizer.zero_grad();
            let loss = tensors
                .iter()
                .map(|t| (t * t * t).sum(Kind::Float) * (step as f64 + 1.0).sin())
                .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
            loss.backward();
            match on_device {
                true => optimizer.update_on_device(&mut scalars),
                false => optimizer.update(),
            }
        }
        assert_eq!(
            scalars.step.double_value(&[]),
            if on_device { 6.0 } else { 0.0 }
        );
        tensors.iter().map(|t| t.detach().copy()).collect()
    }

    #[test]
    fn device_side_updates_match_the_host_ones_within_1e_6_over_six_steps() {
        let sgd = |momentum, nesterov, weight_decay| Settings {
            kind: OptimizerKind::Sgd,
            momentum,
            nesterov,
            weight_decay,
            ..Settings::default()
        };
        let cases = [
            ("adam", Settings::default()),
            (
                "adam, L2 decay",
                Settings {
                    weight_decay: 0.05,
                    ..Settings::default()
                },
            ),
            (
                "adamw",
                Settings {
                    kind: OptimizerKind::AdamW,
                    weight_decay: 0.01,
                    ..Settings::default()
                },
            ),
            ("sgd", sgd(0.0, false, 0.0)),
            ("sgd, momentum", sgd(0.9, false, 0.0)),
            ("sgd, nesterov, decay", sgd(0.9, true, 1e-3)),
        ];
        for (name, settings) in cases {
            let host = trained(settings, false);
            let device = trained(settings, true);
            for (h, d) in host.iter().zip(&device) {
                let difference = (h - d).abs().max().double_value(&[]);
                assert!(difference < 1e-6, "{name}: {difference}");
            }
            let moved = (&host[0] - &parameters(7)[0].tensor)
                .abs()
                .max()
                .double_value(&[]);
            assert!(moved > 1e-3, "{name}: the parameters did not move");
        }
    }

    #[test]
    fn bias_corrections_on_the_device_are_the_host_ones() {
        let step = Tensor::full([], 5.0, (Kind::Double, Device::Cpu));
        let device = one_minus_power(0.999, &step).double_value(&[]);
        assert!((device - (1.0 - 0.999f64.powf(5.0))).abs() < 1e-15);
    }
}
