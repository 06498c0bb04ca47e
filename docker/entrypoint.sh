#!/usr/bin/env bash
# Entrypoint of the Jetson image (Dockerfile.jetson): build the TensorRT engine on first start, then run fer-run.
#
# The engine is built on this device, into the cache volume (FER_ENGINE_DIR, default /cache/engines), by the
# torch-free builder `python -m fer_engine.export.build_engine`. The builder names engines by model, batch
# range, precision, DLA core and GPU compute capability (cnn_b1-32_fp16_sm87.engine) and reuses one whose
# recorded build key matches (ONNX sha256, shapes, precision, workspace, DLA core, calibration faces,
# TensorRT version, GPU), so later starts skip the build.
#
# Settings (environment variables):
#   FER_TENSORRT=0          run the ONNX model on onnxruntime instead (no engine)
#   FER_ONNX=cnn            fp32 ONNX file or shipped model name the engine is built from
#   FER_PRECISION=fp16      fp16 | int8 (int8 needs FER_CALIBRATION_DATA, or the calibration cache of an
#                           earlier int8 build in FER_ENGINE_DIR)
#   FER_MAX_BATCH=32        largest batch of the engine
#   FER_DLA_CORE=           DLA core (0 or 1) on boards that have DLA; empty: the GPU
#   FER_CALIBRATION_DATA=   FER2013 csv(.gz) or image folder mounted into the container (int8 only)
#   FER_ENGINE_DIR=/cache/engines
# Arguments are passed to fer-run. With --model among them the entrypoint builds nothing and runs that model.
#
# Stopping (docker stop sends SIGTERM, then SIGKILL after the grace period, 10 s by default): fer-run is
# exec'ed, never run under this shell, so it is the container's process and gets the signal itself; it
# closes its outputs and exits 143. During the engine build, a stop ends the builder and the container
# at once (143), before any fer-run starts.
set -euo pipefail

for arg in "$@"; do
    case "$arg" in
        --model|--model=*|-h|--help) exec fer-run "$@" ;;
    esac
done

if [ "${FER_TENSORRT:-1}" = "0" ]; then
    exec fer-run "$@"
fi

build=(python3 -m fer_engine.export.build_engine
       --onnx "${FER_ONNX:-cnn}"
       --out "${FER_ENGINE_DIR:-/cache/engines}"
       --precision "${FER_PRECISION:-fp16}"
       --max-batch "${FER_MAX_BATCH:-32}")
if [ -n "${FER_DLA_CORE:-}" ]; then
    build+=(--dla-core "$FER_DLA_CORE")
fi
if [ -n "${FER_CALIBRATION_DATA:-}" ]; then
    build+=(--calibration-data "$FER_CALIBRATION_DATA")
fi

# Progress and errors go to stderr; stdout is the engine path alone. The builder runs in the background so
# that a stop signal is handled at once: bash runs traps only between commands, and as PID 1 it would
# otherwise ignore SIGTERM until the build ends.
engine_file="$(mktemp)"
"${build[@]}" >"$engine_file" &
builder=$!
stop_build() {
    kill -TERM "$builder" 2>/dev/null || true
    wait "$builder" 2>/dev/null || true
    rm -f "$engine_file"
    exit "$1"
}
trap 'stop_build 143' TERM
trap 'stop_build 129' HUP
trap 'stop_build 130' INT
if ! wait "$builder"; then
    rm -f "$engine_file"
    echo "fer-engine: the TensorRT engine could not be built (see above). Set FER_TENSORRT=0 to run the" \
         "ONNX model on onnxruntime instead." >&2
    exit 2
fi
trap - TERM HUP INT
engine="$(cat "$engine_file")"
rm -f "$engine_file"
exec fer-run --model "$engine" "$@"
