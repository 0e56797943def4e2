//! Shared helpers of the tables tests: hand-made LUNA CSVs with known merge answers.

use std::path::{Path, PathBuf};

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("tempdir is writable");
    p
}

/// annotations_with_malignancy.csv: 4 rows (lines 2–5) over series s1, s2, s3.
pub const ANNOTATIONS_MAL: &str = "\
seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details
s1,10,20,30,8,True,\"[4, 4, 3]\"
s1,11,20,30,20,False,\"[1, 2]\"
s2,0,0,0,4,False,\"[2, 2, 1]\"
s3,-5,-5,-5,6,True,\"[5, 5, 4]\"
";

/// annotations.csv (no mal_bool): the same four annotations.
pub const ANNOTATIONS_PLAIN: &str = "\
seriesuid,coordX,coordY,coordZ,diameter_mm
s1,10,20,30,8
s1,11,20,30,20
s2,0,0,0,4
s3,-5,-5,-5,6
";

/// candidates.csv: 8 rows (lines 2–9) over s1..s4; see tables_merge.rs for the expected matches.
pub const CANDIDATES: &str = "\
seriesuid,coordX,coordY,coordZ,class
s1,11.5,21.9,28.1,1
s1,12.5,20,30,0
s1,10,20,32.5,1
s1,12,22,32,0
s2,0,0,1.5,1
s3,100,100,100,0
s4,1,2,3,0
s2,0.5,-0.5,1.0,0
";
/// Edits a Parquet file with pyarrow (the independent writer a user's own tool would be):
/// `code` runs with `t` = the table read from the file, and `t` is written back.
fn parquet_edit(path: &Path, code: &str) {
    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\nt = pq.read_table({p:?})\n{code}\npq.write_table(t, {p:?})\n",
        p = path.to_string_lossy()
    );
    let st = std::process::Command::new(crate::py::python())
        .args(["-c", &script])
        .status()
        .expect("run python");
    assert!(st.success(), "pyarrow edit of {} failed", path.display());
}

/// Sets row `row` of the float column `column` to `float(value)` (e.g. `nan`).
pub fn parquet_set(path: &Path, column: &str, row: usize, value: &str) {
    parquet_edit(
        path,
        &format!(
            "c = t.column({column:?}).to_pylist()\nc[{row}] = float({value:?})\n\
             t = t.set_column(t.schema.get_field_index({column:?}), {column:?}, pa.array(c, pa.float64()))"
        ),
    );
}

/// Removes the column `column`.
pub fn parquet_drop(path: &Path, column: &str) {
    parquet_edit(path, &format!("t = t.drop_columns([{column:?}])"));
}
