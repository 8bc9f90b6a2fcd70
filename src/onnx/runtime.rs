//! Runs a contract-following ONNX model with tract: validated at load, then shared across
//! threads (`OnnxScorer` is `Send + Sync`; every call gets its own execution state).

use std::sync::{Arc, Mutex};

use prost::Message;
use tract_onnx::pb::{self, tensor_proto::DataType, type_proto};
use tract_onnx::prelude::*;

use crate::bundle::{INPUT_NAME, OUTPUT_NAME, USER_VECTOR_NAME};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not an ONNX model: {0}")]
    Decode(String),
    #[error("model breaks the distilrec ONNX contract: {0}")]
    Contract(String),
    #[error("model declares too much memory: {0}")]
    TooLarge(String),
    #[error("tract could not load the model: {0}")]
    Load(String),
    #[error("model output has shape {actual:?}, expected [{batch}, {expected}]")]
    OutputShape {
        expected: usize,
        batch: usize,
        actual: Vec<usize>,
    },
    #[error("model produced a non-finite score on the load-time probe")]
    NonFinite,
    #[error("history row {row} is outside the vocabulary (n_rows = {n_rows})")]
    RowOutOfRange { row: u32, n_rows: usize },
    #[error("inference failed: {0}")]
    Inference(String),
}

impl RuntimeError {
    /// Short stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeError::Decode(_) => "decode",
            RuntimeError::Contract(_) => "contract",
            RuntimeError::Load(_) => "load",
            RuntimeError::TooLarge(_) => "too_large",
            RuntimeError::OutputShape { .. } => "output_shape",
            RuntimeError::NonFinite => "non_finite",
            RuntimeError::RowOutOfRange { .. } => "row_out_of_range",
            RuntimeError::Inference(_) => "inference",
        }
    }
}

/// Spare execution states kept per scorer; more concurrent callers than this just allocate.
const STATE_POOL: usize = 8;

/// A tract-optimized plan for one model, checked against the contract and the expected width.
pub struct OnnxScorer {
    plan: Arc<TypedSimplePlan>,
    // Spawning a state allocates every intermediate slot; reusing them trims the fixed
    // per-call cost, which matters at batch 1 on small catalogues.
    states: Mutex<Vec<TypedSimpleState>>,
    /// Vocabulary rows the `history` input may reference.
    n_rows: usize,
    /// Width of one output row: `n_rows` for a `scores` model, `d` for a `user_vector` encoder.
    width: usize,
}

impl std::fmt::Debug for OnnxScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxScorer")
            .field("n_rows", &self.n_rows)
            .field("width", &self.width)
            .finish()
    }
}

impl OnnxScorer {
    /// Decodes, checks and optimizes a model. Refuses models whose input/output names or types
    /// differ from the contract, whose batch and history length are not dynamic, or whose probe
    /// run does not return `[batch, expected_rows]` finite scores.
    pub fn load(model_bytes: &[u8], expected_rows: usize) -> Result<Self, RuntimeError> {
        Self::load_with(model_bytes, OUTPUT_NAME, expected_rows, expected_rows)
    }

    /// A two-tower *user encoder* (bundle format 2): input `history` over `n_rows` vocabulary
    /// rows, output `user_vector` float32 `[batch, dim]`; same checks as [`OnnxScorer::load`].
    pub fn load_encoder(
        model_bytes: &[u8],
        n_rows: usize,
        dim: usize,
    ) -> Result<Self, RuntimeError> {
        Self::load_with(model_bytes, USER_VECTOR_NAME, n_rows, dim)
    }

    fn load_with(
        model_bytes: &[u8],
        output: &str,
        expected_rows: usize,
        width: usize,
    ) -> Result<Self, RuntimeError> {
        let proto =
            pb::ModelProto::decode(model_bytes).map_err(|e| RuntimeError::Decode(e.to_string()))?;
        check_contract(&proto, output)?;
        if let Some(graph) = &proto.graph {
            super::declared::check_declared_sizes(graph, super::declared::MAX_DECLARED_BYTES)
                .map_err(RuntimeError::TooLarge)?;
        }
        let load = |e: TractError| RuntimeError::Load(format!("{e:#}"));
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(load)?;
        let batch = model.sym("batch");
        let len = model.sym("L");
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(
                    i64::datum_type(),
                    tvec!(TDim::from(batch), TDim::from(len)),
                ),
            )
            .map_err(load)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(load)?;
        let scorer = OnnxScorer {
            plan,
            states: Mutex::new(Vec::new()),
            n_rows: expected_rows,
            width,
        };
        // Row 1 exercises the gather path; row 0 the all-padding path; batch 2 the dynamic batch.
        let probe_row = 1.min(expected_rows.saturating_sub(1) as u32);
        let finite = scorer.run(&[&[0], &[probe_row]], |s| s.iter().all(|v| v.is_finite()))?;
        if !finite {
            return Err(RuntimeError::NonFinite);
        }
        Ok(scorer)
    }

    /// Vocabulary rows including padding row 0 (what history rows must stay below).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Values per output row: `n_rows` scores, or the user-vector dimension of an encoder.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Bytes of the constants the optimized plan holds (its weights as tract keeps them, after
    /// folding): what the model costs in memory beyond per-call state.
    pub fn constant_bytes(&self) -> usize {
        self.plan
            .model()
            .nodes()
            .iter()
            .filter_map(|n| n.op_as::<tract_onnx::tract_core::ops::konst::Const>())
            .map(|c| c.val().len() * c.val().datum_type().size_of())
            .sum()
    }

    /// One output row of [`OnnxScorer::width`] values per history, row-major. Histories are padded with 0 to the
    /// longest in the batch (an empty history becomes `[0]`). An empty batch gives no scores.
    pub fn score_batch(&self, histories: &[&[u32]]) -> Result<Vec<f32>, RuntimeError> {
        self.score_batch_with(histories, <[f32]>::to_vec)
    }

    /// [`OnnxScorer::score_batch`] without copying the scores out of tract's output tensor:
    /// `f` sees the row-major `[batch, width]` output (at 100k rows and batch 32 the copy
    /// is 12.8 MB per call).
    pub fn score_batch_with<R>(
        &self,
        histories: &[&[u32]],
        f: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, RuntimeError> {
        if histories.is_empty() {
            return Ok(f(&[]));
        }
        // Checked here so a bad row is a clean per-request error naming the row, not a tract
        // Gather failure that names graph internals.
        if let Some(&row) = histories
            .iter()
            .flat_map(|h| h.iter())
            .find(|&&r| r as usize >= self.n_rows)
        {
            return Err(RuntimeError::RowOutOfRange {
                row,
                n_rows: self.n_rows,
            });
        }
        self.run(histories, f)
    }

    fn run<R>(&self, histories: &[&[u32]], f: impl FnOnce(&[f32]) -> R) -> Result<R, RuntimeError> {
        let batch = histories.len();
        let len = histories.iter().map(|h| h.len()).max().unwrap_or(0).max(1);
        let mut data = vec![0i64; batch * len];
        for (row, h) in data.chunks_exact_mut(len).zip(histories) {
            row.iter_mut()
                .zip(h.iter())
                .for_each(|(d, &r)| *d = r as i64);
        }
        let infer = |e: TractError| RuntimeError::Inference(format!("{e:#}"));
        let input = Tensor::from_shape(&[batch, len], &data).map_err(infer)?;

        let state = self.states.lock().ok().and_then(|mut s| s.pop());
        let mut state = match state {
            Some(s) => s,
            None => self.plan.spawn().map_err(infer)?,
        };
        let outputs = state.run(tvec!(input.into_tvalue())).map_err(infer)?;
        if let Ok(mut pool) = self.states.lock() {
            if pool.len() < STATE_POOL {
                pool.push(state);
            }
        }

        let out = outputs
            .first()
            .ok_or_else(|| RuntimeError::Inference("model returned no output".into()))?;
        if out.shape() != [batch, self.width] || out.datum_type() != f32::datum_type() {
            return Err(RuntimeError::OutputShape {
                expected: self.width,
                batch,
                actual: out.shape().to_vec(),
            });
        }
        let view = out.try_as_plain_ram().map_err(infer)?;
        Ok(f(view.as_slice::<f32>().map_err(infer)?))
    }
}

/// Names, element types and ranks straight from the protobuf: tract would accept more (it
/// renames nothing and infers types), and the server must refuse a bundle that a different
/// runtime would read differently.
fn check_contract(proto: &pb::ModelProto, output: &str) -> Result<(), RuntimeError> {
    let bad = |m: String| Err(RuntimeError::Contract(m));
    let Some(graph) = proto.graph.as_ref() else {
        return bad("no graph".into());
    };
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let names = |v: &[&pb::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    if inputs.len() != 1 || inputs[0].name != INPUT_NAME {
        return bad(format!(
            "inputs must be exactly [`{INPUT_NAME}`], found {:?}",
            names(&inputs)
        ));
    }
    let outputs: Vec<&pb::ValueInfoProto> = graph.output.iter().collect();
    if outputs.len() != 1 || outputs[0].name != output {
        return bad(format!(
            "outputs must be exactly [`{output}`], found {:?}",
            names(&outputs)
        ));
    }
    check_tensor_type(inputs[0], DataType::Int64)?;
    check_tensor_type(outputs[0], DataType::Float)
}

fn check_tensor_type(info: &pb::ValueInfoProto, want: DataType) -> Result<(), RuntimeError> {
    let tensor = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        None => {
            return Err(RuntimeError::Contract(format!(
                "`{}` has no tensor type",
                info.name
            )));
        }
    };
    if tensor.elem_type != want as i32 {
        let found = DataType::try_from(tensor.elem_type)
            .map(|d| d.as_str_name())
            .unwrap_or("unknown");
        return Err(RuntimeError::Contract(format!(
            "`{}` must be {}, found {found}",
            info.name,
            want.as_str_name()
        )));
    }
    if let Some(shape) = &tensor.shape {
        if shape.dim.len() != 2 {
            return Err(RuntimeError::Contract(format!(
                "`{}` must have rank 2, found rank {}",
                info.name,
                shape.dim.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{EaseWeights, MeanMlpWeights, ModelWeights};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn scorer_is_shareable_across_threads() {
        assert_send_sync::<OnnxScorer>();
    }

    #[test]
    fn loads_and_scores_both_families() {
        for w in [
            ModelWeights::MeanMlp(MeanMlpWeights::random(13, 4, &[5], 1)),
            ModelWeights::Ease(EaseWeights::random(13, 1)),
        ] {
            let s = OnnxScorer::load(&w.to_onnx(), 13).unwrap();
            assert_eq!(s.n_rows(), 13);
            let out = s.score_batch(&[&[1, 2], &[]]).unwrap();
            assert_eq!(out.len(), 2 * 13);
            let borrowed = s
                .score_batch_with(&[&[1, 2], &[]], <[f32]>::to_vec)
                .unwrap();
            assert_eq!(borrowed, out);
            assert!(s.score_batch(&[]).unwrap().is_empty());
        }
    }

    #[test]
    fn out_of_range_rows_are_refused() {
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(6, 2, &[], 0));
        let s = OnnxScorer::load(&w.to_onnx(), 6).unwrap();
        let err = s.score_batch(&[&[1], &[6]]).unwrap_err();
        assert_eq!(err.kind(), "row_out_of_range");
    }

    #[test]
    fn wrong_expected_width_is_refused() {
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(6, 2, &[3], 0));
        let err = OnnxScorer::load(&w.to_onnx(), 7).unwrap_err();
        assert_eq!(err.kind(), "output_shape", "{err}");
        let e = ModelWeights::Ease(EaseWeights::random(6, 0));
        let err = OnnxScorer::load(&e.to_onnx(), 5).unwrap_err();
        assert!(
            matches!(
                err,
                RuntimeError::OutputShape { .. } | RuntimeError::RowOutOfRange { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_truncated_bytes_are_refused() {
        let bytes = ModelWeights::Ease(EaseWeights::random(5, 0)).to_onnx();
        assert!(OnnxScorer::load(&bytes[..bytes.len() / 2], 5).is_err());
        assert!(OnnxScorer::load(b"definitely not protobuf \xff\xff\xff", 5).is_err());
        // Empty bytes decode as an empty ModelProto: no graph.
        assert_eq!(OnnxScorer::load(b"", 5).unwrap_err().kind(), "contract");
    }

    #[test]
    fn renamed_tensors_are_refused() {
        let bytes = ModelWeights::Ease(EaseWeights::random(5, 0)).to_onnx();
        let mut proto = pb::ModelProto::decode(&bytes[..]).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        graph.output[0].name = "logits".into();
        graph.node.last_mut().unwrap().output[0] = "logits".into();
        let err = OnnxScorer::load(&proto.encode_to_vec(), 5).unwrap_err();
        assert_eq!(err.kind(), "contract", "{err}");
        assert!(err.to_string().contains("scores"), "{err}");
    }
}
