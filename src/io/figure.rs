//! [`Figure`]: one picture of a run, as its report draws it and its TensorBoard log shows it.

/// A picture of a run: its file in the run folder, its PNG bytes, the caption the report gives
/// it, and the TensorBoard tag it is logged under at the end of the run (`None`: not logged).
pub struct Figure {
    pub file: &'static str,
    pub tag: Option<&'static str>,
    pub png: Vec<u8>,
    pub caption: String,
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} bytes)", self.file, self.png.len())
    }
}
