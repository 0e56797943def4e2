"""Oracle for the data pipeline (run by tests/it/data_oracle.rs): checks build_crops' output
against SimpleITK + numpy, independently of luna's Rust code.

Usage: data_crops_oracle.py SCHEMAS_DIR CT_ROOT ANNOTATIONS_ART CANDIDATES_ART CROPS_ART

1. Every Parquet table of the pipeline (annotations, candidates_raw, candidates, index) is read
   with pyarrow; its columns, order and types must match schemas/<table>.schema.json (type rules
   are stated in those files: any Arrow string type is Utf8; nullable=false means no nulls).
2. For EVERY row of index.parquet: the CT is read with SimpleITK; the centre irc must equal
   SimpleITK's TransformPhysicalPointToContinuousIndex of the candidate's world centre
   (candidates.parquet, joined by candidate_id), reversed from (x,y,z)=(col,row,index) and
   rounded half-to-even (np.round); the crop window is the book's rule written here again
   (start = round-half-even(center - width/2), end = start + width, shifted inside at edges);
   the HDF5 row must equal np.clip(array, -1000, 1000)[window] bit-exactly.
3. HDF5 layout: dataset `crops` int16 (N, w0, w1, w2), chunks (1, w0, w1, w2), filter 32015
   (zstd) present; `center_irc` equals the index's centre.
Prints one summary line with coverage counts (compressed/rotated series, shifted windows).
"""
import glob
import json
import os
import sys

try:
    import h5py
    import hdf5plugin  # noqa: F401  registers filter 32015 (zstd)
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import SimpleITK as sitk
except ImportError as e:  # fail loudly: the Rust test turns this into a failure
    print(f"ORACLE SETUP ERROR: {e}", file=sys.stderr)
    sys.exit(2)


def arrow_type_name(t):
    is_view = getattr(pa.types, "is_string_view", lambda _t: False)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or is_view(t):
        return "Utf8"
    for name, pred in [("Float64", pa.types.is_float64), ("Boolean", pa.types.is_boolean),
                       ("Int64", pa.types.is_int64), ("Int8", pa.types.is_int8),
                       ("Int32", pa.types.is_int32), ("Int16", pa.types.is_int16)]:
        if pred(t):
            return name
    return f"unmapped:{t}"


def check_schema(schemas_dir, table, path):
    with open(os.path.join(schemas_dir, f"{table}.schema.json")) as fh:
        schema = json.load(fh)
    assert schema["table"] == table, (schema["table"], table)
    assert os.path.basename(path) == schema["file"], (path, schema["file"])
    t = pq.read_table(path)
    want = [c["name"] for c in schema["columns"]]
    assert t.schema.names == want, (path, t.schema.names, want)
    for c in schema["columns"]:
        got = arrow_type_name(t.schema.field(c["name"]).type)
        assert got == c["type"], (path, c["name"], got, c["type"])
        if not c["nullable"]:
            assert t.column(c["name"]).null_count == 0, (path, c["name"], "has nulls")
    return t


def book_window(center, width, shape):
    """The book's getRawCandidate window (p2ch14/dsets.py), shifted inside at the edges."""
    out = []
    for a in range(3):
        assert 0 <= center[a] < shape[a], ("centre outside", center, shape)
        s = int(np.round(center[a] - width[a] / 2))
        e = s + width[a]
        if s < 0:
            s, e = 0, width[a]
        if e > shape[a]:
            s, e = shape[a] - width[a], shape[a]
        out.append((s, e))
    return out


def main():
    schemas_dir, ct_root, ann_art, cand_art, crops_art = sys.argv[1:6]
    tables = {}
    for table, art in [("annotations", ann_art), ("candidates_raw", ann_art),
                       ("candidates", cand_art), ("index", crops_art)]:
        tables[table] = check_schema(schemas_dir, table, os.path.join(art, f"{table}.parquet"))
    with open(os.path.join(crops_art, "crops.json")) as fh:
        width = tuple(json.load(fh)["width_irc"])

    cands = {r["candidate_id"]: r for r in tables["candidates"].to_pylist()}
    index = tables["index"].to_pylist()
    ids = [r["candidate_id"] for r in index]
    assert len(ids) == len(set(ids)), "duplicate candidate_id in index.parquet"
    assert set(ids) == set(cands), ("index and candidates differ",
                                    len(set(ids) ^ set(cands)))
    for r in index:  # labels are carried over unchanged
        c = cands[r["candidate_id"]]
        for k in ["series_uid", "is_nodule", "has_annotation", "is_malignant", "diameter_mm", "split"]:
            assert r[k] == c[k], (r["candidate_id"], k, r[k], c[k])

    by_file = {}
    for r in index:
        by_file.setdefault(r["file"], []).append(r)
    n_crops = n_shifted = n_compressed = n_rotated = 0
    for rel, rows in sorted(by_file.items()):
        uid = rows[0]["series_uid"]
        assert rel == f"crops/{uid}.h5", (rel, uid)
        assert all(r["series_uid"] == uid for r in rows), rel
        mhd = glob.glob(os.path.join(ct_root, "**", f"{uid}.mhd"), recursive=True)
        assert len(mhd) == 1, (uid, mhd)
        with open(mhd[0]) as fh:
            header = fh.read()
        n_compressed += "CompressedData = True" in header
        img = sitk.ReadImage(mhd[0])
        n_rotated += not np.allclose(np.array(img.GetDirection()), np.eye(3).ravel())
        clipped = np.clip(sitk.GetArrayFromImage(img), -1000, 1000)
        shape = clipped.shape
        with h5py.File(os.path.join(crops_art, rel), "r") as f:
            ds = f["crops"]
            plist = ds.id.get_create_plist()
            codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            assert 32015 in codes, (rel, codes)
            assert ds.dtype == np.dtype("int16"), (rel, ds.dtype)
            assert ds.chunks == (1,) + width, (rel, ds.chunks)
            assert ds.shape == (len(rows),) + width, (rel, ds.shape, len(rows))
            data = ds[...]
            centers = f["center_irc"][...]
        assert sorted(r["row"] for r in rows) == list(range(len(rows))), rel
        for r in rows:
            c = cands[r["candidate_id"]]
            cri = img.TransformPhysicalPointToContinuousIndex((c["coord_x"], c["coord_y"], c["coord_z"]))
            irc = tuple(int(v) for v in np.round(np.array(cri[::-1])))
            got = (r["center_i"], r["center_r"], r["center_c"])
            assert got == irc, (uid, r["candidate_id"], "centre", got, irc, cri)
            assert tuple(int(v) for v in centers[r["row"]]) == irc, (uid, r["row"], centers[r["row"]])
            win = book_window(irc, width, shape)
            n_shifted += any(s != int(np.round(irc[a] - width[a] / 2)) for a, (s, _) in enumerate(win))
            want = clipped[win[0][0]:win[0][1], win[1][0]:win[1][1], win[2][0]:win[2][1]]
            assert want.shape == width, (uid, want.shape)
            row = data[r["row"]]
            if not np.array_equal(row.astype(want.dtype), want) or not np.array_equal(want.astype(np.int16), row):
                diff = int(np.count_nonzero(row.astype(np.float64) != want.astype(np.float64)))
                raise AssertionError(f"{uid} candidate {r['candidate_id']} row {r['row']}: {diff} voxels differ, window {win}")
            n_crops += 1
    print(f"OK {n_crops} crops in {len(by_file)} series bit-exact vs SimpleITK; "
          f"compressed={n_compressed} rotated={n_rotated} shifted={n_shifted}; "
          f"tables " + " ".join(f"{k}:{v.num_rows}" for k, v in tables.items()))


if __name__ == "__main__":
    main()
