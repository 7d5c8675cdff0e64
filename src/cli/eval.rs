//! `emonet eval`: scores the emotion classifier on a class-per-folder tree of face crops.
//!
//! `DIR/<label>/*.png|jpg` (symlinks are followed). Every regular file in a label folder is an image to score; hidden files are
//! ignored. Crops are classified as they are (no face detection). Folders whose name is not a
//! model label are named on stderr and skipped (`--strict`: an error). When the data has fewer
//! classes than the model, the prediction is the most likely of the classes present, so an
//! 8-class model can be scored on 7-class FER2013, and the confusion matrix covers the present
//! classes only. Files that cannot be decoded are named on stderr and counted in
//! `skipped_files`; they do not stop the run.
//!
//! A model with several outputs (`ferplus`, `fer2013`) is scored on one of them: `--head`, or
//! by default the output whose labels match the data's folders best (most folders matched, then
//! fewest labels left over: a 7-folder FER2013 view picks `fer2013`, an 8-folder FER+ view
//! `ferplus`); the choice is said on stderr.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::metrics::{ConfusionMatrix, MetricsSummary};
use crate::vision::model::OutputMeta;
use crate::vision::{argmax, EmotionClassifier};

/// `emonet eval` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Class-per-folder data: DIR/<label>/*.png|jpg (symlinks followed).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Emotion classifier (ONNX with emonet.* metadata).
    #[arg(
        long,
        value_name = "PATH",
        default_value_os_t = Path::new("models").join(crate::config::DEFAULT_CLASSIFIER_FILE)
    )]
    pub model: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Fail on folders whose name is not a model label (default: name them and skip).
    #[arg(long)]
    pub strict: bool,
    /// Score at most N images, spread evenly over the sorted file list (keeps class shares).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Output (head) of a several-output model to score, e.g. `ferplus` or `fer2013` (default:
    /// the one whose labels match the data's folders best).
    #[arg(long, value_name = "NAME")]
    pub head: Option<String>,
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    pub strict: bool,
    pub limit: Option<usize>,
    /// Output to score (default: [`pick_output`]).
    pub head: Option<String>,
    /// Progress on stderr.
    pub progress: bool,
}

/// A file that could not be scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub error: String,
}

/// The result of an evaluation; `--json` prints it as one object.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Model name from its metadata, and its path.
    pub model: String,
    pub model_path: PathBuf,
    /// The output (head) scored.
    pub output: String,
    pub data: PathBuf,
    /// `n`, `accuracy`, `macro_f1`, `per_class`, `confusion` (over the classes present).
    #[serde(flatten)]
    pub metrics: MetricsSummary,
    /// Number of files that could not be decoded or classified.
    pub skipped_files: usize,
    /// Those files and why.
    pub skipped: Vec<SkippedFile>,
    /// Folders of DIR whose name is not a model label (skipped).
    pub unknown_folders: Vec<String>,
    /// Wall-clock seconds spent decoding and classifying.
    pub seconds: f64,
}

impl EvalReport {
    /// Human-readable report.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "model {} ({}), output {}\ndata  {}\n",
            self.model,
            self.model_path.display(),
            self.output,
            self.data.display()
        );
        s.push_str(&self.metrics.to_table());
        if self.skipped_files > 0 {
            s.push_str(&format!("\nskipped files: {}\n", self.skipped_files));
        }
        if !self.unknown_folders.is_empty() {
            s.push_str(&format!(
                "skipped folders: {}\n",
                self.unknown_folders.join(", ")
            ));
        }
        s.push_str(&format!(
            "\n{:.1} s, {:.2} ms per image\n",
            self.seconds,
            1000.0 * self.seconds / (self.metrics.n.max(1) as f64)
        ));
        s
    }
}

/// The labelled files of a class-per-folder tree.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// (model label index, path), sorted by label folder then file name.
    pub files: Vec<(usize, PathBuf)>,
    /// Model label indices present in the tree (with at least one file), ascending.
    pub present: Vec<usize>,
    pub unknown_folders: Vec<String>,
}

/// Lists `dir` as a class-per-folder tree against the model's `labels`. Unknown folders are
/// reported on stderr (or an error when `strict`).
pub fn scan(dir: &Path, labels: &[String], strict: bool) -> Result<Dataset> {
    let mut ds = Dataset::default();
    for (name, path) in class_folders(dir)? {
        let Some(label) = labels.iter().position(|l| *l == name) else {
            if strict {
                bail!(
                    "folder {} is not a class of the model (labels: {})",
                    path.display(),
                    labels.join(", ")
                );
            }
            eprintln!(
                "eval: skipping folder {}: `{name}` is not a model label ({})",
                path.display(),
                labels.join(", ")
            );
            ds.unknown_folders.push(name);
            continue;
        };
        let mut files = Vec::new();
        for e in std::fs::read_dir(&path)
            .with_context(|| format!("cannot read class folder {}", path.display()))?
        {
            let e = e.with_context(|| format!("reading {}", path.display()))?;
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if std::fs::metadata(&p).map(|m| m.is_file()).unwrap_or(true) {
                files.push(p);
            }
        }
        files.sort();
        if !files.is_empty() {
            ds.present.push(label);
        }
        ds.files.extend(files.into_iter().map(|p| (label, p)));
    }
    ds.present.sort_unstable();
    if ds.files.is_empty() {
        bail!(
            "no labelled images in {}: expected DIR/<label>/*.png with labels {}",
            dir.display(),
            labels.join(", ")
        );
    }
    Ok(ds)
}

/// The sub-folders of `dir` (symlinks followed), sorted, hidden ones left out: (name, path).
fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read data folder {}", dir.display()))?;
    let mut folders = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // fs::metadata follows symlinks
        if !name.starts_with('.') && std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            folders.push((name, path));
        }
    }
    folders.sort();
    Ok(folders)
}

/// The output to score on data with these class folders: the one whose labels match the most
/// folders, then the one with the fewest labels left over, then the first. Returns its index
/// and how many folders it matched.
pub fn pick_output(outputs: &[OutputMeta], folders: &[String]) -> (usize, usize) {
    let fit = |o: &OutputMeta| {
        let matched = folders.iter().filter(|f| o.labels.contains(f)).count();
        (matched, o.labels.len() - matched)
    };
    let mut best = 0;
    for (i, o) in outputs.iter().enumerate().skip(1) {
        let (m, extra) = fit(o);
        let (bm, bextra) = fit(&outputs[best]);
        if m > bm || (m == bm && extra < bextra) {
            best = i;
        }
    }
    (best, fit(&outputs[best]).0)
}

/// The output `opts.head` names, or [`pick_output`]'s choice (said on stderr when the model has
/// several outputs).
fn choose_output(classifier: &EmotionClassifier, data: &Path, opts: &EvalOptions) -> Result<usize> {
    let meta = classifier.meta();
    if let Some(name) = &opts.head {
        return meta.output_index(name);
    }
    if meta.outputs.len() == 1 {
        return Ok(0);
    }
    let folders: Vec<String> = class_folders(data)?.into_iter().map(|(n, _)| n).collect();
    let (i, matched) = pick_output(&meta.outputs, &folders);
    eprintln!(
        "eval: scoring output `{}` (its {} labels match {matched} of the {} class folders; \
         --head picks another of: {})",
        meta.outputs[i].name,
        meta.outputs[i].labels.len(),
        folders.len(),
        meta.outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(i)
}

/// Keeps `limit` files spread evenly over the list (deterministic).
fn spread(files: Vec<(usize, PathBuf)>, limit: usize) -> Vec<(usize, PathBuf)> {
    let n = files.len();
    if limit >= n {
        return files;
    }
    let step = n as f64 / limit as f64;
    let picks: Vec<usize> = (0..limit).map(|i| (i as f64 * step) as usize).collect();
    let mut out = Vec::with_capacity(limit);
    let mut next = picks.iter().peekable();
    for (i, f) in files.into_iter().enumerate() {
        if next.peek() == Some(&&i) {
            out.push(f);
            next.next();
        }
    }
    out
}

/// Scores `classifier` on the class-per-folder tree `data`.
pub fn evaluate(
    classifier: &EmotionClassifier,
    data: &Path,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let head = choose_output(classifier, data, opts)?;
    let labels = &classifier.meta().outputs[head].labels;
    let mut ds = scan(data, labels, opts.strict)?;
    if let Some(limit) = opts.limit {
        ds.files = spread(std::mem::take(&mut ds.files), limit.max(1));
    }
    let present = ds.present.clone();
    let mut cm = ConfusionMatrix::new(present.iter().map(|&i| labels[i].clone()).collect());
    let mut skipped = Vec::new();
    let total = ds.files.len();
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_decile = 0;
    for (done, (truth, path)) in ds.files.iter().enumerate() {
        let result =
            crate::frame::read_image(path).and_then(|img| classifier.classify_crop_all(&img));
        match result {
            Ok(mut all) => {
                let scores = all.swap_remove(head);
                // best of the classes present in the data
                let of_present: Vec<f32> = present.iter().map(|&i| scores.scores[i]).collect();
                let predicted = argmax(&of_present);
                let truth = present
                    .iter()
                    .position(|p| p == truth)
                    .expect("truth is present");
                cm.add(truth, predicted);
            }
            Err(e) => {
                eprintln!("eval: skipping {}: {e:#}", path.display());
                skipped.push(SkippedFile {
                    path: path.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
        if opts.progress {
            let done = done + 1;
            if tty {
                if done % 50 == 0 || done == total {
                    eprint!("\reval: {done}/{total} images");
                    if done == total {
                        eprintln!();
                    }
                    let _ = std::io::stderr().flush();
                }
            } else {
                let decile = done * 10 / total;
                if decile > last_decile {
                    last_decile = decile;
                    eprintln!("eval: {done}/{total} images ({}%)", decile * 10);
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if cm.n() == 0 {
        bail!(
            "none of the {total} files in {} could be classified",
            data.display()
        );
    }
    Ok(EvalReport {
        model: classifier.meta().name.clone(),
        model_path: classifier.path().to_path_buf(),
        output: classifier.meta().outputs[head].name.clone(),
        data: data.to_path_buf(),
        metrics: cm.summary(),
        skipped_files: skipped.len(),
        skipped,
        unknown_folders: ds.unknown_folders,
        seconds,
    })
}

/// Loads the model at `model` and evaluates it on `data`.
pub fn evaluate_path(model: &Path, data: &Path, opts: &EvalOptions) -> Result<EvalReport> {
    let classifier = EmotionClassifier::load(model)?;
    evaluate(&classifier, data, opts)
}

/// `emonet eval`: prints the report (tables, or one JSON object with `--json`) on stdout.
pub fn run(args: &EvalArgs) -> Result<()> {
    let opts = EvalOptions {
        strict: args.strict,
        limit: args.limit,
        head: args.head.clone(),
        progress: true,
    };
    let report = evaluate_path(&args.model, &args.data, &opts)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.to_table())?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_order_and_count() {
        let files: Vec<(usize, PathBuf)> = (0..10)
            .map(|i| (i / 5, PathBuf::from(i.to_string())))
            .collect();
        let s = spread(files.clone(), 4);
        let names: Vec<_> = s
            .iter()
            .map(|(_, p)| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0", "2", "5", "7"]);
        assert_eq!(spread(files.clone(), 20).len(), 10);
    }

    #[test]
    fn pick_output_prefers_most_matches_then_fewest_extra_labels() {
        let out = |name: &str, labels: &[&str]| OutputMeta {
            name: name.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        };
        let ferplus = out("ferplus", &["angry", "happy", "sad", "contempt"]);
        let fer2013 = out("fer2013", &["angry", "happy", "sad"]);
        let outputs = [ferplus, fer2013];
        let folders = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // the 3-class view: both match 3 folders, fer2013 leaves no label over
        assert_eq!(
            pick_output(&outputs, &folders(&["angry", "happy", "sad"])),
            (1, 3)
        );
        // with contempt only ferplus matches 4
        assert_eq!(
            pick_output(&outputs, &folders(&["angry", "contempt", "happy", "sad"])),
            (0, 4)
        );
        // nothing matches: the output with fewer labels
        assert_eq!(pick_output(&outputs, &folders(&["x"])), (1, 0));
    }

    #[test]
    fn scan_matches_labels_and_reports_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<String> = ["angry", "happy", "sad"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (folder, files) in [("happy", 2), ("angry", 1), ("bogus", 1), ("sad", 0)] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
            for i in 0..files {
                std::fs::write(dir.path().join(folder).join(format!("{i}.png")), b"x").unwrap();
            }
        }
        std::fs::write(dir.path().join("happy").join(".hidden"), b"x").unwrap();
        std::fs::write(dir.path().join("labels.csv"), b"x").unwrap();
        let ds = scan(dir.path(), &labels, false).unwrap();
        assert_eq!(ds.present, vec![0, 1]);
        assert_eq!(ds.files.len(), 3);
        assert_eq!(ds.files[0].0, 0);
        assert_eq!(ds.unknown_folders, vec!["bogus".to_string()]);
        let e = scan(dir.path(), &labels, true).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
