//! Owned by the onnx helper.
