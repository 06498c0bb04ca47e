# fer-engine on an x86-64 GPU server: fer-run on onnxruntime-gpu (CUDA, cuDNN), TensorRT optional.
#
# Not built in CI: this project's machines reach no container registry and have no GPU. See
# docs/gpu-server.md:
#
#   docker build -t fer-engine:gpu .
#   docker build -t fer-engine:gpu-trt --build-arg INSTALL_TENSORRT=1 .
#   docker run --rm --gpus all -v "$PWD:/data" -v fer-cache:/cache fer-engine:gpu \
#       --video /data/in.mp4 --output /data/out.mp4 --json /data/faces.jsonl --providers cuda,cpu
#
# Base image: CUDA 13 runtime with cuDNN 9, because onnxruntime-gpu on PyPI is built for them (1.31.1
# declares nvidia-cuda-runtime ~=13.0 and nvidia-cudnn-cu13 ~=9.0 for its [cuda,cudnn] extras; since 1.19
# PyPI's default is the CUDA 12 build, later CUDA 13). Keep the base in step with the onnxruntime-gpu that
# pip resolves. The host needs a driver for CUDA 13 (R580 or newer) and the NVIDIA Container Toolkit.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# TensorRT for .engine/.plan models and for onnxruntime's TensorRT provider: PyPI's tensorrt wheels for
# CUDA 13. export/tensorrt.py is written against TensorRT 8.6 and 10.x, hence < 11.
ARG INSTALL_TENSORRT=0
ARG TENSORRT_SPEC="tensorrt-cu13>=10.13,<11"
ARG CUDA_PYTHON_SPEC="cuda-python>=13,<14"

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    FER_ENGINE_CACHE=/cache/fer_engine

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /opt/fer-engine
COPY pyproject.toml README.md ./
COPY core core
COPY train train
COPY export export
COPY runtime runtime
COPY benchmarks benchmarks

# The base install pulls onnxruntime (CPU) and [gpu] adds onnxruntime-gpu: both own the `onnxruntime`
# package folder, and with both installed the CUDA provider disappears. Keep only onnxruntime-gpu (pip
# check will say fer-engine wants onnxruntime: onnxruntime-gpu provides the same module).
RUN pip install ".[gpu]" \
 && ort_gpu="$(pip show onnxruntime-gpu | sed -n 's/^Version: //p')" \
 && pip uninstall -y onnxruntime onnxruntime-gpu \
 && pip install --no-deps "onnxruntime-gpu==${ort_gpu}" \
 && python -c "import onnxruntime as ort; p = ort.get_available_providers(); print(ort.__version__, p); assert 'CUDAExecutionProvider' in p"

# Optional TensorRT; its libraries are put on the loader path for onnxruntime's TensorRT provider.
RUN if [ "$INSTALL_TENSORRT" = "1" ]; then \
        pip install "${TENSORRT_SPEC}" "${CUDA_PYTHON_SPEC}" \
     && lib="$(find /opt/venv -name 'libnvinfer.so.*' -print -quit)" && [ -n "$lib" ] \
     && dirname "$lib" > /etc/ld.so.conf.d/tensorrt-pip.conf && ldconfig \
     && python -c "import tensorrt; print('TensorRT', tensorrt.__version__)"; \
    fi

VOLUME /cache
WORKDIR /data
ENTRYPOINT ["fer-run"]
CMD ["--help"]
