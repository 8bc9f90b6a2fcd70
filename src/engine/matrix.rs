//! The item side of a two-tower model: `[n_rows, dim]` f32 vectors and a per-row bias.

/// Item vectors (row-major, row 0 = padding) and per-row bias (zeros when the model has none).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemMatrix {
    n_rows: usize,
    dim: usize,
    vectors: Vec<f32>,
    bias: Vec<f32>,
    has_bias: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("item matrix: {0}")]
    Shape(String),
    #[error("item matrix: value at row {row} is not finite")]
    NonFinite { row: usize },
}

impl ItemMatrix {
    pub fn new(
        n_rows: usize,
        dim: usize,
        vectors: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self, MatrixError> {
        if n_rows < 2 || dim == 0 {
            return Err(MatrixError::Shape(format!(
                "needs at least 2 rows and 1 dimension, got [{n_rows}, {dim}]"
            )));
        }
        if vectors.len() != n_rows * dim {
            return Err(MatrixError::Shape(format!(
                "{} values for [{n_rows}, {dim}]",
                vectors.len()
            )));
        }
        let has_bias = bias.is_some();
        let bias = bias.unwrap_or_else(|| vec![0.0; n_rows]);
        if bias.len() != n_rows {
            return Err(MatrixError::Shape(format!(
                "{} bias values for {n_rows} rows",
                bias.len()
            )));
        }
        if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
            return Err(MatrixError::NonFinite { row: i / dim });
        }
        if let Some(row) = bias.iter().position(|v| !v.is_finite()) {
            return Err(MatrixError::NonFinite { row });
        }
        Ok(ItemMatrix {
            n_rows,
            dim,
            vectors,
            bias,
            has_bias,
        })
    }

    /// Size in bytes of the `items.f32` file for this shape.
    pub fn file_len(n_rows: usize, dim: usize, has_bias: bool) -> usize {
        4 * (n_rows * dim + if has_bias { n_rows } else { 0 })
    }

    /// Parses `items.f32`: `n_rows·dim` little-endian f32 vectors, then `n_rows` biases if
    /// `has_bias`.
    pub fn from_le_bytes(
        bytes: &[u8],
        n_rows: usize,
        dim: usize,
        has_bias: bool,
    ) -> Result<Self, MatrixError> {
        let want = Self::file_len(n_rows, dim, has_bias);
        if bytes.len() != want {
            return Err(MatrixError::Shape(format!(
                "file has {} bytes, [{n_rows}, {dim}]{} needs {want}",
                bytes.len(),
                if has_bias { " + bias" } else { "" }
            )));
        }
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (vectors, bias) = floats.split_at(n_rows * dim);
        Self::new(
            n_rows,
            dim,
            vectors.to_vec(),
            has_bias.then(|| bias.to_vec()),
        )
    }

    /// Size in bytes of an item file of `dtype` for this shape; `None` for an unknown dtype or
    /// a shape whose size overflows (the shape comes from a manifest).
    pub fn file_len_of(dtype: &str, n_rows: usize, dim: usize, has_bias: bool) -> Option<usize> {
        let bias = if has_bias { n_rows.checked_mul(4)? } else { 0 };
        let per_row = match dtype {
            DTYPE_F32 => dim.checked_mul(4)?,
            DTYPE_INT8 => dim.checked_add(4)?,
            _ => return None,
        };
        n_rows.checked_mul(per_row)?.checked_add(bias)
    }

    /// Bytes the matrix takes in memory once decoded (f32 vectors + f32 biases), whatever the
    /// file's dtype: an int8 file is a quarter of this. `None` when it overflows.
    pub fn decoded_len(n_rows: usize, dim: usize, has_bias: bool) -> Option<u64> {
        let per_row = dim.checked_add(usize::from(has_bias))?.checked_mul(4)?;
        u64::try_from(n_rows.checked_mul(per_row)?).ok()
    }

    /// Parses an item file of `dtype`: [`DTYPE_F32`] (see [`ItemMatrix::from_le_bytes`]) or
    /// [`DTYPE_INT8`]: `n_rows·dim` int8 codes, `n_rows` little-endian f32 row scales, then
    /// `n_rows` f32 biases if `has_bias`; vectors are dequantised (`code · scale`) on load.
    pub fn from_file_bytes(
        dtype: &str,
        bytes: &[u8],
        n_rows: usize,
        dim: usize,
        has_bias: bool,
    ) -> Result<Self, MatrixError> {
        let want = Self::file_len_of(dtype, n_rows, dim, has_bias)
            .ok_or_else(|| MatrixError::Shape(format!("unknown dtype `{dtype}`")))?;
        if dtype == DTYPE_F32 {
            return Self::from_le_bytes(bytes, n_rows, dim, has_bias);
        }
        let (codes, scales, bias) = split_int8(bytes, want, n_rows, dim, has_bias)?;
        let vectors = codes
            .chunks_exact(dim)
            .zip(&scales)
            .flat_map(|(row, &s)| row.iter().map(move |&c| c as i8 as f32 * s))
            .collect();
        Self::new(n_rows, dim, vectors, bias)
    }

    /// The item file of `dtype` (see [`ItemMatrix::from_file_bytes`]); `None` for an unknown
    /// dtype. Int8 quantises each row with its own scale ([`quantise_row`]).
    pub fn to_file_bytes(&self, dtype: &str) -> Option<Vec<u8>> {
        match dtype {
            DTYPE_F32 => Some(self.to_le_bytes()),
            DTYPE_INT8 => {
                let (codes, scales) = quantise_rows(&self.vectors, self.dim);
                let bias: &[f32] = if self.has_bias { &self.bias } else { &[] };
                let mut out: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
                out.extend(scales.iter().chain(bias).flat_map(|v| v.to_le_bytes()));
                Some(out)
            }
            _ => None,
        }
    }

    /// The `items.f32` encoding (see [`ItemMatrix::from_le_bytes`]).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let bias: &[f32] = if self.has_bias { &self.bias } else { &[] };
        self.vectors
            .iter()
            .chain(bias)
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn has_bias(&self) -> bool {
        self.has_bias
    }

    /// All vectors, row-major `[n_rows, dim]`.
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.vectors[r * self.dim..(r + 1) * self.dim]
    }

    /// Exact `query · v_r + b_r`.
    #[inline]
    pub fn score(&self, query: &[f32], r: usize) -> f32 {
        dot(query, self.row(r)) + self.bias[r]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.vectors.len() + self.bias.len())
    }
}

/// An int8 item file as stored (`items.i8`, [`DTYPE_INT8`]): row-major codes, one f32 scale
/// per row, the biases. The model's item vectors *are* `scale_r · c_r`, so an engine that scans
/// codes can keep these and no f32 copy.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantisedRows {
    n_rows: usize,
    dim: usize,
    /// `[n_rows, dim]` codes as bytes (`c as u8`).
    codes: Vec<u8>,
    scales: Vec<f32>,
    bias: Vec<f32>,
    has_bias: bool,
}

impl QuantisedRows {
    /// Parses the file's bytes (layout: [`ItemMatrix::from_file_bytes`]), keeping the codes in
    /// the buffer they came in; scales and biases must be finite.
    pub fn from_file_bytes(
        mut bytes: Vec<u8>,
        n_rows: usize,
        dim: usize,
        has_bias: bool,
    ) -> Result<Self, MatrixError> {
        let want = ItemMatrix::file_len_of(DTYPE_INT8, n_rows, dim, has_bias)
            .ok_or_else(|| MatrixError::Shape(format!("[{n_rows}, {dim}] overflows")))?;
        if n_rows < 2 || dim == 0 {
            return Err(MatrixError::Shape(format!(
                "needs at least 2 rows and 1 dimension, got [{n_rows}, {dim}]"
            )));
        }
        let (_, scales, bias) = split_int8(&bytes, want, n_rows, dim, has_bias)?;
        let bias = bias.unwrap_or_else(|| vec![0.0; n_rows]);
        bytes.truncate(n_rows * dim);
        bytes.shrink_to_fit();
        if let Some(row) = scales
            .iter()
            .zip(&bias)
            .position(|(s, b)| !s.is_finite() || !b.is_finite())
        {
            return Err(MatrixError::NonFinite { row });
        }
        Ok(QuantisedRows {
            n_rows,
            dim,
            codes: bytes,
            scales,
            bias,
            has_bias,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `r`'s codes.
    pub fn codes(&self, r: usize) -> impl Iterator<Item = i8> + '_ {
        self.codes[r * self.dim..(r + 1) * self.dim]
            .iter()
            .map(|&c| c as i8)
    }

    pub fn scale(&self, r: usize) -> f32 {
        self.scales[r]
    }

    /// Per-row bias (zeros when the model has none).
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The f32 matrix these rows stand for (`c · scale`, as [`ItemMatrix::from_file_bytes`]
    /// decodes an int8 file), for engines that scan f32.
    pub fn dequantise(&self) -> Result<ItemMatrix, MatrixError> {
        let vectors = (0..self.n_rows)
            .flat_map(|r| {
                let s = self.scales[r];
                self.codes(r).map(move |c| c as f32 * s)
            })
            .collect();
        ItemMatrix::new(
            self.n_rows,
            self.dim,
            vectors,
            self.has_bias.then(|| self.bias.clone()),
        )
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * (self.scales.len() + self.bias.len())
    }
}

/// An int8 item file's parts: codes, row scales, biases (`None` without bias).
type Int8Parts<'a> = (&'a [u8], Vec<f32>, Option<Vec<f32>>);

/// Splits an int8 item file ([`ItemMatrix::from_file_bytes`]) of `want` bytes into its parts.
fn split_int8(
    bytes: &[u8],
    want: usize,
    n_rows: usize,
    dim: usize,
    has_bias: bool,
) -> Result<Int8Parts<'_>, MatrixError> {
    if bytes.len() != want {
        return Err(MatrixError::Shape(format!(
            "file has {} bytes, int8 [{n_rows}, {dim}] + scales{} needs {want}",
            bytes.len(),
            if has_bias { " + bias" } else { "" }
        )));
    }
    let (codes, rest) = bytes.split_at(n_rows * dim);
    let mut scales: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let bias = has_bias.then(|| scales.split_off(n_rows));
    Ok((codes, scales, bias))
}

/// Some rows of an item side, read from the file without decoding the rest: what a saved graph
/// is checked against when the graph, not the matrix, will serve.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSample {
    n_rows: usize,
    dim: usize,
    /// `(row, vector, bias)`, bias 0 when the model has none.
    rows: Vec<(usize, Vec<f32>, f32)>,
}

impl RowSample {
    /// `rows` of the whole matrix.
    pub fn from_matrix(items: &ItemMatrix, rows: &[usize]) -> Self {
        RowSample {
            n_rows: items.n_rows,
            dim: items.dim,
            rows: rows
                .iter()
                .map(|&r| (r, items.row(r).to_vec(), items.bias[r]))
                .collect(),
        }
    }

    /// `rows` of an item file of `dtype` (layouts: [`ItemMatrix::from_file_bytes`]), each
    /// read with `read_at(offset, buffer)`; values must be finite, as in a whole matrix.
    pub fn read(
        dtype: &str,
        n_rows: usize,
        dim: usize,
        has_bias: bool,
        rows: &[usize],
        mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> Result<Self, RowSampleError> {
        let f32_at = |read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
                      offset: usize|
         -> std::io::Result<f32> {
            let mut b = [0u8; 4];
            read_at(offset as u64, &mut b)?;
            Ok(f32::from_le_bytes(b))
        };
        let mut out = Vec::with_capacity(rows.len());
        for &r in rows {
            if r >= n_rows {
                return Err(MatrixError::Shape(format!("row {r} of {n_rows}")).into());
            }
            let (vector, after_vectors) = match dtype {
                DTYPE_F32 => {
                    let mut b = vec![0u8; 4 * dim];
                    read_at((4 * r * dim) as u64, &mut b)?;
                    let v: Vec<f32> = b
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    (v, 4 * n_rows * dim)
                }
                DTYPE_INT8 => {
                    let mut codes = vec![0u8; dim];
                    read_at((r * dim) as u64, &mut codes)?;
                    let scale = f32_at(&mut read_at, n_rows * dim + 4 * r)?;
                    let v: Vec<f32> = codes.iter().map(|&c| c as i8 as f32 * scale).collect();
                    (v, n_rows * dim + 4 * n_rows)
                }
                _ => return Err(MatrixError::Shape(format!("unknown dtype `{dtype}`")).into()),
            };
            let bias = if has_bias {
                f32_at(&mut read_at, after_vectors + 4 * r)?
            } else {
                0.0
            };
            if !bias.is_finite() || vector.iter().any(|v| !v.is_finite()) {
                return Err(MatrixError::NonFinite { row: r }.into());
            }
            out.push((r, vector, bias));
        }
        Ok(RowSample {
            n_rows,
            dim,
            rows: out,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `(row, vector, bias)` of every sampled row.
    pub fn rows(&self) -> impl Iterator<Item = (usize, &[f32], f32)> {
        self.rows.iter().map(|(r, v, b)| (*r, v.as_slice(), *b))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RowSampleError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `item_side.dtype` of little-endian f32 vectors (`items.f32`).
pub const DTYPE_F32: &str = "float32_le";
/// `item_side.dtype` of int8 vectors with one f32 scale per row (`items.i8`).
pub const DTYPE_INT8: &str = "int8_row_scaled";

/// Symmetric int8 quantisation of one vector into `out` (zero-padded past `v.len()`):
/// `v ≈ scale · code`, codes in `[-127, 127]`, `scale = max |v| / 127` (1 for a zero vector),
/// so each element is off by at most `scale / 2`. Returns the scale.
pub fn quantise_row(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    out[v.len()..].fill(0);
    scale
}

/// [`quantise_row`] over every `dim`-wide row of `values`: `(codes, one scale per row)`.
pub fn quantise_rows(values: &[f32], dim: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = vec![0i8; values.len()];
    let scales = values
        .chunks_exact(dim)
        .zip(codes.chunks_exact_mut(dim))
        .map(|(v, out)| quantise_row(v, out))
        .collect();
    (codes, scales)
}

/// f32 dot product with independent accumulators (one running sum is several times slower:
/// it serialises on the add latency).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Int8 rows kept as stored stand for exactly the matrix the file decodes to.
    #[test]
    fn quantised_rows_dequantise_to_the_decoded_file() {
        let (n_rows, dim) = (9, 5);
        let vectors: Vec<f32> = (0..n_rows * dim).map(|i| (i as f32 * 0.71).cos()).collect();
        for has_bias in [false, true] {
            let bias = has_bias.then(|| (0..n_rows).map(|i| i as f32 * 0.3).collect());
            let m = ItemMatrix::new(n_rows, dim, vectors.clone(), bias).unwrap();
            let file = m.to_file_bytes(DTYPE_INT8).unwrap();
            let decoded =
                ItemMatrix::from_file_bytes(DTYPE_INT8, &file, n_rows, dim, has_bias).unwrap();
            let rows = QuantisedRows::from_file_bytes(file.clone(), n_rows, dim, has_bias).unwrap();
            assert_eq!(rows.dequantise().unwrap(), decoded);
            assert_eq!(rows.bytes(), n_rows * dim + 8 * n_rows);
            assert!(
                QuantisedRows::from_file_bytes(file[1..].to_vec(), n_rows, dim, has_bias).is_err()
            );
        }
        let m = ItemMatrix::new(n_rows, dim, vectors, None).unwrap();
        let mut file = m.to_file_bytes(DTYPE_INT8).unwrap();
        let at = n_rows * dim + 4 * 2;
        file[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert_eq!(
            QuantisedRows::from_file_bytes(file, n_rows, dim, false),
            Err(MatrixError::NonFinite { row: 2 })
        );
    }

    /// Rows read at their offsets in the file equal the rows of the whole decoded file, for
    /// both dtypes, with and without bias; a non-finite sampled row is refused.
    #[test]
    fn a_row_sample_read_from_the_file_equals_the_decoded_rows() {
        let (n_rows, dim) = (7, 3);
        let vectors: Vec<f32> = (0..n_rows * dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let bias: Vec<f32> = (0..n_rows).map(|i| i as f32 * 0.1 - 0.2).collect();
        let rows = [1, 3, 6];
        for has_bias in [false, true] {
            let m = ItemMatrix::new(n_rows, dim, vectors.clone(), has_bias.then(|| bias.clone()))
                .unwrap();
            for dtype in [DTYPE_F32, DTYPE_INT8] {
                let file = m.to_file_bytes(dtype).unwrap();
                let decoded =
                    ItemMatrix::from_file_bytes(dtype, &file, n_rows, dim, has_bias).unwrap();
                let read = RowSample::read(dtype, n_rows, dim, has_bias, &rows, |at, buf| {
                    let at = at as usize;
                    buf.copy_from_slice(&file[at..at + buf.len()]);
                    Ok(())
                })
                .unwrap();
                assert_eq!(
                    read,
                    RowSample::from_matrix(&decoded, &rows),
                    "{dtype} {has_bias}"
                );
            }
        }
        let mut bad = vectors.clone();
        bad[3 * dim + 1] = f32::NAN;
        let file: Vec<u8> = bad.iter().flat_map(|v| v.to_le_bytes()).collect();
        let read = RowSample::read(DTYPE_F32, n_rows, dim, false, &rows, |at, buf| {
            let at = at as usize;
            buf.copy_from_slice(&file[at..at + buf.len()]);
            Ok(())
        });
        assert!(matches!(
            read,
            Err(RowSampleError::Matrix(MatrixError::NonFinite { row: 3 }))
        ));
    }

    #[test]
    fn file_round_trip_with_and_without_bias() {
        let m = ItemMatrix::new(
            3,
            2,
            vec![0., 0., 1., 2., -3., 4.5],
            Some(vec![0., 1., -1.]),
        )
        .unwrap();
        let bytes = m.to_le_bytes();
        assert_eq!(bytes.len(), ItemMatrix::file_len(3, 2, true));
        assert_eq!(ItemMatrix::from_le_bytes(&bytes, 3, 2, true).unwrap(), m);
        let nb = ItemMatrix::new(2, 2, vec![1., 2., 3., 4.], None).unwrap();
        let bytes = nb.to_le_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(ItemMatrix::from_le_bytes(&bytes, 2, 2, false).unwrap(), nb);
        assert!(ItemMatrix::from_le_bytes(&bytes, 2, 2, true).is_err());
        assert!(ItemMatrix::from_le_bytes(&bytes[..15], 2, 2, false).is_err());
    }

    #[test]
    fn int8_file_round_trip_is_within_half_a_step_per_element() {
        let v: Vec<f32> = (0..5 * 7)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13)
            .collect();
        let mut v = v;
        v[7..14].fill(0.0); // an all-zero row: scale 1, codes 0
        let m = ItemMatrix::new(5, 7, v, Some(vec![0., 1., -1., 0.5, 2.])).unwrap();
        let bytes = m.to_file_bytes(DTYPE_INT8).unwrap();
        assert_eq!(
            bytes.len(),
            ItemMatrix::file_len_of(DTYPE_INT8, 5, 7, true).unwrap()
        );
        assert_eq!(bytes.len(), 5 * 7 + 4 * 5 + 4 * 5);
        let back = ItemMatrix::from_file_bytes(DTYPE_INT8, &bytes, 5, 7, true).unwrap();
        assert_eq!(back.bias(), m.bias(), "biases are stored in f32");
        for r in 0..5 {
            let step = m.row(r).iter().fold(0f32, |a, x| a.max(x.abs())) / 127.0;
            for (a, b) in m.row(r).iter().zip(back.row(r)) {
                assert!((a - b).abs() <= step / 2.0 + 1e-7, "row {r}: {a} vs {b}");
            }
        }
        assert!(back.row(1).iter().all(|&x| x == 0.0));
        // Quantising the dequantised matrix again gives the same file: the codes are stable.
        assert_eq!(back.to_file_bytes(DTYPE_INT8).unwrap(), bytes);
        assert!(ItemMatrix::from_file_bytes(DTYPE_INT8, &bytes[1..], 5, 7, true).is_err());
        assert!(ItemMatrix::from_file_bytes("int4", &bytes, 5, 7, true).is_err());
        assert!(m.to_file_bytes("int4").is_none());
    }

    #[test]
    fn bad_shapes_and_values_are_refused() {
        assert!(ItemMatrix::new(1, 2, vec![0.; 2], None).is_err());
        assert!(ItemMatrix::new(2, 2, vec![0.; 3], None).is_err());
        assert!(ItemMatrix::new(2, 2, vec![0.; 4], Some(vec![0.])).is_err());
        assert_eq!(
            ItemMatrix::new(2, 2, vec![0., 0., f32::NAN, 0.], None).unwrap_err(),
            MatrixError::NonFinite { row: 1 }
        );
    }

    #[test]
    fn score_is_dot_plus_bias() {
        let dim = 19;
        let v: Vec<f32> = (0..2 * dim).map(|i| i as f32 * 0.25).collect();
        let m = ItemMatrix::new(2, dim, v.clone(), Some(vec![0.0, 2.0])).unwrap();
        let q: Vec<f32> = (0..dim).map(|i| 1.0 - i as f32 * 0.1).collect();
        let want: f32 = q.iter().zip(&v[dim..]).map(|(a, b)| a * b).sum::<f32>() + 2.0;
        assert!((m.score(&q, 1) - want).abs() < 1e-4);
    }
}
