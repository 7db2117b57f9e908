//! `mnist-cnn info`: the tch and libtorch versions, CUDA and cuDNN, devices and threads.

use super::output::print_json;
use crate::runtime::RuntimeInfo;
use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let info = RuntimeInfo::collect();
    if args.json {
        return print_json(&info);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let version = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!("mnist-cnn          {}", info.mnist_cnn_version);
    println!("tch                {}", info.tch_version);
    println!("libtorch           {}", info.libtorch_version);
    println!("CUDA available     {}", yes_no(info.cuda_available));
    println!("CUDA devices       {}", info.cuda_device_count);
    println!("CUDA runtime       {}", version(info.cuda_runtime_version));
    println!("cuDNN available    {}", yes_no(info.cudnn_available));
    println!("cuDNN version      {}", version(info.cudnn_version));
    println!("intra-op threads   {}", info.intra_op_threads);
    println!("inter-op threads   {}", info.inter_op_threads);
    println!("MKL-DNN (oneDNN)   {}", yes_no(info.mkldnn));
    println!("OpenMP             {}", yes_no(info.openmp));
    Ok(())
}
