//! How the networks name their parameters: PyTorch's state-dict names (`conv1.weight`,
//! `bn1.running_mean`, `fc.bias`), so that weights move between this tool and the equivalent
//! `torch.nn.Module` without renaming. Everything that asks "which layer is this tensor in"
//! asks here.

/// The first convolution: its kernels are the filters the report draws.
pub const FIRST_CONVOLUTION: &str = "conv1";
/// The batch norm that follows the first convolution in `vgg-N`.
pub const FIRST_BATCH_NORM: &str = "bn1";
/// The dense layer that gives the ten logits.
pub const HEAD: &str = "fc";

/// `conv{index}`, counted from 1.
pub fn convolution(index: usize) -> String {
    format!("conv{index}")
}

/// `bn{index}`, the batch norm after `conv{index}`.
pub fn batch_norm(index: usize) -> String {
    format!("bn{index}")
}

/// The weight tensor of a layer (`conv1` → `conv1.weight`).
pub fn weight_of(layer: &str) -> String {
    format!("{layer}.weight")
}

/// The layer a parameter belongs to: `conv1.weight` → `conv1`.
pub fn layer_of(parameter: &str) -> &str {
    parameter.split('.').next().unwrap_or(parameter)
}

/// Whether a parameter belongs to the first convolution or its batch norm.
pub fn in_first_convolution(parameter: &str) -> bool {
    let layer = layer_of(parameter);
    layer == FIRST_CONVOLUTION || layer == FIRST_BATCH_NORM
}

/// Whether a parameter belongs to the dense head.
pub fn in_head(parameter: &str) -> bool {
    layer_of(parameter) == HEAD
}

/// Batch-norm buffers: estimated during training, not learned by gradient.
pub fn is_running_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// Names of the batch-norm buffers PyTorch keeps and this tool does not (`num_batches_tracked`:
/// a step counter, unused when the momentum is set).
pub fn is_pytorch_only_buffer(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// PyTorch's step counter of a batch-norm layer (`bn1` → `bn1.num_batches_tracked`).
pub fn batches_tracked_of(layer: &str) -> String {
    format!("{layer}.num_batches_tracked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_told_by_the_name_before_the_dot() {
        assert_eq!(layer_of("conv1.weight"), "conv1");
        assert!(in_first_convolution("conv1.bias") && in_first_convolution("bn1.running_var"));
        assert!(!in_first_convolution("conv10.weight") && !in_first_convolution("conv2.weight"));
        assert!(in_head("fc.weight") && !in_head("fc2.weight"));
        assert!(is_running_statistic("bn3.running_mean") && !is_running_statistic("bn3.bias"));
        assert_eq!(weight_of(&convolution(1)), "conv1.weight");
        assert_eq!(
            batches_tracked_of(&batch_norm(2)),
            "bn2.num_batches_tracked"
        );
    }
}
