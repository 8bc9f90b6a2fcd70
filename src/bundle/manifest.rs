//! `manifest.json`: what a bundle is, how it was made and how good it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::EngineParams;

/// Format 1: `model.onnx` maps `history` to every row's `scores`.
pub const FORMAT_VERSION: u32 = 1;
/// Format 2 (two-tower): `model.onnx` is a user encoder (`history` → `user_vector`), the item
/// side is data (`items.f32`, declared in [`Manifest::item_side`]). Readers accept both.
pub const FORMAT_TWO_TOWER: u32 = 2;
/// Name of the ONNX input: int64 `[batch, L]` vocabulary rows, 0 = padding.
pub const INPUT_NAME: &str = "history";
/// Name of the format-1 ONNX output: float32 `[batch, n_rows]`.
pub const OUTPUT_NAME: &str = "scores";
/// Name of the format-2 ONNX output: float32 `[batch, d]`.
pub const USER_VECTOR_NAME: &str = "user_vector";
/// File of the item side of a format-2 bundle.
pub const ITEM_MATRIX_FILE: &str = "items.f32";
/// The item side of an int8 export (`item_side.dtype` = `int8_row_scaled`).
pub const ITEM_MATRIX_INT8_FILE: &str = "items.i8";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Teacher,
    Student,
    Baseline,
}

impl Role {
    /// The serialized name (`teacher`, `student`, `baseline`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
            Role::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    /// Symbolic dimensions are strings (`"batch"`, `"L"`), fixed ones numbers.
    pub shape: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// `mean_mlp` (embedding mean → MLP → dot with item matrix) or `ease` (item-item matrix).
    pub kind: String,
    /// Human-readable description of the computation.
    pub description: String,
    #[serde(default)]
    pub embedding_dim: Option<usize>,
    #[serde(default)]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub activation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub sha256: String,
    pub n_users: usize,
    pub n_items: usize,
    pub n_interactions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub protocol: String,
    pub seed: u64,
    pub ratios: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    /// Filled in by the writer: the directory name under `models/<name>/`.
    pub version: u64,
    pub role: Role,
    /// Unix seconds.
    pub created_at: u64,
    /// Vocabulary rows including the padding row 0 (= n_items + 1).
    pub n_rows: usize,
    /// `None`: the history length L is dynamic; `Some(l)`: fixed.
    pub history_length: Option<usize>,
    pub input: TensorSpec,
    pub output: TensorSpec,
    pub architecture: Architecture,
    pub parameters: u64,
    pub model_sha256: String,
    #[serde(default)]
    pub dataset: Option<DatasetInfo>,
    #[serde(default)]
    pub split: Option<SplitInfo>,
    /// KD settings used to train this model (free-form: variant, lambdas, temperature, teacher).
    #[serde(default)]
    pub distillation: Option<serde_json::Value>,
    /// Test-split metrics, e.g. `"ndcg@10": 0.33`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of `items.tsv`; checked when present (bundles written before it existed lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_sha256: Option<String>,
    /// sha256 of `users.tsv`, when the bundle has one; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_sha256: Option<String>,
    /// Format 2 only: the item matrix file and its shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_side: Option<ItemSide>,
    /// Format 2 only: which scoring engine serves the model and its settings (default: exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<EngineParams>,
    /// Format 2 only: an HNSW graph over the item side built at publish time, which the `ann`
    /// engine serves instead of building one at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ann_index: Option<AnnIndexFile>,
}

/// A saved HNSW graph (usearch's serialization: the augmented item vectors `[v, b]` of rows
/// `1..n_rows` under inner product, f32) and the parameters it was built with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnIndexFile {
    pub file: String,
    pub sha256: String,
    /// File size; checked before the file is read.
    pub bytes: u64,
    /// HNSW links per node (`m`) and build candidate list (`ef_construction`) of this graph.
    pub m: usize,
    pub ef_construction: usize,
    /// Seconds the build took where it was published.
    #[serde(default)]
    pub build_seconds: f64,
}

/// The item side of a two-tower bundle. With `dtype` `float32_le`, `file` holds `n_rows · dim`
/// little-endian float32 vectors (row-major, row r = vocabulary row r), then `n_rows` biases if
/// `has_bias`; with `int8_row_scaled`, `n_rows · dim` int8 codes, `n_rows` f32 row scales
/// (`v_r = scale_r · code_r`), then the f32 biases. The score for user vector u is `u · v_r + b_r`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSide {
    pub file: String,
    pub dtype: String,
    pub dim: usize,
    pub has_bias: bool,
    pub sha256: String,
}

impl Manifest {
    /// A manifest with the contract fields filled in for a model of `n_rows` rows.
    pub fn new(name: &str, role: Role, n_rows: usize, architecture: Architecture) -> Self {
        let created_at = crate::os::unix_seconds(std::time::SystemTime::now());
        Manifest {
            format_version: FORMAT_VERSION,
            name: name.to_string(),
            version: 0,
            role,
            created_at,
            n_rows,
            history_length: None,
            input: TensorSpec {
                name: INPUT_NAME.into(),
                dtype: "int64".into(),
                shape: vec!["batch".into(), "L".into()],
            },
            output: TensorSpec {
                name: OUTPUT_NAME.into(),
                dtype: "float32".into(),
                shape: vec!["batch".into(), n_rows.into()],
            },
            architecture,
            parameters: 0,
            model_sha256: String::new(),
            dataset: None,
            split: None,
            distillation: None,
            metrics: BTreeMap::new(),
            items_sha256: None,
            users_sha256: None,
            item_side: None,
            serving: None,
            ann_index: None,
        }
    }

    /// A format-2 manifest: a user encoder with a `dim`-wide output plus an item matrix
    /// (`sha256` is filled in by the writer).
    pub fn two_tower(
        name: &str,
        role: Role,
        n_rows: usize,
        dim: usize,
        has_bias: bool,
        architecture: Architecture,
    ) -> Self {
        let mut m = Manifest::new(name, role, n_rows, architecture);
        m.format_version = FORMAT_TWO_TOWER;
        m.output = TensorSpec {
            name: USER_VECTOR_NAME.into(),
            dtype: "float32".into(),
            shape: vec!["batch".into(), dim.into()],
        };
        m.item_side = Some(ItemSide {
            file: ITEM_MATRIX_FILE.into(),
            dtype: crate::engine::DTYPE_F32.into(),
            dim,
            has_bias,
            sha256: String::new(),
        });
        m
    }

    pub fn is_two_tower(&self) -> bool {
        self.format_version == FORMAT_TWO_TOWER
    }
}
