//! Builds the contract's ONNX graphs directly as `tract_onnx::pb` protobuf structs, so exporting
//! needs no Python and no ONNX library beyond the one the runtime already links.

use prost::Message;
use tract_onnx::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType,
    tensor_shape_proto::dimension::Value as DimValue, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

use super::weights::{Activation, EaseWeights, MeanMlpWeights, ModelWeights};
use crate::bundle::{INPUT_NAME, OUTPUT_NAME, USER_VECTOR_NAME};
use crate::engine::quantise_rows;

/// Opset of the exported graphs: the lowest with `ReduceSum` axes as an input and the one tract
/// and onnxruntime were both checked against.
pub const OPSET: i64 = 13;
/// IR version 8 is what opset 13 tooling (onnx ≥ 1.10) writes and onnxruntime accepts.
pub const IR_VERSION: i64 = 8;

impl ModelWeights {
    /// Encoded ONNX `ModelProto` (opset 13) implementing the contract.
    ///
    /// # Panics
    /// If the buffers do not match the declared shapes ([`ModelWeights::check_shapes`]): that is a
    /// bug in whoever built the weights, not a runtime condition.
    pub fn to_onnx(&self) -> Vec<u8> {
        if let Err(e) = self.check_shapes() {
            panic!("to_onnx called on {e}");
        }
        to_onnx(self)
    }
}

impl MeanMlpWeights {
    /// ONNX of the user tower alone (bundle format 2): `history` → `user_vector [batch, d_last]`.
    ///
    /// # Panics
    /// If the buffers do not match the declared shapes (as [`ModelWeights::to_onnx`]).
    pub fn to_encoder_onnx(&self) -> Vec<u8> {
        if let Err(e) = self.check_shapes() {
            panic!("to_encoder_onnx called on {e}");
        }
        to_encoder_onnx(self, Precision::F32)
    }

    /// [`MeanMlpWeights::to_encoder_onnx`] with its weight matrices stored as int8 (the
    /// embedding table with one scale per row, each layer with one scale per output unit). The
    /// layers are dequantised by `Cast` + `Mul` on constants, which a runtime folds at load; the
    /// embedding table stays int8 in the runtime's memory, only the gathered history rows are
    /// dequantised per call.
    /// Biases and scales stay f32: the file is a quarter to a third of the f32 one.
    ///
    /// # Panics
    /// As [`MeanMlpWeights::to_encoder_onnx`].
    pub fn to_encoder_onnx_int8(&self) -> Vec<u8> {
        if let Err(e) = self.check_shapes() {
            panic!("to_encoder_onnx_int8 called on {e}");
        }
        to_encoder_onnx(self, Precision::Int8)
    }
}

pub(super) fn to_onnx(weights: &ModelWeights) -> Vec<u8> {
    let mut g = GraphBuilder::default();
    let name = match weights {
        ModelWeights::MeanMlp(w) => {
            mean_mlp(&mut g, w);
            "mean_mlp"
        }
        ModelWeights::Ease(w) => {
            ease(&mut g, w);
            "ease"
        }
    };
    encode(g, name, OUTPUT_NAME, weights.n_rows())
}

/// How the user tower's weight matrices are stored in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Int8 codes with one f32 scale per row of the matrix as used (per output unit).
    Int8,
}

/// The user tower of a `mean_mlp` model alone: `history` → `user_vector [batch, d_last]`.
pub(super) fn to_encoder_onnx(w: &MeanMlpWeights, precision: Precision) -> Vec<u8> {
    let mut g = GraphBuilder {
        precision,
        ..GraphBuilder::default()
    };
    let u = user_tower(&mut g, w);
    g.node("Identity", &[&u], USER_VECTOR_NAME, vec![]);
    encode(g, "mean_mlp_user_encoder", USER_VECTOR_NAME, w.d_last())
}

fn encode(g: GraphBuilder, name: &str, output: &str, width: usize) -> Vec<u8> {
    let graph = GraphProto {
        name: name.into(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(
            INPUT_NAME,
            DataType::Int64,
            &[Dim::Param("batch"), Dim::Param("L")],
        )],
        output: vec![value_info(
            output,
            DataType::Float,
            &[Dim::Param("batch"), Dim::Value(width as i64)],
        )],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "distilrec".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// The padding mask as float `[B, L]`: 1 for a real history row, 0 for padding row 0.
fn mask(g: &mut GraphBuilder) -> String {
    let zero = g.init_i64("zero_i64", &[], &[0]);
    let nonpad = g.node("Greater", &[INPUT_NAME, &zero], "nonpad", vec![]);
    g.node(
        "Cast",
        &[&nonpad],
        "mask",
        vec![attr_int("to", DataType::Float as i64)],
    )
}

fn mean_mlp(g: &mut GraphBuilder, w: &MeanMlpWeights) {
    let u = user_tower(g, w);
    let items = g.init_f32("item_matrix_t", &[w.d_last(), w.n_rows], &w.item_matrix_t);
    let bias = g.init_f32("item_bias", &[w.n_rows], &w.item_bias);
    let logits = g.node("MatMul", &[&u, &items], "logits", vec![]);
    g.node("Add", &[&logits, &bias], OUTPUT_NAME, vec![]);
}

/// Masked mean of the history embeddings, then the MLP; returns the user vector's name.
///
/// The exported embedding table has row 0 (padding) set to zero, so the sum of the gathered
/// rows already is the masked sum: no `[B, L, d]` mask product per call. Row 0 never
/// contributes to the masked mean being exported, so this changes no output; only the count of
/// real rows needs the mask.
///
/// The history is transposed before the gather, so the rows to sum lie along the *leading*
/// axis of `[L, B, d]`. tract 0.23 sums a leading axis of a contiguous f32 tensor as plain
/// column sums; the middle axis of `[B, L, d]` went through ndarray's generic `sum_axis`, one
/// strided `[B, d]` view per history position. Same values up to rounding: tract adds the
/// rows in blocks of 32,768 / (B · d) (a different order only once B · d · L passes 32,768
/// floats). The ML-100K student's encoder, old bundle against new: README.md, "Results".
fn user_tower(g: &mut GraphBuilder, w: &MeanMlpWeights) -> String {
    let mask = mask(g);
    let mut table = w.embedding.clone();
    table[..w.dim].fill(0.0);
    let history_t = g.node(
        "Transpose",
        &[INPUT_NAME],
        "history_t",
        vec![attr_ints("perm", &[1, 0])],
    );
    let gathered = g.gathered_rows("embedding", w.n_rows, w.dim, &table, &history_t);
    let axes0 = g.init_i64("axes_0", &[1], &[0]);
    let summed = g.node(
        "ReduceSum",
        &[&gathered, &axes0],
        "summed",
        vec![attr_int("keepdims", 0)],
    );
    let axes1 = g.init_i64("axes_1", &[1], &[1]);
    let count = g.node(
        "ReduceSum",
        &[&mask, &axes1],
        "count",
        vec![attr_int("keepdims", 1)],
    );
    let one = g.init_f32("one_f32", &[], &[1.0]);
    // An all-padding history has count 0: its mean is defined as the zero vector.
    let count = g.node("Max", &[&count, &one], "count_clamped", vec![]);
    let mut u = g.node("Div", &[&summed, &count], "user_mean", vec![]);
    let act = match w.activation {
        Activation::Relu => "Relu",
        Activation::Tanh => "Tanh",
    };
    for (i, l) in w.layers.iter().enumerate() {
        let wi = g.weight_by_column(&format!("layer{i}_w"), l.n_in, l.n_out, &l.w);
        let bi = g.init_f32(&format!("layer{i}_b"), &[l.n_out], &l.b);
        let h = g.node("MatMul", &[&u, &wi], &format!("layer{i}_mm"), vec![]);
        let h = g.node("Add", &[&h, &bi], &format!("layer{i}_pre"), vec![]);
        u = g.node(act, &[&h], &format!("layer{i}_out"), vec![]);
    }
    u
}

fn ease(g: &mut GraphBuilder, w: &EaseWeights) {
    // Row 0 of B is zero, but masking keeps the contract independent of that convention.
    let mask = mask(g);
    let axes2 = g.init_i64("axes_2", &[1], &[2]);
    let mask3 = g.node("Unsqueeze", &[&mask, &axes2], "mask3", vec![]);
    let b = g.init_f32("item_item", &[w.n_rows, w.n_rows], &w.b);
    let rows = g.node(
        "Gather",
        &[&b, INPUT_NAME],
        "rows",
        vec![attr_int("axis", 0)],
    );
    let masked = g.node("Mul", &[&rows, &mask3], "masked", vec![]);
    let axes1 = g.init_i64("axes_1", &[1], &[1]);
    g.node(
        "ReduceSum",
        &[&masked, &axes1],
        OUTPUT_NAME,
        vec![attr_int("keepdims", 0)],
    );
}

struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    precision: Precision,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            precision: Precision::F32,
        }
    }
}

impl GraphBuilder {
    /// Rows `index` of the `[rows, cols]` table `data`, as f32 `[index dims…, cols]` named
    /// `gathered`. With int8 precision the table stays int8 in the graph: the codes and their
    /// row scales are gathered first and only the gathered rows are dequantised. Dequantising
    /// the table itself (as [`GraphBuilder::weight_by_column`] does for the small layers) is folded by a runtime into an f32
    /// constant at load, which at a 1M-row vocabulary is 256 MB of the process at d 64 where
    /// the codes are 64 MB.
    fn gathered_rows(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        data: &[f32],
        index: &str,
    ) -> String {
        let gather = |g: &mut Self, table: &str, out: &str| {
            g.node("Gather", &[table, index], out, vec![attr_int("axis", 0)])
        };
        match self.precision {
            Precision::F32 => {
                let table = self.init_f32(name, &[rows, cols], data);
                gather(self, &table, "gathered")
            }
            Precision::Int8 => {
                let (codes, scales) = quantise_rows(data, cols);
                let q = self.push_init(
                    &format!("{name}_int8"),
                    &[rows, cols],
                    DataType::Int8,
                    codes.iter().map(|&c| c as u8).collect(),
                );
                let s = self.init_f32(&format!("{name}_scale"), &[rows, 1], &scales);
                let q = gather(self, &q, "gathered_int8");
                let s = gather(self, &s, "gathered_scale");
                let f = self.node(
                    "Cast",
                    &[&q],
                    "gathered_f32",
                    vec![attr_int("to", DataType::Float as i64)],
                );
                self.node("Mul", &[&f, &s], "gathered", vec![])
            }
        }
    }

    /// A `[rows, cols]` weight matrix named `name`: an f32 initializer, or with int8 precision
    /// int8 codes with one scale per column (a layer's output unit), dequantised by `Cast` and
    /// `Mul` on constants, which a runtime folds at load.
    fn weight_by_column(&mut self, name: &str, rows: usize, cols: usize, data: &[f32]) -> String {
        match self.precision {
            Precision::F32 => self.init_f32(name, &[rows, cols], data),
            Precision::Int8 => {
                let t: Vec<f32> = (0..cols)
                    .flat_map(|c| (0..rows).map(move |r| data[r * cols + c]))
                    .collect();
                let (codes_t, scales) = quantise_rows(&t, rows);
                let codes: Vec<i8> = (0..rows)
                    .flat_map(|r| (0..cols).map(move |c| (r, c)))
                    .map(|(r, c)| codes_t[c * rows + r])
                    .collect();
                self.dequantised(name, &[rows, cols], &codes, &[1, cols], &scales)
            }
        }
    }

    fn dequantised(
        &mut self,
        name: &str,
        dims: &[usize],
        codes: &[i8],
        scale_dims: &[usize],
        scales: &[f32],
    ) -> String {
        let q = self.push_init(
            &format!("{name}_int8"),
            dims,
            DataType::Int8,
            codes.iter().map(|&c| c as u8).collect(),
        );
        let s = self.init_f32(&format!("{name}_scale"), scale_dims, scales);
        let f = self.node(
            "Cast",
            &[&q],
            &format!("{name}_f32"),
            vec![attr_int("to", DataType::Float as i64)],
        );
        self.node("Mul", &[&f, &s], name, vec![])
    }

    /// Adds a single-output node named after its output and returns the output's name.
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            name: format!("{output}_{op}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
        output.to_string()
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
        // raw_data (little-endian) instead of float_data: no per-value varint framing, which
        // matters at 100k+ rows.
        let mut raw = Vec::with_capacity(data.len() * 4);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.push_init(name, dims, DataType::Float, raw)
    }

    fn init_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(name, dims, DataType::Int64, raw)
    }

    fn push_init(&mut self, name: &str, dims: &[usize], dt: DataType, raw_data: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            raw_data,
            ..Default::default()
        });
        name.to_string()
    }
}

enum Dim<'a> {
    Param(&'a str),
    Value(i64),
}

fn value_info(name: &str, dt: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Param(p) => DimValue::DimParam(p.to_string()),
                Dim::Value(v) => DimValue::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dt as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::MeanMlpWeights;

    #[test]
    fn exported_model_declares_the_contract() {
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(7, 3, &[4], 0));
        let proto = ModelProto::decode(&w.to_onnx()[..]).unwrap();
        assert_eq!(proto.opset_import[0].version, OPSET);
        let graph = proto.graph.unwrap();
        assert_eq!(graph.input.len(), 1);
        assert_eq!(graph.input[0].name, INPUT_NAME);
        assert_eq!(graph.output.len(), 1);
        assert_eq!(graph.output[0].name, OUTPUT_NAME);
        let last = graph.node.last().unwrap();
        assert_eq!(last.output, vec![OUTPUT_NAME.to_string()]);
        // Every node input is the graph input, an initializer or an earlier node's output.
        let mut known: Vec<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
        known.push(INPUT_NAME.into());
        for n in &graph.node {
            for i in &n.input {
                assert!(known.contains(i), "{} reads undefined {i}", n.name);
            }
            known.extend(n.output.iter().cloned());
        }
    }
}
