//! Fine-tuning on a folder of pictures: MNIST digits rendered the way real pictures differ from
//! MNIST (dark ink on light, noisy paper, 64 px and larger, off-centre, some RGB, some JPEG).

use crate::common::*;
use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage};
use std::fs;
use std::path::Path;

/// Reads `count` MNIST test digits (pixels, label) from the real data.
fn mnist_test_digits(count: usize) -> Vec<(Vec<u8>, u8)> {
    let dir = real_mnist_dir();
    let images = fs::read(dir.join("t10k-images-idx3-ubyte")).unwrap();
    let labels = fs::read(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    (0..count)
        .map(|i| {
            (
                images[16 + i * 784..16 + (i + 1) * 784].to_vec(),
                labels[8 + i],
            )
        })
        .collect()
}

/// Renders digit `i` as a "photo": scaled to 64–112 px, placed off-centre on a larger canvas,
/// dark on light paper for most (light on dark for every fourth), with paper noise.
fn render(pixels: &[u8], i: usize) -> GrayImage {
    let side = 64 + (i * 16) % 64;
    let canvas_w = side as u32 + 40 + (i % 3) as u32 * 20;
    let canvas_h = side as u32 + 30 + (i % 5) as u32 * 10;
    let (off_x, off_y) = ((i * 7) % 40, (i * 11) % 30);
    let dark_on_light = !i.is_multiple_of(4);
    let paper = if dark_on_light {
        200.0 + (i % 40) as f32
    } else {
        25.0
    };
    GrayImage::from_fn(canvas_w, canvas_h, |x, y| {
        let noise = ((x * 7919 + y * 104_729 + i as u32 * 31) % 23) as f32 - 11.0;
        let (dx, dy) = (x as i64 - off_x as i64, y as i64 - off_y as i64);
        let ink = if (0..side as i64).contains(&dx) && (0..side as i64).contains(&dy) {
            // Nearest-neighbour upscaling of the 28×28 digit.
            let (sx, sy) = (dx as usize * 28 / side, dy as usize * 28 / side);
            pixels[sy * 28 + sx] as f32 / 255.0
        } else {
            0.0
        };
        let value = if dark_on_light {
            paper * (1.0 - ink) + 15.0 * ink
        } else {
            paper * (1.0 - ink) + 235.0 * ink
        };
        Luma([(value + noise).clamp(0.0, 255.0) as u8])
    })
}

fn save_picture(grey: GrayImage, i: usize, dir: &Path) {
    let rgb = i.is_multiple_of(3);
    let jpeg = i.is_multiple_of(5);
    let path = dir.join(format!("digit-{i:04}.{}", if jpeg { "jpg" } else { "png" }));
    let picture = if rgb {
        // A blue-ish ink on cream paper: colour, not just grey.
        DynamicImage::ImageRgb8(RgbImage::from_fn(grey.width(), grey.height(), |x, y| {
            let v = grey.get_pixel(x, y).0[0];
            Rgb([v, v.saturating_sub(10), v.saturating_add(20)])
        }))
    } else {
        DynamicImage::ImageLuma8(grey)
    };
    let format = if jpeg {
        ImageFormat::Jpeg
    } else {
        ImageFormat::Png
    };
    picture.save_with_format(path, format).unwrap();
}

/// Writes the folder DIR/<digit>/digit-NNNN.{png,jpg}.
fn render_folder(dir: &Path, digits: &[(Vec<u8>, u8)]) {
    for (i, (pixels, label)) in digits.iter().enumerate() {
        let class_dir = dir.join(label.to_string());
        fs::create_dir_all(&class_dir).unwrap();
        save_picture(render(pixels, i), i, &class_dir);
    }
}

#[test]
fn finetuning_on_rendered_pictures_beats_the_starting_model_and_skips_a_corrupt_one() {
    let scratch = tempfile::tempdir().unwrap();
    // A weak starting model: one epoch on 1,000 MNIST images.
    let start = scratch.path().join("start");
    train_on_real_mnist(&start, &["--limit", "1000", "--seed", "3"]);

    let folder = scratch.path().join("pictures");
    render_folder(&folder, &mnist_test_digits(600));
    fs::write(
        folder.join("7").join("corrupt.png"),
        b"\x89PNG\r\n\x1a\ntruncated",
    )
    .unwrap();

    let out = scratch.path().join("tuned");
    let mnist = real_mnist_dir();
    // At the info level, for the log's line on MNIST before and after.
    let finetune = tool()
        .env("RUST_LOG", "info")
        .args([
            "finetune",
            "--from",
            start.to_str().unwrap(), // a run folder: its model.ot
            "--images",
            folder.to_str().unwrap(),
            "--data",
            mnist.to_str().unwrap(), // MNIST's test set, scored before and after
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "6",
            "--lr",
            "1e-3",
            "--val-split",
            "0.25",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--seed",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert_success(&finetune);
    let err = stderr(&finetune);
    assert!(
        err.contains("corrupt.png"),
        "the corrupt picture is not named:\n{err}"
    );
    assert!(err.contains("600 pictures loaded, 1 skipped"), "{err}");
    let summary = stdout_json(&finetune);
    let before = summary["before"]["validation_accuracy"].as_f64().unwrap();
    let after = summary["validation_accuracy"].as_f64().unwrap();
    eprintln!("validation accuracy on the pictures: {before} before, {after} after");
    assert!(
        after > before,
        "validation accuracy went from {before} to {after}"
    );
    // What the pictures did to the model on MNIST: in the JSON, metrics.jsonl, and the log.
    let mnist_before = summary["before"]["test_accuracy"].as_f64().unwrap();
    let mnist_after = summary["test_accuracy"].as_f64().unwrap();
    assert!(mnist_before > 0.5 && mnist_after > 0.5);
    assert!(
        err.contains(&format!(
            "MNIST test accuracy (the pictures' run is judged on MNIST too): {:.2}% before",
            100.0 * mnist_before
        )),
        "{err}"
    );

    let config = read_json(&out.join("config.json"));
    assert_eq!(config["command"], "finetune");
    assert!(config["parent"]
        .as_str()
        .unwrap()
        .ends_with("start/model.ot"));
    assert_eq!(config["data"]["kind"], "images");
    assert_eq!(config["data"]["validation_examples"], 150);
    assert_eq!(
        config["before"]["validation_accuracy"].as_f64().unwrap(),
        before
    );
    let first = &read_json_lines(&out.join("metrics.jsonl"))[0];
    assert_eq!(
        first["epoch"], 0,
        "metrics.jsonl starts with the starting checkpoint"
    );
    assert_eq!(first["validation_accuracy"].as_f64().unwrap(), before);
    assert_eq!(first["test_accuracy"].as_f64().unwrap(), mnist_before);
    assert_eq!(config["data"]["test_examples"], 10_000);
    assert_eq!(config["data"]["mnist_test"], mnist.to_str().unwrap());

    // eval --images: the same metrics and JSON as on MNIST, over every usable picture.
    let eval = mnist_cnn(&[
        "eval",
        "--model",
        out.join("model.ot").to_str().unwrap(),
        "--images",
        folder.to_str().unwrap(),
        "--json",
    ]);
    assert_success(&eval);
    let report = stdout_json(&eval);
    assert_eq!(confusion_rows(&report).iter().flatten().sum::<u64>(), 600);
    assert!(report["accuracy"].as_f64().unwrap() > 0.5);
}

/// A fine-tune on a folder that leaves digits out, with a validation split of a few pictures:
/// each thinness is named. Without MNIST at hand (none in the working folder, no --data), the
/// run has no test scores.
#[test]
fn a_thin_picture_folder_is_warned_about() {
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("start.ot");
    save_fresh_model(&model);
    let folder = scratch.path().join("pictures");
    let digits: Vec<_> = mnist_test_digits(200)
        .into_iter()
        .filter(|(_, label)| [1, 7].contains(label))
        .take(24)
        .collect();
    render_folder(&folder, &digits);
    let output = tool()
        .current_dir(scratch.path())
        .args(["finetune", "--from", "start.ot", "--images", "pictures"])
        .args([
            "--out", "tuned", "--epochs", "1", "--device", "cpu", "--json",
        ])
        .output()
        .unwrap();
    assert_success(&output);
    let err = stderr(&output);
    for words in [
        "no pictures of digit 0, 2, 3, 4, 5, 6, 8, 9",
        "pictures for validation (fewer than 20)",
        "fewer than 2 validation pictures of digit",
    ] {
        assert!(err.contains(words), "no warning {words:?}:\n{err}");
    }
    let summary = stdout_json(&output);
    assert!(summary["validation_accuracy"].is_f64());
    assert!(summary.get("test_accuracy").is_none(), "{summary}");
    // MNIST asked for where there is none: an error naming the folder, before anything runs.
    let output = tool()
        .current_dir(scratch.path())
        .args(["finetune", "--from", "start.ot", "--images", "pictures"])
        .args([
            "--data",
            "no-mnist-here",
            "--out",
            "other",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&output, &["no-mnist-here"]);
    assert!(!scratch.path().join("other").exists());
}

/// scripts/preprocess.py, the Python reference of the tool's picture preprocessing, gives the
/// tool's 28×28 input within 1/255 on rendered "photos" (grey and colour PNGs).
#[test]
fn the_python_preprocessing_gives_the_tools_input() {
    let scratch = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (pixels, _)) in mnist_test_digits(40).iter().enumerate() {
        // save_picture writes every fifth one as JPEG, whose decoders differ: PNGs only.
        let index = if i % 5 == 0 { i + 1 } else { i };
        save_picture(render(pixels, index), index, scratch.path());
        let path = scratch.path().join(format!("digit-{index:04}.png"));
        if path.exists() && !paths.contains(&path) {
            paths.push(path);
        }
    }
    assert!(paths.len() >= 30);
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let output = venv_script("preprocess.py", &args);
    let fields: Vec<Vec<f64>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(fields.len(), paths.len());
    for (path, python) in paths.iter().zip(&fields) {
        let tool = mnist_cnn::data::images::load_picture(path).unwrap();
        assert_eq!(python.len(), tool.len());
        let worst = python
            .iter()
            .zip(&tool)
            .map(|(p, t)| (p - f64::from(*t)).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1.0 / 255.0,
            "{}: a pixel differs by {worst}",
            path.display()
        );
    }
}

/// Folders given to predict: every picture under them, recursively and in sorted order
/// (hidden files and other files passed over); a folder without pictures is an error.
#[test]
fn predict_reads_folders_of_pictures() {
    let scratch = tempfile::tempdir().unwrap();
    let run = scratch.path().join("run");
    fs::create_dir(&run).unwrap();
    save_fresh_model(&run.join("model.ot"));
    let album = scratch.path().join("album");
    let digits = mnist_test_digits(3);
    for (name, (pixels, _)) in ["b.png", "a/z.PNG", "a/y/x.png"].iter().zip(&digits) {
        let path = album.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        GrayImage::from_raw(28, 28, pixels.clone())
            .unwrap()
            .save_with_format(&path, ImageFormat::Png)
            .unwrap();
    }
    fs::write(album.join("notes.txt"), "not a picture").unwrap();
    fs::write(album.join(".hidden.png"), "not a picture either").unwrap();
    let output = mnist_cnn(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--json",
        album.to_str().unwrap(),
    ]);
    assert_success(&output);
    let answers = stdout_json(&output);
    let read: Vec<&str> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = ["a/y/x.png", "a/z.PNG", "b.png"]
        .iter()
        .map(|name| album.join(name).to_str().unwrap().to_owned())
        .collect();
    assert_eq!(read, expected);

    let empty = scratch.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let output = mnist_cnn(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        empty.to_str().unwrap(),
    ]);
    assert_clean_failure(
        &output,
        &["empty", "no PNG, JPEG, GIF, BMP or WebP picture"],
    );
    let output = mnist_cnn(&[
        "predict",
        "--model",
        scratch.path().to_str().unwrap(),
        album.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &["is a folder without a model.ot"]);
}

#[test]
fn predict_answers_each_picture_and_names_the_ones_it_cannot_read() {
    let scratch = tempfile::tempdir().unwrap();
    let run = scratch.path().join("model");
    train_on_real_mnist(&run, &["--limit", "3000", "--seed", "5"]);
    let model = run.join("model.ot");
    let model = model.to_str().unwrap();

    // 40 MNIST test digits as pictures: plain 28×28 PNGs, and every other one as a "photo".
    let digits = mnist_test_digits(40);
    let mut paths = Vec::new();
    for (i, (pixels, label)) in digits.iter().enumerate() {
        let path = scratch.path().join(format!("{i:02}-{label}.png"));
        let picture = if i % 2 == 0 {
            GrayImage::from_raw(28, 28, pixels.clone()).unwrap()
        } else {
            render(pixels, i)
        };
        picture.save(&path).unwrap();
        paths.push(path.to_str().unwrap().to_owned());
    }
    let corrupt = scratch.path().join("corrupt.png");
    fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let blank = scratch.path().join("blank.png");
    GrayImage::from_pixel(60, 60, Luma([200]))
        .save(&blank)
        .unwrap();
    let seen = scratch.path().join("seen.png");

    let mut args = vec![
        "predict",
        "--model",
        model,
        "--json",
        "--top-k",
        "3",
        "--show-input",
        seen.to_str().unwrap(),
    ];
    args.extend(paths.iter().map(String::as_str));
    args.extend([corrupt.to_str().unwrap(), blank.to_str().unwrap()]);
    let output = mnist_cnn(&args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed picture makes the exit status 1"
    );
    let answers = stdout_json(&output);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 42);
    let mut correct = 0;
    for (answer, (_, label)) in answers.iter().zip(&digits) {
        let top_k = answer["top_k"].as_array().unwrap();
        assert_eq!(top_k.len(), 3);
        assert_eq!(top_k[0]["digit"], answer["digit"]);
        let p = answer["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p) && p >= top_k[1]["probability"].as_f64().unwrap());
        correct += usize::from(answer["digit"].as_u64().unwrap() == u64::from(*label));
    }
    eprintln!("{correct} of 40 pictures predicted right");
    assert!(
        correct >= 32,
        "only {correct} of 40 pictures predicted right"
    );
    assert!(answers[40]["error"]
        .as_str()
        .unwrap()
        .contains("corrupt.png"));
    assert!(answers[41]["error"].as_str().unwrap().contains("no ink"));
    assert!(stderr(&output).contains("2 of 42 pictures could not be read"));
    assert!(!stderr(&output).contains("panicked"));
    let shown = image::open(&seen).unwrap();
    assert_eq!((shown.width(), shown.height()), (280, 280));

    let text = mnist_cnn(&["predict", "--model", model, &paths[0]]);
    assert_success(&text);
    assert!(stdout(&text).contains("top 3:"), "{}", stdout(&text));
}

#[test]
fn predict_agrees_with_eval_on_mnist_digits_and_holds_up_on_photos_of_them() {
    let scratch = tempfile::tempdir().unwrap();
    let data = real_mnist_dir();
    let run = scratch.path().join("model");
    train_on_real_mnist(
        &run,
        &["--limit", "10000", "--batch-size", "64", "--seed", "7"],
    );
    let model_path = run.join("model.ot");
    // What eval computes for the first 200 test digits: the model on the MNIST tensors.
    let model = mnist_cnn::io::checkpoint::load(&model_path, tch::Device::Cpu).unwrap();
    let mnist = mnist_cnn::data::Mnist::load(&data).unwrap();
    let eval_predictions = mnist_cnn::eval::evaluate(&model, &mnist.test.first(200))
        .unwrap()
        .predictions;

    let digits = mnist_test_digits(200);
    let (plain_dir, photo_dir) = (scratch.path().join("plain"), scratch.path().join("photos"));
    fs::create_dir_all(&plain_dir).unwrap();
    fs::create_dir_all(&photo_dir).unwrap();
    let mut plain = Vec::new();
    let mut photos = Vec::new();
    for (i, (pixels, _)) in digits.iter().enumerate() {
        let path = plain_dir.join(format!("{i:03}.png"));
        GrayImage::from_raw(28, 28, pixels.clone())
            .unwrap()
            .save(&path)
            .unwrap();
        plain.push(path.to_str().unwrap().to_owned());
        save_picture(render(pixels, i), i, &photo_dir);
        let ext = if i.is_multiple_of(5) { "jpg" } else { "png" };
        photos.push(
            photo_dir
                .join(format!("digit-{i:04}.{ext}"))
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let predicted = |paths: &[String]| -> Vec<i64> {
        let mut args = vec!["predict", "--model", model_path.to_str().unwrap(), "--json"];
        args.extend(paths.iter().map(String::as_str));
        let output = mnist_cnn(&args);
        assert_success(&output);
        stdout_json(&output)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["digit"].as_i64().unwrap())
            .collect()
    };
    let plain_predictions = predicted(&plain);
    let agree = plain_predictions
        .iter()
        .zip(&eval_predictions)
        .filter(|(a, b)| a == b)
        .count();
    let accuracy = |predictions: &[i64]| {
        predictions
            .iter()
            .zip(&digits)
            .filter(|(p, (_, label))| **p == i64::from(*label))
            .count() as f64
            / 200.0
    };
    let photo_accuracy = accuracy(&predicted(&photos));
    let plain_accuracy = accuracy(&plain_predictions);
    eprintln!(
        "predict agrees with eval on {agree}/200; accuracy {plain_accuracy} plain, {photo_accuracy} photos"
    );
    assert!(
        agree >= 198,
        "predict agrees with eval on only {agree} of 200 digits"
    );
    // Photos within two points of the plain digits, as the issue asks.
    assert!(
        photo_accuracy >= plain_accuracy - 0.02,
        "photos {photo_accuracy} vs plain {plain_accuracy}"
    );
}

/// Digit `pixels` three times larger, as ink coverage 0–255 (255 = full ink).
fn enlarged_ink(pixels: &[u8]) -> (u32, u32, Vec<u8>) {
    let side = 84u32;
    let ink = (0..side * side)
        .map(|i| pixels[((i / side) / 3 * 28 + (i % side) / 3) as usize])
        .collect();
    (side, side, ink)
}

#[test]
fn odd_but_valid_pictures_are_read_and_broken_ones_fail_one_by_one() {
    let scratch = tempfile::tempdir().unwrap();
    let run = scratch.path().join("model");
    train_on_real_mnist(&run, &["--limit", "3000", "--seed", "5"]);
    let model = run.join("model.ot");
    let dir = scratch.path();
    let digits = mnist_test_digits(2);
    let (w, h, ink) = enlarged_ink(&digits[0].0);
    let paper = |v: u8| 255 - v; // dark ink on white paper

    // Valid pictures of the same digit in unusual encodings: each must give the same answer as
    // the plain 8-bit PNG.
    let plain = dir.join("plain.png");
    GrayImage::from_fn(w, h, |x, y| Luma([paper(ink[(y * w + x) as usize])]))
        .save(&plain)
        .unwrap();
    image::ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
        Luma([u16::from(paper(ink[(y * w + x) as usize])) * 257])
    })
    .save(dir.join("grey16.png"))
    .unwrap();
    // Black strokes on a transparent canvas, and white strokes on one.
    image::ImageBuffer::<image::LumaA<u8>, Vec<u8>>::from_fn(w, h, |x, y| {
        image::LumaA([0, ink[(y * w + x) as usize]])
    })
    .save(dir.join("black-on-transparent.png"))
    .unwrap();
    image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([255, 255, 255, ink[(y * w + x) as usize]])
    })
    .save(dir.join("white-on-transparent.png"))
    .unwrap();
    let cmyk: Vec<u8> = ink.iter().flat_map(|&k| [0, 0, 0, k]).collect();
    jpeg_encoder::Encoder::new_file(dir.join("cmyk.jpg"), 100)
        .unwrap()
        .encode(&cmyk, w as u16, h as u16, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    // An animation: the first frame is the digit, the second another digit.
    let frame = |pixels: &[u8]| {
        let (_, _, ink) = enlarged_ink(pixels);
        image::Frame::new(image::RgbaImage::from_fn(w, h, |x, y| {
            let v = paper(ink[(y * w + x) as usize]);
            image::Rgba([v, v, v, 255])
        }))
    };
    let gif = fs::File::create(dir.join("animated.gif")).unwrap();
    image::codecs::gif::GifEncoder::new(gif)
        .encode_frames([frame(&digits[0].0), frame(&digits[1].0)])
        .unwrap();
    let grey = DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
        Luma([paper(ink[(y * w + x) as usize])])
    }));
    grey.to_rgb8().save(dir.join("digit.bmp")).unwrap();
    grey.to_rgb8().save(dir.join("digit.webp")).unwrap();
    let valid = [
        "plain.png",
        "grey16.png",
        "black-on-transparent.png",
        "white-on-transparent.png",
        "cmyk.jpg",
        "animated.gif",
        "digit.bmp",
        "digit.webp",
    ];

    // Broken pictures, each with the words its error must contain.
    let mut valid_png = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut valid_png), ImageFormat::Png)
        .unwrap();
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.png",
            b"hello, not a picture".to_vec(),
            "Invalid PNG signature",
        ),
        ("empty.png", Vec::new(), "is an empty file"),
        (
            "truncated.png",
            valid_png[..valid_png.len() / 2].to_vec(),
            "cannot decode",
        ),
        ("zero-by-zero.png", png_with_header(0, 0), "cannot decode"),
        (
            "bomb.png",
            png_with_header(100_000, 100_000),
            "larger than this tool accepts",
        ),
        (
            "blank.png",
            {
                let mut bytes = Vec::new();
                DynamicImage::ImageLuma8(GrayImage::from_pixel(60, 40, Luma([230])))
                    .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
                    .unwrap();
                bytes
            },
            "no ink",
        ),
    ];
    for (name, bytes, _) in &broken {
        fs::write(dir.join(name), bytes).unwrap();
    }

    let mut names: Vec<&str> = valid.to_vec();
    names.extend(broken.iter().map(|(name, _, _)| *name));
    names.extend(["missing.png"]);
    let paths: Vec<String> = names
        .iter()
        .map(|n| dir.join(n).to_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["predict", "--model", model.to_str().unwrap(), "--json"];
    args.extend(paths.iter().map(String::as_str));
    let output = mnist_cnn(&args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    let answers = stdout_json(&output);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), names.len());

    let expected = answers[0]["digit"]
        .as_i64()
        .expect("plain.png is predicted");
    for (name, answer) in valid.iter().zip(answers) {
        assert_eq!(
            answer["digit"].as_i64(),
            Some(expected),
            "{name} is read differently from plain.png: {answer}"
        );
    }
    let errors = &answers[valid.len()..];
    let expected_errors = broken
        .iter()
        .map(|(name, _, words)| (*name, *words))
        .chain([("missing.png", "cannot open")]);
    for ((name, words), answer) in expected_errors.zip(errors) {
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} should fail: {answer}"));
        assert!(
            error.contains(name) && error.contains(words),
            "{name}: {error}"
        );
    }
    let summary = format!(
        "{} of {} pictures could not be read",
        errors.len(),
        names.len()
    );
    assert!(stderr(&output).contains(&summary), "{}", stderr(&output));
}
