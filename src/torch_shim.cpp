// The calls of libtorch that tch 0.24 does not bind: turning autocast on for a device (tch's
// binding covers CUDA only) and choosing its low-precision type (bf16 or fp16); and the
// switches of deterministic computation (cuDNN's deterministic mode and libtorch's deterministic
// algorithms). Built by build.rs with the cc crate against the headers of the libtorch that tch
// links.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Turns autocast on for the device (CUDA when `cuda`, else the CPU) in `bf16` (else fp16) and
// enters one level of nesting. Returns the state to restore: bit 0 whether autocast was on,
// the other bits the previous dtype. Returns -1 when libtorch threw.
int mnist_cnn_autocast_enter(int cuda, int bf16) {
  try {
    const auto device = device_type(cuda);
    const int was_on = at::autocast::is_autocast_enabled(device) ? 1 : 0;
    const int previous = static_cast<int>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return was_on | (previous << 1);
  } catch (...) {
    return -1;
  }
}

// Leaves the nesting level `mnist_cnn_autocast_enter` entered (dropping the cast weights when it
// was the outermost) and restores the state it returned.
void mnist_cnn_autocast_exit(int cuda, int saved) {
  try {
    const auto device = device_type(cuda);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, (saved & 1) != 0);
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(saved >> 1));
  } catch (...) {
  }
}

// Deterministic computation on or off: cuDNN's deterministic algorithms with its benchmark
// search off (the search may pick another algorithm each run), and libtorch's deterministic
// algorithms. `warn_only`: an operation without a deterministic kernel warns instead of
// throwing. Returns 0, or -1 when libtorch threw.
int mnist_cnn_set_deterministic(int on, int warn_only) {
  try {
    auto& context = at::globalContext();
    context.setDeterministicCuDNN(on != 0);
    context.setBenchmarkCuDNN(on == 0 && context.benchmarkCuDNN());
    context.setDeterministicAlgorithms(on != 0, warn_only != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Whether libtorch's deterministic algorithms and cuDNN's deterministic mode are both on, and
// cuDNN's benchmark search off: 1, else 0.
int mnist_cnn_is_deterministic() {
  const auto& context = at::globalContext();
  return context.deterministicAlgorithms() && context.deterministicCuDNN() &&
                 !context.benchmarkCuDNN()
             ? 1
             : 0;
}

}  // extern "C"
