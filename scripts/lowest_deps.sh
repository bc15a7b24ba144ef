#!/usr/bin/env bash
# The lowest versions pyproject.toml declares, installed together in a fresh virtual environment, and
# the tests that exercise them. Every `name>=X` of the dependencies and of the local, server and
# postgres extras becomes `name==X` (read from pyproject.toml, not repeated here), except torch: the
# one CPU build at hand is 2.13.0 (PyPI's other builds bring gigabytes of CUDA), so torch is tested at
# 2.13.0 only. Usage: scripts/lowest_deps.sh [pytest arguments]; LOWEST_VENV sets the folder
# (default /tmp/chatbot-lowest, made anew). About 3 minutes on 2 cores; .ci/run runs it last.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)  # pip's note on each index folder without the package
venv=${LOWEST_VENV:-/tmp/chatbot-lowest}
start=$(date +%s)
python3 -m venv --clear "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/python" - > "$venv/lowest.txt" <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
for line in project["dependencies"] + extras["local"] + extras["server"] + extras["postgres"]:
    found = re.match(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*>=\s*([^,;\s]+)", line)
    if found and found.group(1) != "torch":
        print(f"{found.group(1)}=={found.group(3)}")
print("torch==2.13.0")
EOF
echo "lowest: $(tr '\n' ' ' < "$venv/lowest.txt")"
"$venv/bin/pip" install --quiet torch==2.13.0
"$venv/bin/pip" install --quiet -c "$venv/lowest.txt" -e '.[local,server,postgres]' pytest httpx
echo "installed in $(( $(date +%s) - start ))s"
"$venv/bin/pip" check
"$venv/bin/pip" list --format=freeze > "$venv/installed.txt"
# the tests that reach each key dependency: transformers, peft and gguf (local backend, training, the
# CLI on a tiny model, adapters as GGUF LoRA files), openai (hosted wire and backend), FastAPI, Starlette and uvicorn (web),
# SQLAlchemy (the store), pydantic (all), typer, click and rich (CLI), scikit-learn and numpy (data, routing)
tests=(tests/test_registry.py tests/test_skills.py tests/test_hosted_wire.py tests/test_hosted_backend.py tests/test_local_backend.py
       tests/test_training.py tests/test_cli.py tests/test_chat_cli.py tests/test_cli_conventions.py tests/test_conversation_store.py
       tests/test_web.py tests/test_observability.py tests/test_routing.py tests/test_data_check.py tests/test_gguf_lora.py)
[ $# -gt 0 ] && tests=("$@")
# a cache of its own: a base model converted by a newer transformers may not load in an older one
CHATBOT_CACHE="$venv/cache" CHATBOT_THREADS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
echo "lowest_deps: done in $(( $(date +%s) - start ))s"
