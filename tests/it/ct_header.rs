//! MetaImage header variants: synonyms, case, CRLF, LOCAL, HeaderSize, MSB, LIST, patterns, 2-D.

use std::io::Write;

use luna::ct::{CropWindow, CtImage, DataFile, ElementType, Irc, VoxelData, Xyz};

use crate::ct_support::{le_i16, short_header, write};

fn ramp(n: usize) -> Vec<i16> {
    (0..n as i16).map(|v| v * 97 - 1200).collect()
}

#[test]
fn ct_header_synonyms_case_crlf_and_msb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vals: Vec<u16> = (0..24).map(|v| v * 300).collect();
    let be: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    write(dir.path(), "v.dat", &be);
    let hdr = "objecttype=Image\r\n  NDIMS =  3 \r\n# a comment\r\nDimSize = 4 3 2\r\nelementtype = met_ushort\r\n\
               Origin = 1.5 -2 3e1\r\nElementSize = 0.5 0.25 2\r\nOrientation = 0 1 0 -1 0 0 0 0 1\r\n\
               CenterOfRotation = 0 0 0\r\nAnatomicalOrientation = RAI\r\nElementNumberOfChannels = 1\r\n\
               ElementByteOrderMSB = True\r\nElementDataFile = v.dat\r\n";
    let mhd = write(dir.path(), "v.mhd", hdr.as_bytes());
    let ct = CtImage::open(&mhd).expect("open");
    assert_eq!(ct.element_type(), ElementType::U16);
    assert_eq!(ct.shape_irc(), [2, 3, 4]);
    assert_eq!(ct.voxels(), VoxelData::U16(vals.clone()));
    let g = ct.geometry();
    assert_eq!(
        g.origin,
        Xyz {
            x: 1.5,
            y: -2.0,
            z: 30.0
        }
    );
    assert_eq!(
        g.spacing,
        Xyz {
            x: 0.5,
            y: 0.25,
            z: 2.0
        }
    );
    // TransformMatrix is column-major: its first triple is the x axis direction (column 0 of D).
    assert_eq!(
        g.direction,
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    );
    let xyz = g.irc_to_xyz(
        Irc {
            index: 1,
            row: 2,
            col: 3,
        }
        .to_f(),
    );
    assert_eq!(
        xyz,
        Xyz {
            x: 1.5 - 0.5,
            y: -2.0 + 1.5,
            z: 32.0
        }
    );
    // Spacing wins over ElementSize when both are present.
    let hdr2 = hdr.replace(
        "ElementSize = 0.5 0.25 2\r\n",
        "ElementSize = 9 9 9\r\nElementSpacing = 0.5 0.25 2\r\n",
    );
    let ct2 = CtImage::open(&write(dir.path(), "v2.mhd", hdr2.as_bytes())).expect("open");
    assert_eq!(
        ct2.geometry().spacing,
        Xyz {
            x: 0.5,
            y: 0.25,
            z: 2.0
        }
    );
}

#[test]
fn ct_header_local_data_raw_and_compressed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vals = ramp(60);
    // An odd-length header puts the i16 data at an odd (unaligned) offset of the mapping.
    let mut bytes = short_header([5, 4, 3], "Offset = 0 0 0\n", "LOCAL").into_bytes();
    if bytes.len().is_multiple_of(2) {
        bytes.splice(0..0, *b"#\n");
        bytes.splice(0..0, *b" ");
    }
    assert_eq!(bytes.len() % 2, 1);
    bytes.extend(le_i16(&vals));
    let ct = CtImage::open(&write(dir.path(), "l.mhd", &bytes)).expect("open");
    assert_eq!(ct.header().expect("mhd").data_file, DataFile::Local);
    assert_eq!(ct.voxels(), VoxelData::I16(vals.clone()));
    let w = CropWindow::around(
        Irc {
            index: 1,
            row: 1,
            col: 1,
        },
        [2, 2, 2],
        ct.shape_irc(),
    )
    .expect("window");
    let want: Vec<i16> = [(0, 0), (0, 1), (1, 0), (1, 1)]
        .iter()
        .flat_map(|&(i, r)| (0..2).map(move |c| (i, r, c)))
        .map(|(i, r, c)| {
            vals[((w.start[0] + i) * 4 + w.start[1] + r) * 5 + w.start[2] + c].clamp(-1000, 1000)
        })
        .collect();
    assert_eq!(ct.crop_hu_i16(&w).expect("crop"), want);

    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&le_i16(&vals)).expect("deflate");
    let comp = z.finish().expect("deflate");
    let mut bytes = short_header(
        [5, 4, 3],
        &format!(
            "CompressedData = True\nCompressedDataSize = {}\n",
            comp.len()
        ),
        "LOCAL",
    )
    .into_bytes();
    bytes.extend(&comp);
    let ct = CtImage::open(&write(dir.path(), "lz.mhd", &bytes)).expect("open");
    assert_eq!(
        ct.hu_i16_clipped().expect("hu"),
        vals.iter()
            .map(|v| v.clamp(&-1000, &1000))
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn ct_header_size_positive_and_minus_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vals = ramp(24);
    let mut data = vec![0xABu8; 17];
    data.extend(le_i16(&vals));
    write(dir.path(), "h.raw", &data);
    for hs in ["17", "-1"] {
        let hdr = short_header([4, 3, 2], &format!("HeaderSize = {hs}\n"), "h.raw");
        let ct = CtImage::open(&write(dir.path(), "h.mhd", hdr.as_bytes())).expect("open");
        assert_eq!(ct.voxels(), VoxelData::I16(vals.clone()), "HeaderSize {hs}");
    }
}

#[test]
fn ct_header_list_and_pattern() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vals = ramp(36);
    for z in 0..3 {
        write(
            dir.path(),
            &format!("s{z:02}.raw"),
            &le_i16(&vals[z * 12..(z + 1) * 12]),
        );
    }
    let hdr = "ObjectType = Image\nNDims = 3\nDimSize = 4 3 3\nElementType = MET_SHORT\n\
               ElementDataFile = LIST 2D\ns00.raw\ns01.raw\n\ns02.raw\n";
    let ct = CtImage::open(&write(dir.path(), "list.mhd", hdr.as_bytes())).expect("open");
    assert_eq!(ct.voxels(), VoxelData::I16(vals.clone()));
    let hdr = short_header([4, 3, 3], "", "s%02d.raw 0 2 1");
    let ct = CtImage::open(&write(dir.path(), "pat.mhd", hdr.as_bytes())).expect("open");
    assert_eq!(ct.voxels(), VoxelData::I16(vals));
}

#[test]
fn ct_header_two_dimensional() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "p.raw", &[1, 2, 3, 4, 5, 6]);
    let hdr = "NDims = 2\nDimSize = 3 2\nElementType = MET_UCHAR\nElementSpacing = 0.5 0.7\nOffset = 4 5\n\
               TransformMatrix = 1 0 0 1\nElementDataFile = p.raw\n";
    let ct = CtImage::open(&write(dir.path(), "p.mhd", hdr.as_bytes())).expect("open");
    assert_eq!(ct.shape_irc(), [1, 2, 3]);
    assert_eq!(
        ct.geometry().origin,
        Xyz {
            x: 4.0,
            y: 5.0,
            z: 0.0
        }
    );
    assert_eq!(ct.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn ct_header_list_count_and_xyz_crop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vals = ramp(36);
    write(dir.path(), "a.raw", &le_i16(&vals[..12]));
    let hdr = short_header([4, 3, 3], "", "LIST\na.raw");
    let err = CtImage::open(&write(dir.path(), "n.mhd", hdr.as_bytes()))
        .err()
        .expect("count error");
    assert!(err.to_string().ends_with("n.mhd: ElementDataFile lists 1 data files but DimSize needs 3; list one file per slice"), "{err}");

    // CtImage is shared across threads by the pipeline stages.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CtImage>();

    write(dir.path(), "x.raw", &le_i16(&vals));
    let extra = "Offset = 10 20 30\nElementSpacing = 1 2 4\n";
    let ct = CtImage::open(&write(
        dir.path(),
        "x.mhd",
        short_header([4, 3, 3], extra, "x.raw").as_bytes(),
    ))
    .expect("open");
    // x = 10 + 2.5·1 → col 2.5 → 2 (half-to-even); y = 20 + 2·2 → row 2; z = 30 + 4·1 → index 1.
    let (crop, c, w) = ct
        .crop_around_xyz(
            Xyz {
                x: 12.5,
                y: 24.0,
                z: 34.0,
            },
            [1, 1, 2],
        )
        .expect("crop");
    assert_eq!(
        c,
        Irc {
            index: 1,
            row: 2,
            col: 2
        }
    );
    // Book quirk: index start = round_half_even(1 − 0.5) = 0, so a width-1 window misses the centre.
    assert_eq!(w.start, [0, 2, 1]);
    assert_eq!(
        crop,
        vec![
            vals[8 + 1].clamp(-1000, 1000),
            vals[8 + 2].clamp(-1000, 1000)
        ]
    );
}
