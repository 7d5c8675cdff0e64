//! Loading ONNX models into tract, and the emotion classifier's metadata contract.
//!
//! Every model is parsed once, its input shape fixed, optimized and turned into a runnable plan
//! at start-up (`model_for_path → with_input_fact → into_optimized → into_runnable`; stopping at
//! `into_decluttered` is several times slower). The ONNX protobuf is read once: the metadata
//! props and the graph come from the same [`ModelProto`].
//!
//! The classifier describes itself in ONNX `metadata_props` (written by `models/train`):
//!
//! | key | meaning |
//! |---|---|
//! | `emonet.labels` | comma-separated class names in output order (of the default output) |
//! | `emonet.outputs` | optional: the graph's output names in order, comma-separated, for a model with several heads (`ferplus,fer2013`) |
//! | `emonet.labels.<output>` | with `emonet.outputs`: the class names of each output |
//! | `emonet.input_height`, `emonet.input_width` | input size in pixels |
//! | `emonet.channels` | `1` or `3` |
//! | `emonet.color` | `gray` (luma replicated to every channel) or `rgb` |
//! | `emonet.mean`, `emonet.std` | one value per channel, applied as `(p/255 - mean) / std` |
//! | `emonet.output` | `logits` (softmax is applied here) |
//! | `emonet.face_margin` | fraction of the face box added on each side when cropping |
//! | `emonet.name` | short model name |
//!
//! Of several outputs, [`DEFAULT_OUTPUT`] (`ferplus`, the product's labels) is the one the daemon,
//! `emonet classify` and the MQTT scores use (the first output when none has that name); a
//! file without `emonet.outputs` has one output, named `logits` here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

/// An optimized, runnable tract plan.
pub type Plan = Arc<TypedRunnableModel>;

/// Reusable execution state of a [`Plan`] (one per thread of use).
pub type PlanState = TypedSimpleState;

/// A loaded ONNX model: its plan and the metadata props of the file.
pub struct OnnxModel {
    pub path: PathBuf,
    pub plan: Plan,
    /// `metadata_props` of the ONNX file, key → value.
    pub props: HashMap<String, String>,
    /// Shapes of the outputs after optimization, in output order.
    pub output_shapes: Vec<Vec<usize>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("props", &self.props)
            .field("output_shapes", &self.output_shapes)
            .finish()
    }
}

/// Reads the ONNX protobuf of `path` (memory-mapped, parsed once).
pub fn read_proto(path: &Path) -> Result<ModelProto> {
    ensure!(path.is_file(), "model file {} not found", path.display());
    tract_onnx::onnx()
        .proto_model_for_path(path)
        .with_context(|| format!("{} is not a readable ONNX model", path.display()))
}

/// The `metadata_props` of a model, key → value.
pub fn metadata_props(proto: &ModelProto) -> HashMap<String, String> {
    proto
        .metadata_props
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect()
}

/// Builds the runnable plan of an already parsed model with input 0 fixed to `input_shape`
/// (float32), with our own depthwise convolution and max-pool operators ([`crate::tract_ops`])
/// unless `EMONET_TRACT_OPS=tract` is set. `path` is used for error messages and to resolve
/// external data.
pub fn build_plan(proto: &ModelProto, path: &Path, input_shape: &[usize]) -> Result<OnnxModel> {
    let own = std::env::var("EMONET_TRACT_OPS").map_or(true, |v| v != "tract");
    let choice = own.then(crate::tract_ops::Choice::default);
    build_plan_with(proto, path, input_shape, choice)
}

/// [`build_plan`], choosing explicitly which of our own operators replace tract's (`None`:
/// tract's own throughout).
pub fn build_plan_with(
    proto: &ModelProto,
    path: &Path,
    input_shape: &[usize],
    own_ops: Option<crate::tract_ops::Choice>,
) -> Result<OnnxModel> {
    let onnx = tract_onnx::onnx();
    let dir = path.parent().and_then(|d| d.to_str());
    let parsed = onnx
        .parse(proto, dir)
        .with_context(|| format!("parsing ONNX graph of {}", path.display()))?;
    if !parsed.unresolved_inputs.is_empty() {
        bail!(
            "{}: unresolved graph inputs {:?}",
            path.display(),
            parsed.unresolved_inputs
        );
    }
    let typed = parsed
        .model
        .with_input_fact(0, f32::fact(input_shape).into())
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .and_then(|mut m| {
            if let Some(choice) = own_ops {
                crate::tract_ops::install_with(&mut m, choice)?;
            }
            m.into_optimized()
        })
        .with_context(|| {
            format!(
                "optimizing {} for input shape {:?}",
                path.display(),
                input_shape
            )
        })?;
    let mut output_shapes = Vec::new();
    for i in 0..typed.outputs.len() {
        let fact = typed.output_fact(i)?;
        let shape = fact
            .shape
            .as_concrete()
            .map(|s| s.to_vec())
            .with_context(|| {
                format!(
                    "{}: output {i} has no concrete shape ({:?})",
                    path.display(),
                    fact.shape
                )
            })?;
        output_shapes.push(shape);
    }
    let plan = typed
        .into_runnable()
        .with_context(|| format!("preparing {} to run", path.display()))?;
    Ok(OnnxModel {
        path: path.to_path_buf(),
        plan,
        props: metadata_props(proto),
        output_shapes,
    })
}

/// Reads, optimizes and prepares `path` with input 0 fixed to `input_shape` (float32).
pub fn load(path: &Path, input_shape: &[usize]) -> Result<OnnxModel> {
    let proto = read_proto(path)?;
    build_plan(&proto, path, input_shape)
}

/// How the classifier wants its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// Luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), replicated to every input channel.
    Gray,
    /// R, G, B in channel order.
    Rgb,
}

/// The output of a several-head classifier that the product uses by default.
pub const DEFAULT_OUTPUT: &str = "ferplus";

/// One output (head) of the classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputMeta {
    /// The ONNX graph output's name (`logits` for a single-output file).
    pub name: String,
    /// Class names in output order.
    pub labels: Vec<String>,
}

/// The emotion classifier's self-description, read from its ONNX metadata props.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassifierMeta {
    pub name: String,
    /// Class names of the default output, in output order.
    pub labels: Vec<String>,
    /// Every output in graph order (one for single-output files).
    pub outputs: Vec<OutputMeta>,
    /// Index in `outputs` of the default output ([`DEFAULT_OUTPUT`] or the first).
    pub default_output: usize,
    pub input_height: usize,
    pub input_width: usize,
    /// Input channels, 1 or 3.
    pub channels: usize,
    pub color: ColorMode,
    /// Per-channel normalisation: `x = (p/255 - mean) / std`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Fraction of the face box added on each side when cropping a detected face.
    pub face_margin: f32,
}

impl ClassifierMeta {
    /// Parses the `emonet.*` props. Errors name `file` and the missing or malformed key.
    pub fn from_props(props: &HashMap<String, String>, file: &Path) -> Result<Self> {
        let p = Props { props, file };
        let name = p.get("emonet.name")?.to_string();
        let outputs = p.outputs()?;
        let default_output = outputs
            .iter()
            .position(|o| o.name == DEFAULT_OUTPUT)
            .unwrap_or(0);
        let labels = outputs[default_output].labels.clone();
        let input_height = p.int("emonet.input_height")?;
        let input_width = p.int("emonet.input_width")?;
        let (channels, color) = p.channels_and_color()?;
        let (mean, std) = p.normalisation(channels)?;
        let output = p.get("emonet.output")?;
        if output != "logits" {
            return Err(p.bad("emonet.output", output, "only `logits` is supported"));
        }
        let margin_raw = p.get("emonet.face_margin")?;
        let face_margin = margin_raw
            .parse::<f32>()
            .ok()
            .filter(|m| m.is_finite() && (0.0..=2.0).contains(m))
            .ok_or_else(|| {
                p.bad(
                    "emonet.face_margin",
                    margin_raw,
                    "expected a number in 0..=2",
                )
            })?;
        Ok(ClassifierMeta {
            name,
            labels,
            outputs,
            default_output,
            input_height,
            input_width,
            channels,
            color,
            mean,
            std,
            face_margin,
        })
    }

    /// Input shape, NCHW with batch 1.
    pub fn input_shape(&self) -> [usize; 4] {
        [1, self.channels, self.input_height, self.input_width]
    }

    /// Index of the output named `name`; the error lists the outputs there are.
    pub fn output_index(&self, name: &str) -> Result<usize> {
        self.outputs
            .iter()
            .position(|o| o.name == name)
            .with_context(|| {
                let names: Vec<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
                format!(
                    "model {} has no output `{name}` (outputs: {})",
                    self.name,
                    names.join(", ")
                )
            })
    }
}

/// The `emonet.*` metadata of one file, read with errors that name the file and the key.
struct Props<'a> {
    props: &'a HashMap<String, String>,
    file: &'a Path,
}

impl Props<'_> {
    fn get(&self, key: &str) -> Result<&str> {
        self.props.get(key).map(|s| s.trim()).with_context(|| {
            format!(
                "{}: ONNX metadata_props lacks `{key}` (not an emonet classifier?)",
                self.file.display()
            )
        })
    }

    fn bad(&self, key: &str, v: &str, why: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: ONNX metadata `{key}` = {v:?} is malformed: {why}",
            self.file.display()
        )
    }

    fn int(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        match v.parse::<usize>() {
            Ok(n) if n > 0 && n <= 4096 => Ok(n),
            _ => Err(self.bad(key, v, "expected a positive integer")),
        }
    }

    fn floats(&self, key: &str) -> Result<Vec<f32>> {
        let v = self.get(key)?;
        v.split(',')
            .map(|x| x.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| self.bad(key, v, "expected comma-separated numbers"))
    }

    /// Comma-separated class names under `key`: at least two, none empty, none twice.
    fn labels(&self, key: &str) -> Result<Vec<String>> {
        let raw = self.get(key)?;
        let labels: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
            return Err(self.bad(key, raw, "expected at least two non-empty names"));
        }
        for (i, l) in labels.iter().enumerate() {
            if labels[..i].contains(l) {
                return Err(self.bad(key, raw, &format!("`{l}` appears twice")));
            }
        }
        Ok(labels)
    }

    /// `emonet.outputs` and the `emonet.labels.<output>` of each; without `emonet.outputs`, one
    /// output `logits` with `emonet.labels`.
    fn outputs(&self) -> Result<Vec<OutputMeta>> {
        let Some(raw) = self.props.get("emonet.outputs").map(|s| s.trim()) else {
            return Ok(vec![OutputMeta {
                name: "logits".into(),
                labels: self.labels("emonet.labels")?,
            }]);
        };
        self.labels("emonet.labels")?;
        let names: Vec<&str> = raw.split(',').map(str::trim).collect();
        let mut outputs = Vec::with_capacity(names.len());
        for (i, &name) in names.iter().enumerate() {
            if name.is_empty() || names[..i].contains(&name) {
                return Err(self.bad(
                    "emonet.outputs",
                    raw,
                    "expected distinct, non-empty output names",
                ));
            }
            outputs.push(OutputMeta {
                name: name.to_string(),
                labels: self.labels(&format!("emonet.labels.{name}"))?,
            });
        }
        Ok(outputs)
    }

    fn channels_and_color(&self) -> Result<(usize, ColorMode)> {
        let channels = self.int("emonet.channels")?;
        if channels != 1 && channels != 3 {
            return Err(self.bad(
                "emonet.channels",
                self.get("emonet.channels")?,
                "expected 1 or 3",
            ));
        }
        let color = match self.get("emonet.color")? {
            "gray" | "grey" => ColorMode::Gray,
            "rgb" => ColorMode::Rgb,
            v => return Err(self.bad("emonet.color", v, "expected `gray` or `rgb`")),
        };
        if color == ColorMode::Rgb && channels != 3 {
            return Err(self.bad("emonet.color", "rgb", "`rgb` needs emonet.channels = 3"));
        }
        Ok((channels, color))
    }

    fn normalisation(&self, channels: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mean = self.floats("emonet.mean")?;
        let std = self.floats("emonet.std")?;
        if mean.len() != channels {
            return Err(self.bad(
                "emonet.mean",
                self.get("emonet.mean")?,
                &format!("expected {channels} values"),
            ));
        }
        if std.len() != channels || std.iter().any(|&s| s <= 0.0) {
            return Err(self.bad(
                "emonet.std",
                self.get("emonet.std")?,
                &format!("expected {channels} positive values"),
            ));
        }
        Ok((mean, std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> HashMap<String, String> {
        [
            (
                "emonet.labels",
                "angry,disgust,fear,happy,neutral,sad,surprise,contempt",
            ),
            ("emonet.input_height", "64"),
            ("emonet.input_width", "48"),
            ("emonet.channels", "3"),
            ("emonet.color", "gray"),
            ("emonet.mean", "0.485,0.456,0.406"),
            ("emonet.std", "0.229, 0.224, 0.225"),
            ("emonet.output", "logits"),
            ("emonet.face_margin", "0.1"),
            ("emonet.name", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn parses_contract() {
        let m = ClassifierMeta::from_props(&props(), Path::new("m.onnx")).unwrap();
        assert_eq!(m.labels.len(), 8);
        assert_eq!(m.labels[3], "happy");
        assert_eq!(m.input_shape(), [1, 3, 64, 48]);
        assert_eq!(m.color, ColorMode::Gray);
        assert_eq!(m.std[2], 0.225);
        assert_eq!(m.face_margin, 0.1);
    }

    fn two_head_props() -> HashMap<String, String> {
        let mut p = props();
        for (k, v) in [
            ("emonet.outputs", "fer2013, ferplus"),
            (
                "emonet.labels.fer2013",
                "angry,disgust,fear,happy,neutral,sad,surprise",
            ),
            (
                "emonet.labels.ferplus",
                "angry,disgust,fear,happy,neutral,sad,surprise,contempt",
            ),
        ] {
            p.insert(k.into(), v.into());
        }
        p
    }

    #[test]
    fn single_output_files_have_one_output_named_logits() {
        let m = ClassifierMeta::from_props(&props(), Path::new("m.onnx")).unwrap();
        assert_eq!(m.outputs.len(), 1);
        assert_eq!(m.outputs[0].name, "logits");
        assert_eq!(m.outputs[0].labels, m.labels);
        assert_eq!(m.default_output, 0);
    }

    #[test]
    fn several_outputs_default_to_ferplus() {
        let m = ClassifierMeta::from_props(&two_head_props(), Path::new("m.onnx")).unwrap();
        let names: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["fer2013", "ferplus"]);
        assert_eq!(m.default_output, 1);
        assert_eq!(m.labels.len(), 8);
        assert_eq!(m.outputs[0].labels.len(), 7);
        assert_eq!(m.output_index("fer2013").unwrap(), 0);
        let e = m.output_index("logits").unwrap_err().to_string();
        assert!(
            e.contains("logits") && e.contains("fer2013, ferplus"),
            "{e}"
        );
        let mut p = two_head_props();
        p.insert("emonet.outputs".into(), "a,b".into());
        p.insert("emonet.labels.a".into(), "x,y".into());
        p.insert("emonet.labels.b".into(), "x,y,z".into());
        let m = ClassifierMeta::from_props(&p, Path::new("m.onnx")).unwrap();
        assert_eq!((m.default_output, m.labels.len()), (0, 2));
    }

    #[test]
    fn bad_outputs_name_the_key() {
        for (key, value, named) in [
            ("emonet.outputs", "ferplus,ferplus", "emonet.outputs"),
            ("emonet.outputs", "ferplus,", "emonet.outputs"),
            ("emonet.outputs", "ferplus,other", "emonet.labels.other"),
            (
                "emonet.labels.fer2013",
                "angry,angry",
                "emonet.labels.fer2013",
            ),
        ] {
            let mut p = two_head_props();
            p.insert(key.into(), value.into());
            let e = ClassifierMeta::from_props(&p, Path::new("m.onnx"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("m.onnx") && e.contains(named),
                "{key}={value}: {e}"
            );
        }
    }

    #[test]
    fn missing_key_names_file_and_key() {
        let mut p = props();
        p.remove("emonet.mean");
        let e = ClassifierMeta::from_props(&p, Path::new("dir/m.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dir/m.onnx") && e.contains("emonet.mean"), "{e}");
    }

    #[test]
    fn malformed_values_name_the_key() {
        for (key, value) in [
            ("emonet.channels", "2"),
            ("emonet.input_width", "-3"),
            ("emonet.color", "bgr"),
            ("emonet.mean", "0.5,x,0.5"),
            ("emonet.std", "0.2,0.2"),
            ("emonet.std", "0.2,0,0.2"),
            ("emonet.output", "probabilities"),
            ("emonet.face_margin", "nan"),
            ("emonet.labels", "happy,happy,sad"),
            ("emonet.labels", "happy"),
        ] {
            let mut p = props();
            p.insert(key.into(), value.into());
            let e = ClassifierMeta::from_props(&p, Path::new("m.onnx"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("m.onnx") && e.contains(key),
                "{key}={value}: {e}"
            );
        }
    }
}
