//! The `mnist-cnn` binary: everything is in the library's [`mnist_cnn::cli`].

fn main() -> std::process::ExitCode {
    mnist_cnn::cli::main()
}
