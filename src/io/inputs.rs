//! The files a command reads, collected so that none of its outputs can replace one of them:
//! `--model` and the `config.json` read beside it, `--data`'s four MNIST files, pictures,
//! settings files and `--from`. Files are compared by device and inode
//! ([`fsutil::refuse_overwriting`]), so another spelling of the path or a link is caught too.

use super::run_folder::{model_file, CONFIG_FILE};
use crate::data::MNIST_FILES;
use crate::fsutil;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What a command reads.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    files: Vec<PathBuf>,
}

impl Inputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// One file read as it is (a picture, a settings file).
    pub fn file(mut self, path: &Path) -> Self {
        self.files.push(path.to_owned());
        self
    }

    /// Files read as they are.
    pub fn files<'a>(self, paths: impl IntoIterator<Item = &'a PathBuf>) -> Self {
        paths
            .into_iter()
            .fold(self, |inputs, path| inputs.file(path))
    }

    /// A checkpoint (a run folder stands for its model.ot), and the run's config.json beside it
    /// (read for its architecture).
    pub fn checkpoint(self, path: &Path) -> Self {
        let path = model_file(path).unwrap_or_else(|_| path.to_owned());
        let folder = path.parent().unwrap_or(Path::new("."));
        self.file(&path).file(&folder.join(CONFIG_FILE))
    }

    /// Checkpoints, each with its config.json.
    pub fn checkpoints<'a>(self, paths: impl IntoIterator<Item = &'a PathBuf>) -> Self {
        paths
            .into_iter()
            .fold(self, |inputs, path| inputs.checkpoint(path))
    }

    /// The four MNIST files in `dir`.
    pub fn mnist(self, dir: &Path) -> Self {
        MNIST_FILES
            .iter()
            .fold(self, |inputs, file| inputs.file(&dir.join(file.name)))
    }

    /// Refuses `output` (given by `flag`) when it is one of the inputs.
    pub fn refuse(&self, output: &Path, flag: &str) -> Result<()> {
        let inputs: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        fsutil::refuse_overwriting(output, flag, &inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoints_config_and_the_data_files_are_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let data = dir.path().join("mnist");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        for name in ["model.ot", "config.json"] {
            std::fs::write(run.join(name), b"x").unwrap();
        }
        std::fs::write(data.join("t10k-labels-idx1-ubyte"), b"x").unwrap();
        std::fs::write(dir.path().join("other.png"), b"x").unwrap();
        let inputs = Inputs::new().checkpoint(&run.join("model.ot")).mnist(&data);
        for (output, input) in [
            (run.join("config.json"), "config.json"),
            (run.join("./model.ot"), "model.ot"),
            (data.join("t10k-labels-idx1-ubyte"), "t10k-labels"),
        ] {
            let err = inputs.refuse(&output, "--out").unwrap_err().to_string();
            assert!(
                err.contains("an input of this command") && err.contains(input),
                "{err}"
            );
        }
        assert!(inputs
            .refuse(&dir.path().join("other.png"), "--out")
            .is_ok());
        assert!(inputs.refuse(&dir.path().join("new.png"), "--out").is_ok());
    }
}
