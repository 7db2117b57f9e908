//! `mnist-cnn info`: the tch and libtorch versions, CUDA and cuDNN, devices and threads, the
//! CPU's vector extensions, and what `--precision auto` would pick.

use super::output::print_json;
use crate::machine::CpuFeatures;
use crate::precision::{self, AutoChoice};
use crate::runtime::RuntimeInfo;
use anyhow::Result;
use serde::Serialize;
use tch::Device;

/// `info --json`.
#[derive(Debug, Serialize)]
struct InfoOutput {
    #[serde(flatten)]
    runtime: RuntimeInfo,
    cpu: CpuFeatures,
    /// `--precision auto` on the CPU, and on the first CUDA device when there is one.
    precision_auto_cpu: AutoChoice,
    #[serde(skip_serializing_if = "Option::is_none")]
    precision_auto_cuda: Option<AutoChoice>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let info = RuntimeInfo::collect();
    let cpu = CpuFeatures::detect();
    let auto_cpu = precision::auto(Device::Cpu);
    let auto_cuda = info
        .cuda_available
        .then(|| precision::auto(Device::Cuda(0)));
    if args.json {
        return print_json(&InfoOutput {
            runtime: info,
            cpu,
            precision_auto_cpu: auto_cpu,
            precision_auto_cuda: auto_cuda,
        });
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
    println!("CPU                {}", cpu.model);
    println!("CPU extensions     {}", cpu.describe());
    let auto = |choice: &AutoChoice| format!("{} ({})", choice.precision, choice.reason);
    println!("precision auto     {} on the CPU", auto(&auto_cpu));
    if let Some(choice) = &auto_cuda {
        println!("                   {} on cuda:0", auto(choice));
    }
    Ok(())
}
