"""Writes synthetic DICOM CT series with pydicom for luna's DICOM reader tests
(run by tests/it/ct_dicom.rs and tests/it/ct_dicom_errors.rs).

Usage: dicom_write_series.py SPEC.json

SPEC: {"volume": FILE.bin (int16 little-endian HU, (z,y,x) order), "shape": [z, y, x],
       "series": [CASE, ...]}. Each CASE writes one series into CASE["out"]:
  ts          "explicit" | "implicit" | "big" | "rle" | "j2k" (JPEG 2000 lossless, pylibjpeg's
              OpenJPEG encoder) | "jpeg-lossless" (GDCM's encoder via SimpleITK; needs
              bits_stored 16)   transfer syntax (default explicit)
  direction   9 floats, row-major, columns = world directions of the x, y, z voxel axes;
              a z axis opposite to row x column stores the slices in reverse order
  origin, spacing   [x, y, z] of voxel (0,0,0) / voxel size in mm
  slope, intercept  RescaleSlope / RescaleIntercept; stored = round((HU - b) / m), clipped
  signed, bits_stored   PixelRepresentation 1/0 and BitsStored (BitsAllocated is 16)
  names       "plain" (slice000.dcm ...), "shuffled" (random hex names without extension),
              "reversed" (names counting down along the volume)
  uid         SeriesInstanceUID (default: generated)
  drop        volume slice indices not written (a missing slice)
  tilt        mm each slice is shifted along the row direction per slice (gantry tilt)
  odd_orientation   slice indices written in a plane turned by 0.3 rad (not parallel)
  modality    Modality (default CT)
  localizer   also write one LOCALIZER image of another orientation into the series
  phi         plant patient identifiers (the PHI test's values)
  fake_ts     write this transfer syntax UID with a dummy encapsulated frame (undecodable)
Positions and cosines are written with 6 decimals (as scanners do); the test compares luna
with SimpleITK reading these very files, never with the input volume.
"""
import json
import os
import random
import sys

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless,
                         generate_uid)

PHI = {
    "PatientName": "Jane^Doe",
    "PatientID": "PHI-12345",
    "PatientBirthDate": "19710203",
    "InstitutionName": "Saint PHI Hospital",
    "AccessionNumber": "ACC-PHI-777",
    "ReferringPhysicianName": "Referrer^PHI",
}
TS = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian,
      "rle": RLELossless, "big": ExplicitVRBigEndian, "jpeg-lossless": JPEGLosslessSV1,
      "j2k": JPEG2000Lossless}


def ds6(v):
    return [f"{x:.6f}" for x in v]


def stored(hu, case):
    m, b = case.get("slope", 1.0), case.get("intercept", -1024.0)
    bits = case.get("bits_stored", 16)
    if case.get("signed", True):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    s = np.clip(np.round((hu.astype(np.float64) - b) / m), lo, hi)
    return s.astype(np.int16 if case.get("signed", True) else np.uint16)


def base(case, uid, sop):
    ts = TS[case.get("ts", "explicit")]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    # compressed: written explicit first, the pixels set the final transfer syntax
    compressed = (RLELossless, JPEGLosslessSV1, JPEG2000Lossless)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if ts in compressed else ts
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.Modality = case.get("modality", "CT")
    ds.SeriesInstanceUID = uid
    ds.StudyInstanceUID = case.setdefault("study", generate_uid())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if case.get("phi"):
        for k, v in PHI.items():
            setattr(ds, k, v)
    return ds


def jpeg_lossless(plane):
    """The plane's encapsulated JPEG Lossless (process 14, SV1) stream, encoded by GDCM through
    SimpleITK's writer (pydicom has no encoder for it)."""
    import tempfile
    import SimpleITK as sitk
    with tempfile.TemporaryDirectory() as t:
        f = os.path.join(t, "x.dcm")
        w = sitk.ImageFileWriter()
        w.SetFileName(f)
        w.SetUseCompression(True)
        w.SetCompressor("JPEG")
        w.Execute(sitk.GetImageFromArray(plane))
        enc = pydicom.dcmread(f)
        assert enc.file_meta.TransferSyntaxUID == JPEGLosslessSV1, enc.file_meta.TransferSyntaxUID
        return enc.PixelData


def pixels(ds, case, plane):
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = plane.shape
    ds.BitsAllocated, ds.BitsStored = 16, case.get("bits_stored", 16)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if case.get("signed", True) else 0
    ds.RescaleSlope = f"{case.get('slope', 1.0):g}"
    ds.RescaleIntercept = f"{case.get('intercept', -1024.0):g}"
    ts = case.get("ts", "explicit")
    if case.get("fake_ts"):
        # a transfer syntax luna has no decoder for, with a dummy encapsulated frame
        ds.file_meta.TransferSyntaxUID = case["fake_ts"]
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\0" * 60])
        ds["PixelData"].VR = "OB"
    elif ts == "jpeg-lossless":
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = jpeg_lossless(plane)
        ds["PixelData"].VR = "OB"
    elif ts == "rle":
        ds.compress(RLELossless, plane, encoding_plugin="pydicom")
    elif ts == "j2k":
        ds.compress(JPEG2000Lossless, plane, encoding_plugin="pylibjpeg")
    elif ts == "big":
        ds.PixelData = plane.astype(plane.dtype.newbyteorder(">")).tobytes()
    else:
        ds.PixelData = plane.tobytes()


def name_of(case, k, n, rng):
    kind = case.get("names", "plain")
    if kind == "shuffled":
        return "%016x" % rng.getrandbits(64)
    if kind == "reversed":
        return f"slice{n - 1 - k:03d}.dcm"
    return f"slice{k:03d}.dcm"


def write_case(vol, case, rng):
    out = case["out"]
    os.makedirs(out, exist_ok=True)
    d = np.array(case["direction"], dtype=float).reshape(3, 3)
    o, sp = np.array(case["origin"], float), np.array(case["spacing"], float)
    uid = case.get("uid") or generate_uid()
    n = vol.shape[0]
    order = list(range(n))
    rng.shuffle(order)  # write order and InstanceNumber unrelated to position
    for idx, k in enumerate(order):
        if k in case.get("drop", []):
            continue
        ds = base(case, uid, generate_uid())
        row, col = d[:, 0], d[:, 1]
        if k in case.get("odd_orientation", []):
            c, s = np.cos(0.3), np.sin(0.3)
            row = c * d[:, 0] + s * d[:, 2]  # the plane turned about its column axis
        pos = o + k * sp[2] * d[:, 2] + k * case.get("tilt", 0.0) * d[:, 0]
        ds.ImagePositionPatient = ds6(pos)
        ds.ImageOrientationPatient = ds6(list(row) + list(col))
        ds.PixelSpacing = ds6([sp[1], sp[0]])
        ds.SliceThickness = f"{sp[2]:.6f}"
        ds.InstanceNumber = idx + 1
        pixels(ds, case, stored(vol[k], case))
        pydicom.dcmwrite(os.path.join(out, name_of(case, k, n, rng)), ds, enforce_file_format=True)
    if case.get("localizer"):
        ds = base(case, uid, generate_uid())
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImagePositionPatient = ds6(o)
        ds.ImageOrientationPatient = ds6([1, 0, 0, 0, 0, -1])
        ds.PixelSpacing = ds6([1.0, 1.0])
        ds.InstanceNumber = n + 1
        pixels(ds, case, stored(vol[n // 2], case))
        pydicom.dcmwrite(os.path.join(out, "scout.dcm"), ds, enforce_file_format=True)
    return uid


def main():
    spec = json.load(open(sys.argv[1]))
    z, y, x = spec["shape"]
    vol = np.fromfile(spec["volume"], dtype="<i2").reshape(z, y, x)
    rng = random.Random(spec.get("seed", 7))
    uids = [write_case(vol, case, rng) for case in spec["series"]]
    print(json.dumps(uids))


if __name__ == "__main__":
    main()
