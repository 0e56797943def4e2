"""Oracle for the seg_dataset stage (run by tests/it/seg_dataset.rs; its functions are also the
numpy side of bench/seg_dataset.sh): an independent numpy implementation of the documented
annotation-mask rule and of the context-slice / crop extraction, reading the CTs with SimpleITK
and luna's output with h5py + hdf5plugin (so the files are readable without luna).

Usage: seg_mask.py SCHEMAS_DIR CT_ROOT CANDIDATES_ART SEG_ART [SEG_ART ...]

The rule (crates/luna/src/annotation_mask.rs, book p2ch13 buildAnnotationMask made well-defined
at the edges), written again here:
- nodules of a series = candidates.parquet rows with is_nodule, in table order; centre irc =
  SimpleITK TransformPhysicalPointToContinuousIndex reversed to (index, row, col), np.round;
- per axis: r = 2; while c-r and c+r are inside and both raw voxels > threshold: r += 1; when
  c-r or c+r leaves the volume: r -= 1 and stop; box [c-r, c+r] clipped;
- mask = union of boxes & (raw > threshold);
- context slices c-k..c+k clamped to [0, n-1]; crop rows/cols: start = round(c - w/2), shifted
  inside the volume; HU clipped to [-1000, 1000] (np.clip then int16);
- train series: one sample per nodule; val series: positive slices (or every slice).
For EVERY series and sample: the HDF5 mask, inputs, labels, centres and slice indices must be
equal voxel for voxel, the mask attributes must hold the CT's geometry, and seg_index.parquet
must equal the rows derived here. Prints one summary line with coverage counts.
"""
import glob
import json
import os
import sys

try:
    import h5py
    import hdf5plugin  # noqa: F401  registers filter 32015 (zstd)
    import numpy as np
    import pyarrow.parquet as pq
    import SimpleITK as sitk
except ImportError as e:  # fail loudly: the Rust test turns this into a failure
    print(f"ORACLE SETUP ERROR: {e}", file=sys.stderr)
    sys.exit(2)


def centre_irc(img, xyz):
    cri = img.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in xyz))
    return tuple(int(v) for v in np.round(np.array(cri[::-1])))


def radii(raw, c, thr):
    out = []
    for a in range(3):
        r = 2
        while True:
            if c[a] - r < 0 or c[a] + r >= raw.shape[a]:
                r -= 1
                break
            lo, hi = list(c), list(c)
            lo[a] -= r
            hi[a] += r
            if raw[tuple(lo)] > thr and raw[tuple(hi)] > thr:
                r += 1
            else:
                break
        out.append(r)
    return out


def build_mask(raw, centres, thr):
    box = np.zeros(raw.shape, dtype=bool)
    for c in centres:
        r = radii(raw, c, thr)
        box[tuple(slice(max(c[a] - r[a], 0), c[a] + r[a] + 1) for a in range(3))] = True
    return box & (raw > thr)


def context(c, k, n):
    return [min(max(j, 0), n - 1) for j in range(c - k, c + k + 1)]


def crop_start(c, w, n):
    s = int(np.round(c - w / 2))
    return min(max(s, 0), n - w)


def series_samples(img, nodules_xyz, split, k, crop, thr, val_slices):
    """Everything seg_dataset stores for one series, as numpy arrays + index rows."""
    raw = sitk.GetArrayFromImage(img)
    n, rows, cols = raw.shape
    centres = [centre_irc(img, xyz) for xyz in nodules_xyz]
    for c in centres:
        assert all(0 <= c[a] < raw.shape[a] for a in range(3)), ("centre outside", c, raw.shape)
    mask = build_mask(raw, centres, thr).astype(np.uint8)
    hu = np.clip(raw, -1000, 1000).astype(np.int16)
    out = {"mask": mask, "index": [], "centres": centres}
    depth = 2 * k + 1
    ti = np.zeros((0, depth, crop, crop), np.int16)
    tl = np.zeros((0, crop, crop), np.uint8)
    tc = np.zeros((0, 3), np.int32)
    vi = np.zeros((0, depth, rows, cols), np.int16)
    vl = np.zeros((0, rows, cols), np.uint8)
    vs = np.zeros((0,), np.int32)
    if split == "train":
        ins, labs = [], []
        for j, (ci, cr, cc) in enumerate(centres):
            r0, c0 = crop_start(cr, crop, rows), crop_start(cc, crop, cols)
            ins.append(hu[context(ci, k, n)][:, r0:r0 + crop, c0:c0 + crop])
            labs.append(mask[ci, r0:r0 + crop, c0:c0 + crop])
            out["index"].append(("train", j, ci, cr, cc, int(labs[-1].sum())))
        if ins:
            ti, tl = np.stack(ins), np.stack(labs)
            tc = np.array(centres, dtype=np.int32).reshape(-1, 3)
    else:
        pos = [i for i in range(n) if mask[i].any()] if val_slices == "positive" else list(range(n))
        if pos:
            vi = np.stack([hu[context(i, k, n)] for i in pos])
            vl = mask[pos]
            vs = np.array(pos, dtype=np.int32)
        for j, i in enumerate(pos):
            out["index"].append(("val", j, i, rows // 2, cols // 2, int(mask[i].sum())))
    out.update(train_input=ti, train_label=tl, train_center_irc=tc,
               val_input=vi, val_label=vl, val_slice=vs)
    return out


def check_schema(schemas_dir, path):
    with open(os.path.join(schemas_dir, "seg_index.schema.json")) as fh:
        schema = json.load(fh)
    assert os.path.basename(path) == schema["file"], (path, schema["file"])
    t = pq.read_table(path)
    assert t.schema.names == [c["name"] for c in schema["columns"]], t.schema.names
    for c in schema["columns"]:
        assert t.column(c["name"]).null_count == 0, c["name"]
    return t.to_pylist()


def check_artifact(schemas_dir, ct_root, cands, seg_art):
    with open(os.path.join(seg_art, "seg.json")) as fh:
        summary = json.load(fh)
    k, crop, thr = summary["context_slices"], summary["crop"], summary["threshold_hu"]
    val_slices = summary["val_slices"]
    index = check_schema(schemas_dir, os.path.join(seg_art, "seg_index.parquet"))
    by_series = {}
    for r in cands:
        s = by_series.setdefault(r["series_uid"], {"split": r["split"], "nodules": []})
        assert s["split"] == r["split"], ("split by candidate", r["series_uid"])
        if r["is_nodule"]:
            s["nodules"].append((r["coord_x"], r["coord_y"], r["coord_z"]))
    files = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(seg_art, "seg", "*.h5")))
    assert files == sorted(by_series), ("one file per series", files, sorted(by_series))
    cov = dict(series=0, train=0, val=0, voxels=0, edge_boxes=0, clamped=0, shifted=0, flipped=0)
    want_index = []
    for uid in sorted(by_series):
        s = by_series[uid]
        mhd = glob.glob(os.path.join(ct_root, "**", f"{uid}.mhd"), recursive=True)
        assert len(mhd) == 1, (uid, mhd)
        img = sitk.ReadImage(mhd[0])
        want = series_samples(img, s["nodules"], s["split"], k, crop, thr, val_slices)
        n, rows, cols = want["mask"].shape
        rel = f"seg/{uid}.h5"
        with h5py.File(os.path.join(seg_art, rel), "r") as f:
            m = f["mask"]
            plist = m.id.get_create_plist()
            assert 32015 in [plist.get_filter(i)[0] for i in range(plist.get_nfilters())], rel
            assert m.chunks == (1, rows, cols), (rel, m.chunks)
            assert np.allclose(m.attrs["origin_xyz"], img.GetOrigin()), rel
            assert np.allclose(m.attrs["spacing_xyz"], img.GetSpacing()), rel
            assert np.allclose(m.attrs["direction"], img.GetDirection()), rel
            attr_uid = m.attrs["series_uid"]
            attr_uid = attr_uid.decode() if isinstance(attr_uid, bytes) else attr_uid
            assert attr_uid == uid, (rel, attr_uid)
            assert int(m.attrs["context_slices"]) == k and int(m.attrs["crop"]) == crop, rel
            got = m[...]
            if not np.array_equal(got, want["mask"]):
                bad = np.argwhere(got != want["mask"])
                raise AssertionError(f"{uid}: mask differs at {len(bad)} voxels, first {bad[:5].tolist()}")
            for name in ["train_input", "train_label", "train_center_irc", "val_input", "val_label", "val_slice"]:
                d = f[name]
                w = want[name]
                assert d.dtype == w.dtype, (uid, name, d.dtype, w.dtype)
                assert d.shape == w.shape, (uid, name, d.shape, w.shape)
                if d.ndim >= 3:
                    assert d.chunks == (1,) + d.shape[1:], (uid, name, d.chunks)
                g = d[...]
                if not np.array_equal(g, w):
                    bad = np.argwhere(g != w)
                    raise AssertionError(f"{uid}: {name} differs at {len(bad)} places, first {bad[:5].tolist()}")
        cov["series"] += 1
        cov["voxels"] += int(want["mask"].sum())
        cov["train"] += len(want["train_input"])
        cov["val"] += len(want["val_input"])
        cov["flipped"] += not np.allclose(np.array(img.GetDirection()), np.eye(3).ravel())
        for c in want["centres"]:
            r = radii(sitk.GetArrayFromImage(img), c, thr)
            cov["edge_boxes"] += any(c[a] - r[a] <= 0 or c[a] + r[a] >= want["mask"].shape[a] - 1 for a in range(3))
        for (ds, j, sl, cr, cc, lp) in want["index"]:
            cov["clamped"] += sl < k or sl >= n - k
            if ds == "train":
                cov["shifted"] += crop_start(cr, crop, rows) != int(np.round(cr - crop / 2)) or \
                    crop_start(cc, crop, cols) != int(np.round(cc - crop / 2))
            want_index.append(dict(series_uid=uid, split=s["split"], file=rel, dataset=ds, row=j,
                                   slice=sl, center_r=cr, center_c=cc, label_pixels=lp))
    assert len(index) == len(want_index), (len(index), len(want_index))
    for got, w in zip(index, want_index):
        assert got == w, (got, w)
    assert summary["train_samples"] == cov["train"] and summary["val_samples"] == cov["val"], summary
    return cov, val_slices


def main():
    schemas_dir, ct_root, cand_art = sys.argv[1:4]
    cands = pq.read_table(os.path.join(cand_art, "candidates.parquet")).to_pylist()
    for seg_art in sys.argv[4:]:
        cov, val_slices = check_artifact(schemas_dir, ct_root, cands, seg_art)
        print(f"OK val_slices={val_slices} " + " ".join(f"{k}={v}" for k, v in cov.items()))


if __name__ == "__main__":
    main()
