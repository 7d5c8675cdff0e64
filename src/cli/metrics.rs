//! Classification metrics: confusion matrix, per-class precision / recall / F1 / support,
//! accuracy and macro-F1.
//!
//! Conventions follow scikit-learn's `classification_report` with `zero_division=0`:
//! - rows of the confusion matrix are the true class, columns the predicted class;
//! - a class that was never predicted has precision 0, a class with no true samples has
//!   recall 0, and F1 is 0 when precision + recall is 0;
//! - macro-F1 is the unweighted mean of the per-class F1 over the classes that occur in the data,
//!   either as a truth or as a prediction (sklearn's default `labels = unique(y_true ∪ y_pred)`).
//!   A class of the label set that never occurs at all is left out of the mean, so a 7-class data
//!   set scored with an 8-class label list gives the same macro-F1 as with the 7 classes alone.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Metrics of one class.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of samples whose true class is this one.
    pub support: u64,
}

/// A square confusion matrix over a fixed label list; `matrix[truth][predicted]` counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    /// Rows = truth, columns = prediction, both in `labels` order.
    pub matrix: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(labels: Vec<String>) -> Self {
        let n = labels.len();
        ConfusionMatrix {
            labels,
            matrix: vec![vec![0; n]; n],
        }
    }

    /// Builds a matrix from explicit counts (rows = truth). Panics if it is not square with one
    /// row per label.
    pub fn from_counts(labels: Vec<String>, matrix: Vec<Vec<u64>>) -> Self {
        assert_eq!(labels.len(), matrix.len(), "one row per label");
        assert!(
            matrix.iter().all(|r| r.len() == labels.len()),
            "matrix must be square"
        );
        ConfusionMatrix { labels, matrix }
    }

    /// Counts one sample. Panics on an index outside the label list.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.matrix[truth][predicted] += 1;
    }

    /// Total number of samples.
    pub fn n(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }

    fn correct(&self) -> u64 {
        (0..self.labels.len()).map(|i| self.matrix[i][i]).sum()
    }

    fn row_sum(&self, i: usize) -> u64 {
        self.matrix[i].iter().sum()
    }

    fn col_sum(&self, j: usize) -> u64 {
        self.matrix.iter().map(|r| r[j]).sum()
    }

    /// Fraction of samples on the diagonal; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.n())
    }

    /// Precision, recall, F1 and support of class `i`.
    pub fn class_metrics(&self, i: usize) -> ClassMetrics {
        let tp = self.matrix[i][i];
        let support = self.row_sum(i);
        let predicted = self.col_sum(i);
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassMetrics {
            precision,
            recall,
            f1,
            support,
        }
    }

    /// Per-class metrics in label order.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.labels.len())
            .map(|i| self.class_metrics(i))
            .collect()
    }

    /// Whether class `i` occurs in the data as a truth or as a prediction.
    pub fn occurs(&self, i: usize) -> bool {
        self.row_sum(i) > 0 || self.col_sum(i) > 0
    }

    /// Mean F1 over the classes that occur (see the module docs); 0 for an empty matrix.
    pub fn macro_f1(&self) -> f64 {
        let f1s: Vec<f64> = (0..self.labels.len())
            .filter(|&i| self.occurs(i))
            .map(|i| self.class_metrics(i).f1)
            .collect();
        if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        }
    }

    /// Everything at once, ready to serialise.
    pub fn summary(&self) -> MetricsSummary {
        MetricsSummary {
            n: self.n(),
            accuracy: self.accuracy(),
            macro_f1: self.macro_f1(),
            per_class: PerClass(
                self.labels
                    .iter()
                    .cloned()
                    .zip(self.per_class())
                    .collect::<Vec<_>>(),
            ),
            confusion: self.clone(),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Per-class metrics keyed by label, serialised as a JSON object in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct PerClass(pub Vec<(String, ClassMetrics)>);

impl PerClass {
    pub fn get(&self, label: &str) -> Option<&ClassMetrics> {
        self.0.iter().find(|(l, _)| l == label).map(|(_, m)| m)
    }
}

impl Serialize for PerClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (label, m) in &self.0 {
            map.serialize_entry(label, m)?;
        }
        map.end()
    }
}

/// The metrics of a confusion matrix in the shape `emonet eval --json` prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricsSummary {
    pub n: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: PerClass,
    pub confusion: ConfusionMatrix,
}

impl MetricsSummary {
    /// A human-readable table: overall figures, per-class metrics and the confusion matrix.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let w = self
            .confusion
            .labels
            .iter()
            .map(|l| l.len())
            .max()
            .unwrap_or(5)
            .max(8);
        let _ = writeln!(s, "n = {}", self.n);
        let _ = writeln!(s, "accuracy = {:.4}", self.accuracy);
        let _ = writeln!(s, "macro-F1 = {:.4}", self.macro_f1);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<w$}  {:>9}  {:>9}  {:>9}  {:>7}",
            "class", "precision", "recall", "f1", "support"
        );
        for (label, m) in &self.per_class.0 {
            let _ = writeln!(
                s,
                "{:<w$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}",
                label, m.precision, m.recall, m.f1, m.support
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "confusion matrix (rows = truth, columns = prediction)");
        let cw = self
            .confusion
            .labels
            .iter()
            .map(|l| l.len().min(8))
            .max()
            .unwrap_or(1)
            .max(self.n.to_string().len())
            .max(3);
        let _ = write!(s, "{:<w$}", "");
        for l in &self.confusion.labels {
            let short: String = l.chars().take(8).collect();
            let _ = write!(s, " {short:>cw$}");
        }
        let _ = writeln!(s);
        for (l, row) in self.confusion.labels.iter().zip(&self.confusion.matrix) {
            let _ = write!(s, "{l:<w$}");
            for c in row {
                let _ = write!(s, " {c:>cw$}");
            }
            let _ = writeln!(s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// Hand-checked 3-class example (rows = truth, columns = prediction):
    ///
    /// ```text
    ///            pred a  pred b  pred c   row sum (support)
    /// truth a       5       2       1        8
    /// truth b       1       6       3       10
    /// truth c       0       2       4        6
    /// col sum       6      10       8       24
    /// ```
    /// accuracy = (5 + 6 + 4) / 24 = 15/24 = 0.625
    /// a: P = 5/6,  R = 5/8,  F1 = 2·(5/6)(5/8)/((5/6)+(5/8)) = 2·5/(6+8) = 10/14 = 5/7
    /// b: P = 6/10, R = 6/10, F1 = 6/10
    /// c: P = 4/8,  R = 4/6,  F1 = 2·4/(8+6) = 8/14 = 4/7
    ///    (F1 = 2·tp / (predicted + support) in general)
    /// macro-F1 = (5/7 + 3/5 + 4/7) / 3 = (9/7 + 3/5) / 3 = (45/35 + 21/35) / 3 = 66/105 = 22/35
    #[test]
    fn three_class_hand_checked() {
        let cm = ConfusionMatrix::from_counts(
            labels(&["a", "b", "c"]),
            vec![vec![5, 2, 1], vec![1, 6, 3], vec![0, 2, 4]],
        );
        assert_eq!(cm.n(), 24);
        close(cm.accuracy(), 0.625);
        let m = cm.per_class();
        close(m[0].precision, 5.0 / 6.0);
        close(m[0].recall, 5.0 / 8.0);
        close(m[0].f1, 5.0 / 7.0);
        assert_eq!(m[0].support, 8);
        close(m[1].precision, 0.6);
        close(m[1].recall, 0.6);
        close(m[1].f1, 0.6);
        assert_eq!(m[1].support, 10);
        close(m[2].precision, 0.5);
        close(m[2].recall, 4.0 / 6.0);
        close(m[2].f1, 4.0 / 7.0);
        assert_eq!(m[2].support, 6);
        close(cm.macro_f1(), 22.0 / 35.0);
    }

    /// Building the same matrix sample by sample gives the same counts.
    #[test]
    fn add_counts_samples() {
        let mut cm = ConfusionMatrix::new(labels(&["a", "b"]));
        for (t, p) in [(0, 0), (0, 1), (1, 1), (1, 1), (0, 0)] {
            cm.add(t, p);
        }
        assert_eq!(cm.matrix, vec![vec![2, 1], vec![0, 2]]);
        close(cm.accuracy(), 0.8);
    }

    /// Zero-division and absent classes:
    ///
    /// ```text
    ///            pred a  pred b  pred c  pred d
    /// truth a       3       1       0       0      support 4
    /// truth b       2       0       0       0      support 2
    /// truth c       0       0       0       0      support 0, never predicted
    /// truth d       0       0       0       0      support 0, never predicted
    /// ```
    /// a: P = 3/5, R = 3/4, F1 = 2·3/(5+4) = 2/3
    /// b: P = 0/1 = 0, R = 0/2 = 0, F1 = 0 (occurs: counted in the macro mean)
    /// c, d: never occur → metrics 0, excluded from macro-F1
    /// macro-F1 = (2/3 + 0) / 2 = 1/3; accuracy = 3/6 = 0.5
    #[test]
    fn zero_division_and_absent_classes() {
        let cm = ConfusionMatrix::from_counts(
            labels(&["a", "b", "c", "d"]),
            vec![
                vec![3, 1, 0, 0],
                vec![2, 0, 0, 0],
                vec![0, 0, 0, 0],
                vec![0, 0, 0, 0],
            ],
        );
        let m = cm.per_class();
        close(m[0].f1, 2.0 / 3.0);
        close(m[1].precision, 0.0);
        close(m[1].recall, 0.0);
        close(m[1].f1, 0.0);
        assert_eq!(
            m[2],
            ClassMetrics {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                support: 0
            }
        );
        assert!(!cm.occurs(2) && !cm.occurs(3) && cm.occurs(1));
        close(cm.macro_f1(), 1.0 / 3.0);
        close(cm.accuracy(), 0.5);
    }

    /// A class that is predicted but has no true samples still counts in the macro mean (as
    /// sklearn does): truth only a, predictions a, a, b → a: P = 1, R = 2/3, F1 = 0.8;
    /// b: P = 0, R = 0 (no support), F1 = 0 → macro-F1 = 0.4.
    #[test]
    fn predicted_only_class_counts_in_macro() {
        let cm = ConfusionMatrix::from_counts(labels(&["a", "b"]), vec![vec![2, 1], vec![0, 0]]);
        close(cm.class_metrics(0).f1, 0.8);
        close(cm.macro_f1(), 0.4);
    }

    #[test]
    fn empty_matrix_is_zero_not_nan() {
        let cm = ConfusionMatrix::new(labels(&["a", "b"]));
        assert_eq!(cm.n(), 0);
        close(cm.accuracy(), 0.0);
        close(cm.macro_f1(), 0.0);
    }

    #[test]
    fn summary_json_shape() {
        let cm = ConfusionMatrix::from_counts(labels(&["b", "a"]), vec![vec![1, 0], vec![1, 2]]);
        let v = serde_json::to_value(cm.summary()).unwrap();
        assert_eq!(v["n"], 4);
        assert_eq!(v["accuracy"], 0.75);
        assert_eq!(v["per_class"]["a"]["support"], 3);
        assert_eq!(v["per_class"]["b"]["precision"], 0.5);
        assert_eq!(v["confusion"]["labels"], serde_json::json!(["b", "a"]));
        assert_eq!(
            v["confusion"]["matrix"],
            serde_json::json!([[1, 0], [1, 2]])
        );
        // label order is kept in the JSON object
        let text = serde_json::to_string(&cm.summary().per_class).unwrap();
        assert!(text.find("\"b\"").unwrap() < text.find("\"a\"").unwrap());
        let table = cm.summary().to_table();
        assert!(table.contains("accuracy = 0.7500"), "{table}");
    }
}
