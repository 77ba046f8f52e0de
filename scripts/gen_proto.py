"""Regenerate intercom_sidecar/_generated from proto/ (run through `make proto`).

protoc writes imports as `from intercom_sidecar.v1 import event_pb2`, the proto package path; the
generated modules live under `intercom_sidecar._generated`, so those imports are rewritten here.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "intercom_sidecar" / "_generated"
_IMPORT = re.compile(r"^from intercom_sidecar\.v1 import", re.MULTILINE)


def main() -> int:
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    OUT_DIR.mkdir(parents=True)
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={OUT_DIR}",
        f"--mypy_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        f"--mypy_grpc_out={OUT_DIR}",
        *protos,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    for path in OUT_DIR.rglob("*.py*"):
        text = path.read_text()
        fixed = _IMPORT.sub("from intercom_sidecar._generated.intercom_sidecar.v1 import", text)
        if fixed != text:
            path.write_text(fixed)
    for directory in [OUT_DIR, *(d for d in OUT_DIR.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    (OUT_DIR / "py.typed").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
