//! Geometry: half-to-even rounding, identity/flip/rotation round trips, the book's transpose bug.

use std::path::Path;

use luna::ct::geometry::{contains, round_half_even};
use luna::ct::{Geometry, Irc, IrcF, Xyz};

fn close(a: Xyz, b: Xyz, tol: f64) -> bool {
    (a.x - b.x).abs() < tol && (a.y - b.y).abs() < tol && (a.z - b.z).abs() < tol
}

#[test]
fn ct_geom_half_to_even() {
    let cases = [
        (0.5, 0),
        (1.5, 2),
        (2.5, 2),
        (-0.5, 0),
        (-1.5, -2),
        (-2.5, -2),
        (2.4999, 2),
        (2.5001, 3),
    ];
    for (v, want) in cases {
        assert_eq!(round_half_even(v), want, "round({v})");
    }
}

#[test]
fn ct_geom_identity_geometry() {
    let g = Geometry::axis_aligned(
        Xyz {
            x: -198.1,
            y: -195.0,
            z: -335.2,
        },
        Xyz {
            x: 0.76,
            y: 0.76,
            z: 2.5,
        },
    )
    .expect("valid geometry");
    let xyz = g.irc_to_xyz(IrcF {
        index: 10.0,
        row: 20.0,
        col: 30.0,
    });
    assert!(close(
        xyz,
        Xyz {
            x: -198.1 + 30.0 * 0.76,
            y: -195.0 + 20.0 * 0.76,
            z: -335.2 + 25.0
        },
        1e-9
    ));
    assert_eq!(
        g.xyz_to_irc(xyz),
        Irc {
            index: 10,
            row: 20,
            col: 30
        }
    );
}

#[test]
fn ct_geom_flip_geometry() {
    let d = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
    let g = Geometry::new(
        Xyz {
            x: 10.0,
            y: 20.0,
            z: 30.0,
        },
        Xyz {
            x: 1.0,
            y: 2.0,
            z: 3.0,
        },
        d,
        Path::new("t"),
    )
    .expect("valid geometry");
    let xyz = g.irc_to_xyz(IrcF {
        index: 1.0,
        row: 1.0,
        col: 1.0,
    });
    assert!(close(
        xyz,
        Xyz {
            x: 9.0,
            y: 18.0,
            z: 33.0
        },
        1e-12
    ));
    assert_eq!(
        g.xyz_to_irc(xyz),
        Irc {
            index: 1,
            row: 1,
            col: 1
        }
    );
}

#[test]
fn ct_geom_rotation_round_trip_and_not_book_transpose() {
    let (a, b) = (30f64.to_radians(), 10f64.to_radians());
    let rz = [
        [a.cos(), -a.sin(), 0.0],
        [a.sin(), a.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, b.cos(), -b.sin()],
        [0.0, b.sin(), b.cos()],
    ];
    let mut d = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            d[r][c] = (0..3).map(|k| rz[r][k] * rx[k][c]).sum();
        }
    }
    let g = Geometry::new(
        Xyz {
            x: -5.0,
            y: 7.0,
            z: 100.0,
        },
        Xyz {
            x: 0.7,
            y: 0.8,
            z: 2.5,
        },
        d,
        Path::new("t"),
    )
    .expect("valid geometry");
    let p = IrcF {
        index: 3.25,
        row: -7.5,
        col: 41.0,
    };
    let back = g.xyz_to_irc_continuous(g.irc_to_xyz(p));
    assert!(
        (back.index - p.index).abs() < 1e-9
            && (back.row - p.row).abs() < 1e-9
            && (back.col - p.col).abs() < 1e-9
    );
    // The book's right-multiplication would give a different answer for a rotation.
    let xyz = g.irc_to_xyz(p);
    let dv = [xyz.x + 5.0, xyz.y - 7.0, xyz.z - 100.0];
    let book_col = (0..3).map(|k| dv[k] * g.inverse[k][0]).sum::<f64>() / 0.7;
    assert!(
        (book_col - p.col).abs() > 1.0,
        "book formula coincides: {book_col}"
    );
}

#[test]
fn ct_geom_singular_direction_rejected() {
    let d = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let err = Geometry::new(
        Xyz {
            x: 0.0,
            y: 0.0,
            z: 0.0,
        },
        Xyz {
            x: 1.0,
            y: 1.0,
            z: 1.0,
        },
        d,
        Path::new("a.mhd"),
    )
    .expect_err("singular");
    assert!(
        err.to_string()
            .starts_with("a.mhd: key `TransformMatrix` gives a non-invertible"),
        "{err}"
    );
}

#[test]
fn ct_geom_contains_edges() {
    let s = [2, 3, 4];
    assert!(contains(
        Irc {
            index: 0,
            row: 0,
            col: 0
        },
        s
    ));
    assert!(contains(
        Irc {
            index: 1,
            row: 2,
            col: 3
        },
        s
    ));
    assert!(!contains(
        Irc {
            index: 2,
            row: 0,
            col: 0
        },
        s
    ));
    assert!(!contains(
        Irc {
            index: 0,
            row: -1,
            col: 0
        },
        s
    ));
    assert!(!contains(
        Irc {
            index: 0,
            row: 0,
            col: 4
        },
        s
    ));
}
