"""The book's deployment approach (Deep Learning with PyTorch, ch. 15, p3ch15/flask_server.py):
a minimal Flask server around the same LunaModel weights in PyTorch, one crop per forward pass.

Usage: serve_book.py NODULE_DIR MALIGNANCY_DIR PORT THREADS
The dirs hold luna's model.safetensors (PyTorch state-dict keys, see crates/luna-torch
nn/checkpoint.rs). POST /v1/classify takes the body luna serve takes (raw little-endian i16,
`X-Shape: N,32,48,48`) and answers {"predictions": [{"prob_nodule", "prob_malignant"}]} — both
models, as luna serve computes both; the models run under
no_grad in eval mode, serialised by a lock as the book's server does implicitly (one Python
process, the GIL). Like the book's, it has no batching and no limits.
"""
import os
import sys
import threading

import numpy as np
import torch
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
import nn_st  # noqa: E402
from nn_model import LunaModel  # noqa: E402

nodule_dir, mal_dir, port, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)


def load(d):
    m = LunaModel()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in nn_st.load(f"{d}/model.safetensors").items()})
    return m.eval()


nodule, malignancy = load(nodule_dir), load(mal_dir)
lock = threading.Lock()
app = Flask(__name__)


@app.route("/v1/classify", methods=["POST"])
def classify():
    shape = [int(s) for s in request.headers["X-Shape"].split(",")]
    x = torch.from_numpy(np.frombuffer(request.get_data(), dtype="<i2").astype(np.float32)).view(shape[0], 1, *shape[-3:])
    with lock, torch.no_grad():
        _, pn = nodule(x)
        _, pm = malignancy(x)
    return jsonify({"predictions": [{"prob_nodule": float(a), "prob_malignant": float(b)} for a, b in zip(pn[:, 1], pm[:, 1])]})


@app.route("/healthz")
def healthz():
    return "ok"


if __name__ == "__main__":
    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as the other servers
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    app.run(host="127.0.0.1", port=port, threaded=True)
