"""Writes every CT under a root as a DICOM series with pydicom (independently of luna), with
patient identifiers in every identifying attribute, and optionally the `.mhd` SimpleITK's
ImageSeriesReader makes of each written series (the oracle's view of the same CT).

Usage: dicom_use_write.py <ct_root> <dicom_out> [<sitk_out>]

- Each `<uid>.mhd` (read by SimpleITK) becomes `<dicom_out>/LIDC-<n>/study/series/IM<k>.dcm`,
  one file per slice, SeriesInstanceUID = <uid> (LUNA16 names a CT by it), explicit VR little
  endian, int16 stored values with RescaleSlope 1 and RescaleIntercept -1024, geometry from the
  image's origin, spacing and direction (ImagePositionPatient per slice, ImageOrientationPatient
  from the direction's first two columns). Folders under `seg-lungs-LUNA16` are skipped (masks).
- The identifying attributes carry the values the PHI test looks for: PatientName `Jane^Doe`,
  PatientID `PHI-12345`, PatientBirthDate `19450317`, InstitutionName `Glenmoor Infirmary`,
  AccessionNumber `ACC-770011`, ReferringPhysicianName `Quibble^Hortensia`.
- With <sitk_out>: each series is read back with SimpleITK's ImageSeriesReader (files ordered by
  GDCM) and written as `<sitk_out>/<uid>.mhd` (+ `.raw`) with WriteImage.
"""
import glob
import os
import sys

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

PHI = {
    "PatientName": "Jane^Doe",
    "PatientID": "PHI-12345",
    "PatientBirthDate": "19450317",
    "InstitutionName": "Glenmoor Infirmary",
    "AccessionNumber": "ACC-770011",
    "ReferringPhysicianName": "Quibble^Hortensia",
}
INTERCEPT = -1024


def ds(v):
    return format_number_as_ds(float(v))


def write_series(img, uid, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    hu = sitk.GetArrayFromImage(img).astype(np.int32)  # (z, y, x)
    origin = np.array(img.GetOrigin())
    sx, sy, sz = img.GetSpacing()
    d = np.array(img.GetDirection()).reshape(3, 3)
    study = generate_uid(entropy_srcs=[uid, "study"])
    frame = generate_uid(entropy_srcs=[uid, "frame"])
    for k in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uid, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(out_dir, "IM%04d.dcm" % k)
        f = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        for key, value in PHI.items():
            setattr(f, key, value)
        f.SOPClassUID = CTImageStorage
        f.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        f.StudyInstanceUID = study
        f.SeriesInstanceUID = uid
        f.FrameOfReferenceUID = frame
        f.Modality = "CT"
        f.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        f.SeriesNumber = 1
        f.InstanceNumber = k + 1
        pos = origin + d @ np.array([0.0, 0.0, k * sz])
        f.ImagePositionPatient = [ds(v) for v in pos]
        f.ImageOrientationPatient = [ds(v) for v in list(d[:, 0]) + list(d[:, 1])]
        f.PixelSpacing = [ds(sy), ds(sx)]
        f.SliceThickness = ds(sz)
        f.SamplesPerPixel = 1
        f.PhotometricInterpretation = "MONOCHROME2"
        f.Rows, f.Columns = hu.shape[1], hu.shape[2]
        f.BitsAllocated, f.BitsStored, f.HighBit = 16, 16, 15
        f.PixelRepresentation = 1
        f.RescaleIntercept = ds(INTERCEPT)
        f.RescaleSlope = ds(1)
        f.PixelData = (hu[k] - INTERCEPT).astype("<i2").tobytes()
        f.save_as(path, enforce_file_format=True)


def sitk_mhd(series_dir, uid, out_dir):
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(series_dir, uid))
    sitk.WriteImage(r.Execute(), os.path.join(out_dir, uid + ".mhd"))


def main():
    root, out = sys.argv[1], sys.argv[2]
    sitk_out = sys.argv[3] if len(sys.argv) > 3 else None
    if sitk_out:
        os.makedirs(sitk_out, exist_ok=True)
    mhds = sorted(glob.glob(os.path.join(root, "**", "*.mhd"), recursive=True))
    mhds = [m for m in mhds if "seg-lungs-LUNA16" not in m.split(os.sep)]
    for n, mhd in enumerate(mhds):
        uid = os.path.basename(mhd)[:-4]
        series_dir = os.path.join(out, "LIDC-%04d" % n, "study", "series")
        write_series(sitk.ReadImage(mhd), uid, series_dir)
        if sitk_out:
            sitk_mhd(series_dir, uid, sitk_out)
        print(uid, series_dir)


if __name__ == "__main__":
    main()
