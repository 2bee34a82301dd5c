#!/usr/bin/env bash
# The device check (benchmarks/device_check.py) with the machine's own python3. On the GPU machine, after
# `python3 benchmarks/device_check.py --fetch-wheels` here, through the device tool:
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
# Its files come back from $OUT; arguments are passed on (--smoke runs it on a CPU at tiny sizes).
set -u
cd "$(dirname "$0")/.." && exec "${PYTHON:-python3}" benchmarks/device_check.py "$@"
