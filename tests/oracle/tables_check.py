"""Oracle for luna's Parquet tables: read each file with pyarrow (independent of the Rust parquet
crate) and check (1) its Arrow schema against schemas/<table>.schema.json, (2) zstd compression,
(3) the values.

Usage: tables_check.py <schemas_dir> <expected.json>
expected.json: {"files": [{"path": ..., "table": ..., "rows": [{column: value}, ...] or null}]}.
Type rule (documented in every schema file): any Arrow string type (string, large_string,
string_view) counts as Utf8; nullable=false is checked as null_count == 0, and the Arrow field
flag must equal the schema's nullable (luna writes non-nullable columns REQUIRED).
"""
import json
import sys

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as e:  # fail loudly: the Rust test turns this into a failure
    print(f"ORACLE SETUP ERROR: pyarrow not importable: {e}", file=sys.stderr)
    sys.exit(2)


def type_name(t):
    is_view = getattr(pa.types, "is_string_view", lambda _t: False)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or is_view(t):
        return "Utf8"
    for name, pred in [("Float64", pa.types.is_float64), ("Boolean", pa.types.is_boolean),
                       ("Int64", pa.types.is_int64), ("Int8", pa.types.is_int8)]:
        if pred(t):
            return name
    return f"unmapped:{t}"


def check(schemas_dir, f):
    with open(f"{schemas_dir}/{f['table']}.schema.json") as fh:
        schema = json.load(fh)
    assert schema["table"] == f["table"], (schema["table"], f["table"])
    t = pq.read_table(f["path"])
    created_by = pq.ParquetFile(f["path"]).metadata.created_by
    want_names = [c["name"] for c in schema["columns"]]
    assert t.schema.names == want_names, (f["path"], t.schema.names, want_names)
    for c in schema["columns"]:
        field = t.schema.field(c["name"])
        got = type_name(field.type)
        assert got == c["type"], (f["path"], c["name"], str(field.type), c["type"])
        if not c["nullable"]:
            assert t.column(c["name"]).null_count == 0, (f["path"], c["name"], "has nulls")
        assert field.nullable == c["nullable"], (f["path"], c["name"], "nullable", field.nullable, created_by)
    md = pq.ParquetFile(f["path"]).metadata
    for rg in range(md.num_row_groups):
        for ci in range(md.num_columns):
            comp = md.row_group(rg).column(ci).compression
            assert comp == "ZSTD", (f["path"], ci, comp)
    rows = t.to_pylist()
    # "rows": null checks schema and compression only (files written by a stage run).
    if f["rows"] is not None:
        assert len(rows) == len(f["rows"]), (f["path"], len(rows), len(f["rows"]))
        for i, (got, want) in enumerate(zip(rows, f["rows"])):
            assert got == want, (f["path"], i, got, want)
    types = ",".join(f"{fl.name}:{fl.type}:{'null' if fl.nullable else 'req'}" for fl in t.schema)
    print(f"OK {f['table']} {f['path'].rsplit('/', 1)[-1]} rows={len(rows)} created_by={md.created_by} [{types}]")


def main():
    schemas_dir, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as fh:
        expected = json.load(fh)
    for f in expected["files"]:
        check(schemas_dir, f)
    print(f"pyarrow {pa.__version__}: {len(expected['files'])} files OK")


if __name__ == "__main__":
    main()
