//! What a graph says it will allocate, checked before tract allocates it.
//!
//! An ONNX file of a few hundred bytes can declare a `ConstantOfShape` of `[10^6, 10^6]` or an
//! initializer whose dims multiply to more than memory; tract folds constants while it
//! optimizes, so it would try to allocate them inside the load, and an allocation failure
//! aborts the process (it is not a panic the loader could catch). Shapes computed from the
//! input at run time cannot be checked here; the warm-up runs those under the load deadline.

use std::collections::HashMap;

use tract_onnx::pb::{self, tensor_proto::DataType};

/// Largest tensor (and largest sum of declared tensors) a graph may declare: twice the default
/// `--max-model-bytes`, so any graph whose weights fit in an accepted file passes.
pub const MAX_DECLARED_BYTES: u64 = 2 << 30;

/// Checks every initializer, `Constant` and constant-shaped `ConstantOfShape` of `graph` (and
/// of its subgraphs) against `max` bytes each and in total. The error names the tensor.
pub fn check_declared_sizes(graph: &pb::GraphProto, max: u64) -> Result<(), String> {
    let mut total = 0u64;
    check_graph(graph, max, &mut total)
}

fn check_graph(graph: &pb::GraphProto, max: u64, total: &mut u64) -> Result<(), String> {
    let mut int64_consts: HashMap<&str, &pb::TensorProto> = HashMap::new();
    for t in &graph.initializer {
        add(
            total,
            max,
            &format!("initializer `{}`", t.name),
            tensor_bytes(t),
        )?;
        int64_consts.insert(t.name.as_str(), t);
    }
    for node in &graph.node {
        for attr in &node.attribute {
            if let Some(t) = &attr.t {
                add(
                    total,
                    max,
                    &format!("`{}` attribute `{}`", node.op_type, attr.name),
                    tensor_bytes(t),
                )?;
            }
            for t in &attr.tensors {
                add(
                    total,
                    max,
                    &format!("`{}` attribute `{}`", node.op_type, attr.name),
                    tensor_bytes(t),
                )?;
            }
            if let Some(g) = &attr.g {
                check_graph(g, max, total)?;
            }
            for g in &attr.graphs {
                check_graph(g, max, total)?;
            }
        }
        match node.op_type.as_str() {
            "Constant" => {
                if let (Some(out), Some(t)) = (
                    node.output.first(),
                    node.attribute.iter().find_map(|a| a.t.as_ref()),
                ) {
                    int64_consts.insert(out.as_str(), t);
                }
            }
            "ConstantOfShape" => {
                let Some(shape) = node
                    .input
                    .first()
                    .and_then(|i| int64_consts.get(i.as_str()))
                else {
                    continue;
                };
                let elem = node
                    .attribute
                    .iter()
                    .find_map(|a| a.t.as_ref())
                    .map_or(Some(4), |t| elem_size(t.data_type));
                let bytes = int64_values(shape)
                    .and_then(|dims| element_count(&dims))
                    .zip(elem)
                    .and_then(|(n, e)| n.checked_mul(e));
                add(
                    total,
                    max,
                    &format!("ConstantOfShape `{}`", node.name),
                    bytes,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Counts one declared tensor against the per-tensor and the total cap.
fn add(total: &mut u64, max: u64, what: &str, bytes: Option<u64>) -> Result<(), String> {
    let bytes = bytes
        .filter(|&b| b <= max)
        .ok_or_else(|| format!("{what} declares more than {max} bytes"))?;
    *total = total
        .checked_add(bytes)
        .filter(|&t| t <= max)
        .ok_or_else(|| format!("the graph's constants declare more than {max} bytes"))?;
    Ok(())
}

/// Bytes of a tensor's declared shape; `None` when the product overflows or a dim is negative.
fn tensor_bytes(t: &pb::TensorProto) -> Option<u64> {
    element_count(&t.dims)?.checked_mul(elem_size(t.data_type)?)
}

/// Elements of a tensor of shape `dims`; `None` when the product overflows `u64` or a dim is
/// negative (a file can declare any dims, whatever data it holds).
pub fn element_count(dims: &[i64]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

fn elem_size(data_type: i32) -> Option<u64> {
    use DataType::*;
    Some(match DataType::try_from(data_type).ok()? {
        Bool | Int8 | Uint8 | Float8e4m3fn | Float8e4m3fnuz | Float8e5m2 | Float8e5m2fnuz => 1,
        Int16 | Uint16 | Float16 | Bfloat16 => 2,
        Float | Int32 | Uint32 => 4,
        Int64 | Uint64 | Double | Complex64 => 8,
        Complex128 => 16,
        // Strings have no fixed size: count the pointer-sized slot each element costs.
        String => 8,
        _ => 8,
    })
}

/// The values of an int64 tensor (a shape), from `int64_data` or little-endian `raw_data`.
fn int64_values(t: &pb::TensorProto) -> Option<Vec<i64>> {
    if t.data_type != DataType::Int64 as i32 {
        return None;
    }
    if !t.int64_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    let raw = t.raw_data.as_chunks::<8>();
    raw.1
        .is_empty()
        .then(|| raw.0.iter().map(|b| i64::from_le_bytes(*b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int64(name: &str, values: &[i64]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        }
    }

    fn constant_of_shape(shape: &str) -> pb::NodeProto {
        pb::NodeProto {
            name: "big".into(),
            op_type: "ConstantOfShape".into(),
            input: vec![shape.into()],
            output: vec!["out".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_huge_constant_of_shape_is_refused() {
        let graph = pb::GraphProto {
            initializer: vec![int64("shape", &[1_000_000, 1_000_000])],
            node: vec![constant_of_shape("shape")],
            ..Default::default()
        };
        let err = check_declared_sizes(&graph, MAX_DECLARED_BYTES).unwrap_err();
        assert!(err.contains("ConstantOfShape `big`"), "{err}");
        // Overflowing and negative shapes too.
        for dims in [[i64::MAX, i64::MAX], [-1, 4]] {
            let graph = pb::GraphProto {
                initializer: vec![int64("shape", &dims)],
                node: vec![constant_of_shape("shape")],
                ..Default::default()
            };
            assert!(check_declared_sizes(&graph, MAX_DECLARED_BYTES).is_err());
        }
        // A small one passes.
        let graph = pb::GraphProto {
            initializer: vec![int64("shape", &[100, 100])],
            node: vec![constant_of_shape("shape")],
            ..Default::default()
        };
        check_declared_sizes(&graph, MAX_DECLARED_BYTES).unwrap();
    }

    #[test]
    fn an_initializer_declaring_more_than_the_cap_is_refused() {
        let t = pb::TensorProto {
            name: "w".into(),
            dims: vec![1 << 20, 1 << 20],
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        let graph = pb::GraphProto {
            initializer: vec![t],
            ..Default::default()
        };
        let err = check_declared_sizes(&graph, MAX_DECLARED_BYTES).unwrap_err();
        assert!(err.contains("initializer `w`"), "{err}");
    }
}
