//! Interaction logs: reading the formats people have, and the train/valid/test split.
//!
//! Users and items get dense 0-based indices in order of first appearance. Item index `i` is
//! vocabulary row `i + 1` in a model bundle (row 0 is padding).

mod formats;
mod records;
pub mod split;

use std::collections::HashMap;
use std::path::Path;

pub use formats::Format;
pub use records::{DataError, Interaction, Interactions};
pub use split::{random_split, Split};

/// Reads an interaction log. `format = Auto` decides by file name; `min_rating` keeps only
/// interactions rated at least that (default: every rating is a positive, as in RecBole).
/// Titles are taken from the sibling item file where the format has one (`*.item`, `u.item`,
/// `movies.dat`, `movies.csv`).
pub fn read_interactions(
    path: &Path,
    format: Format,
    min_rating: Option<f32>,
) -> Result<Interactions, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let sha256 = crate::bundle::sha256_hex(&bytes);
    let format = format.resolve(path);
    // Ids are interned as records stream out of the parser: only one copy of each distinct id
    // and a 24-byte record per interaction are kept.
    let mut user_index: HashMap<String, u32> = HashMap::new();
    let mut item_index: HashMap<String, u32> = HashMap::new();
    let mut user_ids = Vec::new();
    let mut item_ids = Vec::new();
    let mut records = Vec::new();
    let intern = |index: &mut HashMap<String, u32>, ids: &mut Vec<String>, id: &str| -> u32 {
        if let Some(&i) = index.get(id) {
            return i;
        }
        let i = ids.len() as u32;
        ids.push(id.to_string());
        index.insert(id.to_string(), i);
        i
    };
    formats::parse(path, &bytes, format, &mut |r| {
        if min_rating.is_some_and(|m| r.rating < m) {
            return Ok(());
        }
        for (what, id) in [("user", r.user), ("item", r.item)] {
            // Bundles store ids one per line, tab-separated: such an id would be split or
            // merged with another on the way to the server.
            if id.contains(['\t', '\n', '\r']) {
                return Err(DataError::Parse {
                    path: path.to_path_buf(),
                    line: r.line,
                    message: format!(
                        "{what} id {id:?} contains a tab or line break, which model bundles \
                         cannot store"
                    ),
                });
            }
        }
        let user = intern(&mut user_index, &mut user_ids, r.user);
        let item = intern(&mut item_index, &mut item_ids, r.item);
        records.push(Interaction {
            user,
            item,
            rating: r.rating,
            timestamp: r.timestamp,
        });
        Ok(())
    })?;
    drop(bytes);
    records.shrink_to_fit();
    if records.is_empty() {
        return Err(DataError::Invalid {
            path: path.to_path_buf(),
            message: "no interactions (after the rating filter)".into(),
        });
    }
    let titles = formats::read_titles(path, format)?;
    let item_titles = item_ids.iter().map(|id| titles.get(id).cloned()).collect();
    Ok(Interactions {
        name: formats::dataset_name(path),
        path: path.to_path_buf(),
        sha256,
        user_ids,
        item_ids,
        item_titles,
        records,
    })
}
