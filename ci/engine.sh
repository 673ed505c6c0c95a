#!/usr/bin/env bash
# Installs a real CPU inference engine for the agent's end-to-end test
# (agent/tests/e2e_engine.rs):
#   target/enginevenv/                 venv with llama-cpp-python[server]==0.3.36, gguf, numpy
#                                      (llama.cpp is built from source: ~5-6 min on 2 cores)
#   target/enginevenv/tiny.gguf        a tiny random-weight llama model (1 block, 64-dim,
#                                      4 heads, byte-level tokenizer), written with gguf's GGUFWriter
# Idempotent: skips whatever is already in place. CHRYSALIS_ENGINE_VENV overrides the
# location (the test reads the same variable); PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CHRYSALIS_ENGINE_VENV:-target/enginevenv}
MODEL="$VENV/tiny.gguf"
PY=${PYTHON:-python3}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp.server, gguf, numpy" 2>/dev/null; then
  echo "engine: llama-cpp-python already installed in $VENV"
else
  command -v "$PY" >/dev/null || { echo "engine: $PY not found (install python3 and python3-venv)" >&2; exit 1; }
  echo "engine: installing llama-cpp-python[server]==0.3.36 into $VENV (builds llama.cpp; minutes)"
  start=$(date +%s)
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # Portable CPU build (no -march=native): the venv may move between CI machines.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" \
    "$VENV/bin/pip" install --quiet "llama-cpp-python[server]==0.3.36" gguf numpy
  echo "engine: installed in $(( $(date +%s) - start ))s"
fi

if [ -s "$MODEL" ]; then
  echo "engine: model present at $MODEL"
  exit 0
fi
echo "engine: writing $MODEL"
"$VENV/bin/python" - "$MODEL" <<'PY'
# A tiny llama model with random (seeded, so reproducible) weights. It
# generates nonsense, fast: enough to run the real server end to end.
import sys

import gguf
import numpy as np

path = sys.argv[1]
n_embd, n_head, n_ff, n_ctx = 64, 4, 128, 256
tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [
    gguf.TokenType.BYTE
] * 256
n_vocab = len(tokens)
rng = np.random.default_rng(20261123)


def weights(*shape):
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


w = gguf.GGUFWriter(path, "llama")
w.add_name("chrysalis-tiny-random")
w.add_context_length(n_ctx)
w.add_embedding_length(n_embd)
w.add_block_count(1)
w.add_feed_forward_length(n_ff)
w.add_head_count(n_head)
w.add_head_count_kv(n_head)
w.add_rope_dimension_count(n_embd // n_head)
w.add_layer_norm_rms_eps(1e-5)
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores([0.0] * n_vocab)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(0)
# numpy shapes are (rows, cols); gguf stores them reversed, as llama.cpp expects.
w.add_tensor("token_embd.weight", weights(n_vocab, n_embd))
w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
w.add_tensor("output.weight", weights(n_vocab, n_embd))
w.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
    w.add_tensor(f"blk.0.{name}.weight", weights(n_embd, n_embd))
w.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
w.add_tensor("blk.0.ffn_gate.weight", weights(n_ff, n_embd))
w.add_tensor("blk.0.ffn_up.weight", weights(n_ff, n_embd))
w.add_tensor("blk.0.ffn_down.weight", weights(n_embd, n_ff))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"engine: wrote {path}")
PY
