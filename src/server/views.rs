//! The registry as the HTTP API shows it (`GET /v1/models`, `GET /v1/models/{name}`): views
//! built from [`ModelSnapshot`]s, with the `ToSchema` derives the OpenAPI document reads.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::bundle::Role;
use crate::serving::control::Failure;
use crate::serving::model::LoadedModel;
use crate::serving::registry::ModelSnapshot;

/// A load that failed, remembered until the version's files change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoadFailure {
    pub version: u64,
    /// Stable label of the cause (e.g. `checksum`, `output_shape`, `warmup`).
    pub kind: &'static str,
    /// The full error (file names, runtime messages): only in the admin API's view
    /// (`GET /admin/models/{name}`) and the logs, never on the public routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

impl LoadFailure {
    fn new(f: &Failure, audience: Audience) -> Self {
        LoadFailure {
            version: f.version,
            kind: f.kind,
            error: (audience == Audience::Admin).then(|| f.error.clone()),
            at: f.at,
        }
    }
}

/// Who a view is for: the public routes get the failure kinds only; paths and tract's
/// messages describe the server's disk and internals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Admin,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    pub default: bool,
    pub live_version: Option<u64>,
    pub pinned: Option<u64>,
    /// Versions on disk, ascending.
    pub versions: Vec<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveInfo {
    pub version: u64,
    pub role: Role,
    pub n_items: usize,
    pub n_users: usize,
    pub parameters: u64,
    pub architecture: String,
    /// Bundle format: 1 (ONNX scores every row) or 2 (user encoder + item matrix).
    pub format_version: u32,
    /// Format 2: the scoring engine serving it (`exact`, `int8`, `ann`).
    pub engine: Option<&'static str>,
    /// `ann` with a graph: `saved` (published in the bundle, read at load) or `built` (at load,
    /// because the bundle has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ann_graph: Option<&'static str>,
    /// Seconds spent loading the ONNX model and building the engine (e.g. the ANN index).
    pub engine_build_seconds: f64,
    pub created_at: u64,
    pub loaded_at: u64,
    /// Offline evaluation results recorded in the manifest.
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetail {
    pub name: String,
    pub default: bool,
    pub live: Option<LiveInfo>,
    pub pinned: Option<u64>,
    pub versions: Vec<u64>,
    /// Earlier live versions, most recent last (what rollback goes back to).
    pub previous: Vec<u64>,
    pub load_failures: Vec<LoadFailure>,
    /// A version being loaded right now, with the progress of its ANN graph build (a bundle
    /// without a saved graph builds one at load).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loading: Option<Loading>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Loading {
    pub version: u64,
    /// Rows added to the ANN graph so far (0 while other parts load).
    pub rows_indexed: usize,
    /// Rows the graph will hold (0 until a build starts, and for other engines).
    pub rows_to_index: usize,
}

impl From<&ModelSnapshot> for ModelSummary {
    fn from(s: &ModelSnapshot) -> Self {
        ModelSummary {
            name: s.name.clone(),
            default: s.default,
            live_version: s.live.as_ref().map(|m| m.version),
            pinned: s.pinned,
            versions: s.versions.clone(),
        }
    }
}

impl From<&LoadedModel> for LiveInfo {
    fn from(m: &LoadedModel) -> Self {
        LiveInfo {
            version: m.version,
            role: m.manifest.role,
            n_items: m.manifest.n_rows - 1,
            n_users: m.users.as_ref().map_or(0, |u| u.len()),
            parameters: m.manifest.parameters,
            architecture: m.manifest.architecture.kind.clone(),
            format_version: m.manifest.format_version,
            engine: m.scoring.engine().map(|e| e.name()),
            ann_graph: m.scoring.graph(),
            engine_build_seconds: m.engine_build_seconds,
            created_at: m.manifest.created_at,
            loaded_at: crate::os::unix_seconds(m.loaded_at),
            metrics: m.manifest.metrics.clone(),
        }
    }
}

impl ModelDetail {
    pub fn new(s: ModelSnapshot, audience: Audience) -> Self {
        ModelDetail {
            live: s.live.as_deref().map(LiveInfo::from),
            load_failures: s
                .failures
                .iter()
                .map(|f| LoadFailure::new(f, audience))
                .collect(),
            loading: s
                .loading
                .map(|(version, rows_indexed, rows_to_index)| Loading {
                    version,
                    rows_indexed,
                    rows_to_index,
                }),
            name: s.name,
            default: s.default,
            pinned: s.pinned,
            versions: s.versions,
            previous: s.previous,
        }
    }
}
